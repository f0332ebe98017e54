"""Every bad option value gets one line before anything is created (issue 17, item 7).

A corpus of malformed option files, each derived from a real file of options/ with one key
changed, runs through the ``basicsr`` command (in-process through ``cli.main``, and a few through
the installed entry point): exit status 1, one line naming the file, the key and the value, and
no folder written. Every real option file passes the same command up to BasicSR's pipeline.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest
import yaml

from gaussiansr_plugin import cli
from helpers import write_smooth_images

REPO = Path(__file__).resolve().parents[1]
OPTIONS = REPO / 'options'
BASICSR = Path(sys.executable).parent / 'basicsr'
DELETE = object()  # remove the key instead of setting it
UNKNOWN = object()  # the changed key is a new one: the line names it (no value to name)

# (option file, dotted key, new value or DELETE); the message must name the key (and the value).
DEMO, LIIF, METASR = 'train_gaussiansr_demo.yml', 'train_liif_demo.yml', 'train_metasr_demo.yml'
EDSR, TEST = 'train_edsr_x2.yml', 'test_gaussiansr.yml'
CORPUS = [
    # GaussianSR demo: BasicSR's loader, train, val, logger, dist, top-level keys; our dataset and model.
    (DEMO, 'datasets.train.batch_size_per_gpu', -3),
    (DEMO, 'datasets.train.num_worker_per_gpu', 'two'),
    (DEMO, 'datasets.train.prefetch_mode', 'gpu'),
    (DEMO, 'datasets.train.dataset_enlarge_ratio', 0),
    (DEMO, 'datasets.train.lq_size', 0),
    (DEMO, 'datasets.train.augment', 'yes'),
    (DEMO, 'datasets.train.scale_max', 0.5),
    (DEMO, 'datasets.train.sample_qq', UNKNOWN),
    (DEMO, 'datasets.val_x2.scale', 0.5),
    (DEMO, 'datasets.train', DELETE),
    (DEMO, 'network_g.num_kernels', 'many'),
    (DEMO, 'network_g.rgb_skip', 'yes'),
    (DEMO, 'network_g.sigma_range', [1.0]),
    (DEMO, 'network_g.type', 'GausianSR'),
    (DEMO, 'network_g', DELETE),
    (DEMO, 'train.total_iter', -5),
    (DEMO, 'train.warmup_iter', 'none'),
    (DEMO, 'train.ema_decay', 1.5),
    (DEMO, 'train.optim_g.lr', '2e-4'),
    (DEMO, 'train.optim_g.betas', [0.9]),
    (DEMO, 'train.optim_g.betaz', UNKNOWN),
    (DEMO, 'train.optim_g.type', 'Adamm'),
    (DEMO, 'train.scheduler.milestones', 300),
    (DEMO, 'train.scheduler.gama', UNKNOWN),
    (DEMO, 'train.scheduler', DELETE),
    (DEMO, 'train.pixel_opt.reduction', 'avg'),
    (DEMO, 'train.mixed_precision', 'fp8'),
    (DEMO, 'train.total_iters', UNKNOWN),
    (DEMO, 'val.val_freq', 'often'),
    (DEMO, 'val.metrics.psnr.test_y_chanel', UNKNOWN),
    (DEMO, 'logger.print_freq', 0),
    (DEMO, 'logger.use_tb_logger', 'on'),
    (DEMO, 'logger', DELETE),
    (DEMO, 'path.pretrain_network_g', 5),
    (DEMO, 'num_gpu', -1),
    (DEMO, 'manual_seed', 'zero'),
    (DEMO, 'dist_params.port', 70000),
    # LIIF and MetaSR: their archs' arguments against signature, type hints and ranges.
    (LIIF, 'network_g.hidden_list', [256, -1]),
    (LIIF, 'network_g.local_ensemble', 2),
    (LIIF, 'network_g.feat_unfold_x', UNKNOWN),
    (METASR, 'network_g.num_feat', 0),
    (METASR, 'network_g.hidden_list', 256),
    # BasicSR's EDSR, SRModel and PairedImageDataset.
    (EDSR, 'scale', 2.5),
    (EDSR, 'datasets.train.gt_size', 95),
    (EDSR, 'datasets.train.use_hflip', 'yes'),
    (EDSR, 'datasets.train.io_backend.type', 'disc'),
    (EDSR, 'datasets.val.dataroot_lq', DELETE),
    (EDSR, 'datasets.train.filename_tmpl', 'x2'),
    (EDSR, 'network_g.num_feat', 'many'),
    (EDSR, 'network_g.res_scale', 'x'),
    (EDSR, 'network_g.upscael', UNKNOWN),
    (EDSR, 'train.scheduler.type', 'StepLR'),
    (EDSR, 'val.metrics.psnr.crop_border', -1),
    (EDSR, 'val.metrics.psnr.crop_border', DELETE),
    # basicsr test.
    (TEST, 'datasets.test_1.scale', 'two'),
    (TEST, 'datasets.test_1.filename_tmpl', '{}x{s}'),
    (TEST, 'network_g.eval_kernel', 'median'),
    (TEST, 'path.strict_load_g', 'yes'),
    (TEST, 'val.save_img', 'yes'),
    (TEST, 'val.query_chunk', 0),
    (TEST, 'val', DELETE),
]
# The GaussianSR demo, EDSR and the test file through the entry point.
SUBPROCESS_CASES = [CORPUS[0], next(c for c in CORPUS if c[0] == EDSR), CORPUS[-1]]


def _all_files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob('*'))


def _runnable(file_name: str, data: Path) -> dict:
    """The option file with its data folders (DIV2K, benchmark sets: not in the repository) pointed
    at ``data``, LMDBs read as folders and no pretrained checkpoint; otherwise as shipped."""
    opt = yaml.safe_load((OPTIONS / file_name).read_text())
    for dataset in (opt.get('datasets') or {}).values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            if key in dataset and '$' not in dataset[key]:
                dataset[key] = str(data)
        if (dataset.get('io_backend') or {}).get('type') == 'lmdb':
            dataset['io_backend'] = {'type': 'disk'}
    if 'path' in opt:
        opt['path']['pretrain_network_g'] = None
    return opt


def _change(opt: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split('.')
    node = opt
    for key in parents:
        node = node[key]
    assert isinstance(node, dict), dotted
    if value is DELETE or value is UNKNOWN:
        assert (value is DELETE) == (last in node), dotted  # deletes a key that is there, adds a new one
    if value is DELETE:
        del node[last]
    else:
        node[last] = 1 if value is UNKNOWN else value


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory with tiny images; BasicSR's pipelines fail the test if reached."""
    write_smooth_images(tmp_path / 'data', 1, size=(64, 64))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))  # cli.main hands the arguments to BasicSR there

    def reached(*args, **kwargs):
        raise AssertionError('the option check passed: BasicSR pipeline reached')

    monkeypatch.setattr('basicsr.train.train_pipeline', reached)
    monkeypatch.setattr('basicsr.test.test_pipeline', reached)
    return tmp_path


