"""Tiny data and option files for end-to-end tests."""
import contextlib
import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List

import cv2
import numpy as np
import yaml

from conftest import TINY_GAUSSIANSR


def write_smooth_images(folder: Path, count: int, size=(64, 72), seed: int = 0) -> None:
    """Writes smooth random colour images (upsampled noise): something an SR net can learn."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f'img{i:02d}.png'), img)


def tiny_train_options(name: str, train_root: str, val_root: str, **train_dataset: Any) -> Dict[str, Any]:
    dataset = dict(name='tiny', type='ArbitraryScalePairedDataset', dataroot_gt=train_root,
                   io_backend=dict(type='disk'), lq_size=12, scale_min=1, scale_max=3, sample_q=64,
                   use_shuffle=True, num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=2)
    dataset.update(train_dataset)
    return dict(
        name=name, model_type='ArbitraryScaleSRModel', num_gpu=0, manual_seed=0,
        datasets=dict(
            train=dataset,
            val=dict(name='tiny_x2', type='ArbitraryScalePairedDataset', dataroot_gt=val_root, scale=2),
            val_2=dict(name='tiny_x3.5', type='ArbitraryScalePairedDataset', dataroot_gt=val_root, scale=3.5)),
        network_g=dict(type='GaussianSR', **TINY_GAUSSIANSR),
        path=dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        train=dict(ema_decay=0.9, optim_g=dict(type='Adam', lr=1e-3), total_iter=4, warmup_iter=-1,
                   scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5),
                   pixel_opt=dict(type='L1Loss', loss_weight=1.0)),
        val=dict(val_freq=4, save_img=True, query_chunk=100,
                 metrics=dict(psnr=dict(type='calculate_psnr_pt'), ssim=dict(type='calculate_ssim_pt'))),
        logger=dict(print_freq=1, save_checkpoint_freq=4, use_tb_logger=False),
    )


def tiny_test_options(name: str, checkpoint: str, hr_root: str, scale: float) -> Dict[str, Any]:
    return dict(
        name=name, model_type='ArbitraryScaleSRModel', num_gpu=0,
        datasets=dict(test_1=dict(name=f'tiny_x{scale:g}', type='ArbitraryScalePairedDataset', dataroot_gt=hr_root,
                                  scale=scale, test_y_channel=True)),
        network_g=dict(type='GaussianSR', **TINY_GAUSSIANSR),
        path=dict(pretrain_network_g=checkpoint, strict_load_g=True, param_key_g='params_ema'),
        val=dict(save_img=True, suffix=None, query_chunk=500, metrics=dict(psnr=dict(type='calculate_psnr_pt'))),
    )


def write_yaml(path: Path, opt: Dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def build_tiny_train_model(tmp_path: Path, name: str, images: int = 1) -> Any:
    """An ``ArbitraryScaleSRModel`` of the tiny options, set up for training in this process
    (no launcher), on ``images`` smooth images; checkpoints and states go to ``tmp_path``."""
    from basicsr.models import build_model
    write_smooth_images(tmp_path / 'imgs', images)
    opt = tiny_train_options(name, str(tmp_path / 'imgs'), str(tmp_path / 'imgs'))
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(models=str(tmp_path), training_states=str(tmp_path))
    return build_model(opt)


@contextlib.contextmanager
def basicsr_records(name: str = 'basicsr') -> Iterator[List[logging.LogRecord]]:
    """The records BasicSR's logger (or its child ``name``) emits inside the block, INFO and up
    (another test may have quietened it: ``basicsr benchmark`` does)."""
    logger, records = logging.getLogger(name), []
    handler, level = logging.Handler(), logger.level
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