def _write_case(workdir: Path, file_name: str, dotted: str, value: Any) -> Path:
    opt = _runnable(file_name, workdir / 'data')
    _change(opt, dotted, value)
    path = workdir / 'options' / f'{Path(file_name).stem}__{dotted}.yml'
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def _assert_names(line: str, path: Path, dotted: str, value: Any) -> None:
    assert line.startswith('Option error: ') and '\n' not in line, line
    assert str(path) in line and dotted in line, line
    if value not in (DELETE, UNKNOWN) and not isinstance(value, dict):
        assert repr(value) in line or str(value) in line, line


def test_the_corpus_is_large_and_covers_every_file_and_kind_of_mistake():
    files = {case[0] for case in CORPUS}
    assert len(CORPUS) >= 30 and files == {DEMO, LIIF, METASR, EDSR, TEST}
    assert sum(case[2] is DELETE for case in CORPUS) >= 5 and sum(case[2] is UNKNOWN for case in CORPUS) >= 5


@pytest.mark.parametrize('file_name, dotted, value', CORPUS, ids=[f'{c[0][:-4]}:{c[1]}' for c in CORPUS])
def test_malformed_option_file_fails_in_one_line_and_writes_nothing(workdir, capsys, file_name, dotted, value):
    path = _write_case(workdir, file_name, dotted, value)
    before = _all_files(workdir)
    command = 'train' if file_name.startswith('train') else 'test'
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, '-opt', str(path)])
    # A string exit code: Python prints it as the only line on stderr and exits with status 1.
    assert isinstance(exit_info.value.code, str), exit_info.value.code
    _assert_names(exit_info.value.code, path, dotted, value)
    assert capsys.readouterr().err == ''
    assert _all_files(workdir) == before


@pytest.mark.parametrize('file_name, dotted, value', SUBPROCESS_CASES, ids=[c[0][:-4] for c in SUBPROCESS_CASES])
def test_installed_basicsr_command_prints_one_line_and_exits_1(tmp_path, file_name, dotted, value):
    write_smooth_images(tmp_path / 'data', 1, size=(64, 64))
    path = _write_case(tmp_path, file_name, dotted, value)
    before = _all_files(tmp_path)
    command = 'train' if file_name.startswith('train') else 'test'
    result = subprocess.run([str(BASICSR), command, '-opt', str(path), '--root', str(tmp_path / 'out')],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode in (1, 2), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    _assert_names(lines[0], path, dotted, value)
    assert _all_files(tmp_path) == before  # no experiments/, tb_logger/, results/, nor --root


def test_yaml_syntax_error_is_one_line(workdir):
    path = workdir / 'broken.yml'
    path.write_text((OPTIONS / DEMO).read_text().replace('  num_kernels: 100', 'num_kernels: [100'))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['train', '-opt', str(path)])
    message = exit_info.value.code
    assert isinstance(message, str) and '\n' not in message and 'not valid YAML' in message and str(path) in message


VALID = sorted(str(p.relative_to(OPTIONS)) for p in OPTIONS.rglob('*.yml'))


@pytest.mark.parametrize('file_name', VALID)
def test_every_option_file_passes_the_check_of_its_command(workdir, monkeypatch, file_name):
    opt = _runnable(file_name, workdir / 'data')
    if 'datasets' not in opt:  # a network-only file (ablation/eval), read by basicsr benchmark
        cli_opt = copy.deepcopy(opt['network_g'])
        from gaussiansr_plugin.utils.options import build_network
        build_network(cli_opt)
        return
    path = workdir / Path(file_name).name
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    command = 'test' if Path(file_name).name.startswith('test') else 'train'
    reached = []
    monkeypatch.setattr(f'basicsr.{command}.{command}_pipeline', reached.append)
    cli.main([command, '-opt', str(path)])
    assert reached == [str(workdir)]
