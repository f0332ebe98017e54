"""LIIF and MetaSR checkpoints as their authors released them (the LIIF repository's layout).

``../shared/data/reference/official_liif`` holds such files, made by the official code (random
weights), and that code's float outputs for Set5's butterfly x4 LR image at 256x256, 160x160
and 192x128 (not clamped; its README says how). Our commands must reproduce them from the
files as they are: ``basicsr test`` and ``basicsr benchmark`` (the model's ``predict``) to
float32 rounding, ``basicsr upscale`` to its 8-bit output. Corrupted copies are written to
``tmp_path``. Skipped when the shared folder is absent.
"""
import logging
import sys
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
import torch
import yaml

from gaussiansr_plugin import cli
from gaussiansr_plugin.archs import LIIF, MetaSR
from gaussiansr_plugin.benchmark.methods import load_method, parse_model_arg, quiet_basicsr_logger
from gaussiansr_plugin.inference import upscale
from gaussiansr_plugin.utils import loading
from gaussiansr_plugin.tools.convert_official import main as convert_main
from gaussiansr_plugin.utils.checkpoint import ARCH_KEY, CONVERSION_LOGGER, load_weights
from helpers import basicsr_records, write_yaml

REPO = Path(__file__).resolve().parents[1]
OPTION_FILES = {arch: REPO / 'options' / 'official' / f'test_{arch}_official.yml' for arch in ('liif', 'metasr')}
SIZES = [(256, 256), (160, 160), (192, 128)]  # (H, W): x4, x2.5, x3 by x2
TOLERANCE = 1e-5  # float32 rounding
CPU = torch.device('cpu')


@pytest.fixture
def reference(shared_data) -> Path:
    folder = shared_data / 'reference' / 'official_liif'
    if not folder.is_dir():
        pytest.skip(f'official LIIF reference not found at {folder}')
    return folder


@pytest.fixture
def lr_path(shared_data) -> Path:
    return shared_data / 'benchmark' / 'Set5' / 'LR_bicubic' / 'X4' / 'butterflyx4.png'


def _lr_tensor(path: Path) -> torch.Tensor:
    img = cv2.imread(str(path))[:, :, ::-1]  # RGB, as the official demo reads it
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


def _as_8bit(img: np.ndarray) -> np.ndarray:
    """Float RGB (H, W, 3) -> what BasicSR and upscale write: clamped, x255, rounded."""
    return np.round(np.clip(img, 0, 1) * 255).astype(np.int16)


# ----------------------------------------------------------------------------- reproduction
@pytest.mark.parametrize('arch', ['liif', 'metasr'])
def test_benchmark_reproduces_the_official_outputs_at_three_sizes(arch, reference, lr_path):
    """``basicsr benchmark --model NAME=OPTION_FILE:FILE`` builds the model BasicSR's way (its
    ``load_network``) and runs ``predict``, the function ``basicsr test`` runs too."""
    checkpoint = reference / f'{arch}_official_format.pth'
    with basicsr_records(CONVERSION_LOGGER) as records:
        method = load_method(parse_model_arg(f'{arch}={OPTION_FILES[arch]}:{checkpoint}'), CPU)
    tensors = 78 if arch == 'liif' else 72
    assert [r.getMessage() for r in records] == [
        f'Checkpoint {checkpoint} converted from the official {arch} layout of the LIIF repository (epoch 1): '
        f'{tensors} tensors mapped to ours, 4 unused mean-shift tensors dropped, its args checked against the network']
    lq = _lr_tensor(lr_path)
    for size in SIZES:
        ours = method.upscale(lq, size)[0].permute(1, 2, 0).numpy()
        official = np.load(reference / f'{arch}_out_{size[0]}x{size[1]}.npy')
        assert ours.shape == official.shape
        assert np.abs(ours - official).max() <= TOLERANCE, (arch, size)


def test_test_command_reads_the_official_file_and_writes_the_official_output(reference, lr_path, shared_data,
                                                                                tmp_path, monkeypatch):
    opt = yaml.safe_load(OPTION_FILES['liif'].read_text())
    opt.update(name='official_liif', num_gpu=0)
    opt['datasets'] = dict(test_1=dict(name='butterfly_x4', type='ArbitraryScalePairedDataset',
                                       dataroot_gt=str(tmp_path / 'hr'), dataroot_lq=str(lr_path.parent),
                                       filename_tmpl='{}x4', scale=4))
    opt['path']['pretrain_network_g'] = str(reference / 'liif_official_format.pth')
    (tmp_path / 'hr').mkdir()
    (tmp_path / 'hr' / 'butterfly.png').symlink_to(shared_data / 'benchmark' / 'Set5' / 'HR' / 'butterfly.png')
    monkeypatch.setattr(sys, 'argv', list(sys.argv))  # cli.main sets it for BasicSR's parse_options
    with basicsr_records() as records:  # (the log file: only the first BasicSR run of a process has one)
        cli.main(['test', '-opt', str(write_yaml(tmp_path / 'test.yml', opt)), '--root', str(tmp_path / 'run')])
    assert [r for r in records if 'converted from the official liif layout of the LIIF repository' in r.getMessage()]
    written = cv2.imread(str(tmp_path / 'run' / 'results' / 'official_liif' / 'visualization' / 'butterfly_x4' /
                             'butterfly_official_liif.png'))[:, :, ::-1]
    official = _as_8bit(np.load(reference / 'liif_out_256x256.npy'))
    assert np.abs(written.astype(np.int16) - official).max() <= 1  # a value on a .5 may round either way


@pytest.mark.parametrize('arch', ['liif', 'metasr'])
def test_upscale_reads_the_official_file_and_writes_the_official_outputs(arch, reference, lr_path, tmp_path, capsys):
    checkpoint = reference / f'{arch}_official_format.pth'
    sizes = [f'{w}x{h}' for h, w in SIZES]
    # --fp32: the official outputs are float32 ones (the command's default may be bf16, see utils/precision.py)
    status = upscale.main(['-i', str(lr_path), '-o', str(tmp_path), '--model', f'{OPTION_FILES[arch]}:{checkpoint}',
                           '--size', *sizes, '--fp32'])
    out = capsys.readouterr().out
    assert status == 0 and f'from {checkpoint}, converted from the official {arch} layout' in out
    for (h, w), label in zip(SIZES, sizes):
        written = cv2.imread(str(tmp_path / f'butterflyx4_out_{label}.png'))[:, :, ::-1].astype(np.int16)
        official = _as_8bit(np.load(reference / f'{arch}_out_{h}x{w}.npy'))
        # The network gets the whole image's coordinates (max |difference| to the official floats
        # about 6e-8): a value on a .5 may still round either way, one level at most on 8 bits.
        assert written.shape == official.shape and np.abs(written - official).max() <= 1, (arch, label)


# ----------------------------------------------------------------------------- converter
def test_converter_writes_our_layout_and_an_option_file_and_never_overwrites(reference, tmp_path, capsys):
    source = reference / 'metasr_official_format.pth'
    target = tmp_path / 'metasr.pth'
    assert convert_main([str(source), str(target)]) == 0
    assert 'type: MetaSR' in capsys.readouterr().out
    converted = torch.load(target, map_location='cpu', weights_only=True)
    assert set(converted) == {'params', ARCH_KEY} and converted[ARCH_KEY]['type'] == 'MetaSR'
    # The written pair loads like shipped weights, with the weights the official file gives.
    loaded = loading.load_net(f'{tmp_path / "metasr.yml"}:{target}', CPU)
    direct = MetaSR()
    load_weights(direct, str(source))
    assert loaded.converted is None
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in loaded.net.state_dict().items())
    before = target.read_bytes()
    assert convert_main([str(source), str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f'Output {target} exists' in err and target.read_bytes() == before
    # Our own layout needs no conversion; nothing is written.
    assert convert_main([str(target), str(tmp_path / 'again.pth')]) == 1
    assert 'needs no conversion' in capsys.readouterr().err and not list(tmp_path.glob('again.*'))


# ----------------------------------------------------------------------------- bad files: one line each
def _official(reference: Path, arch: str = 'liif') -> Dict:
    return torch.load(reference / f'{arch}_official_format.pth', map_location='cpu', weights_only=True)


def _upscale_error(tmp_path: Path, checkpoint: Path, lr_path: Path, capsys, arch: str = 'liif') -> str:
    status = upscale.main(['-i', str(lr_path), '-o', str(tmp_path / 'out'), '--model',
                           f'{OPTION_FILES[arch]}:{checkpoint}', '-s', '2'])
    err = capsys.readouterr().err
    assert status == 1 and err.count('\n') == 1 and str(checkpoint) in err, err
    return err


def test_a_truncated_file_fails_in_one_line(reference, lr_path, tmp_path, capsys):
    data = (reference / 'liif_official_format.pth').read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    assert 'cannot be loaded as weights only (truncated' in _upscale_error(tmp_path, cut, lr_path, capsys)


def test_a_file_of_another_arch_fails_in_one_line(reference, lr_path, tmp_path, capsys):
    err = _upscale_error(tmp_path, reference / 'metasr_official_format.pth', lr_path, capsys)
    assert 'was trained as MetaSR, the network is LIIF' in err
    rdn = _official(reference)
    rdn['model']['args']['encoder_spec'] = {'name': 'rdn', 'args': {'no_upsampling': True}}
    torch.save(rdn, tmp_path / 'rdn.pth')
    err = _upscale_error(tmp_path, tmp_path / 'rdn.pth', lr_path, capsys)
    assert "its encoder is 'rdn'; only the EDSR encoders (edsr-baseline, edsr) are implemented here" in err
    # The GaussianSR authors' model in this layout (docs/COMPARE.md: not ours under other names).
    theirs = _official(reference)
    theirs['model']['name'] = 'gaussian-splatter'
    torch.save(theirs, tmp_path / 'gaussiansr_authors.pth')
    err = _upscale_error(tmp_path, tmp_path / 'gaussiansr_authors.pth', lr_path, capsys)
    assert ("(LIIF repository layout, model 'gaussian-splatter'): of the models saved in this layout only liif and "
            'metasr are implemented here') in err


def test_args_the_network_was_not_built_with_fail_in_one_line_naming_them(reference, lr_path, tmp_path, capsys):
    no_unfold = _official(reference)
    no_unfold['model']['args']['feat_unfold'] = False  # the LIIF paper's ablation "-u"
    torch.save(no_unfold, tmp_path / 'no_unfold.pth')
    err = _upscale_error(tmp_path, tmp_path / 'no_unfold.pth', lr_path, capsys)
    assert 'was trained with feat_unfold=False, the network has feat_unfold=True' in err
    # ... and load into a network built with them (this one's weights do not fit: shapes differ).
    net = LIIF(feat_unfold=False)
    with pytest.raises(ValueError, match=r"first mismatched key 'imnet.0.weight' has shape \(256, 580\)"):
        load_weights(net, str(tmp_path / 'no_unfold.pth'))
    wide = _official(reference)
    wide['model']['args']['imnet_spec']['args']['hidden_list'] = [512, 512]
    torch.save(wide, tmp_path / 'wide.pth')
    err = _upscale_error(tmp_path, tmp_path / 'wide.pth', lr_path, capsys)
    assert 'was trained with hidden_list=[512, 512], the network has hidden_list=[256, 256, 256, 256]' in err


def test_a_file_with_missing_keys_fails_in_one_line(reference, lr_path, tmp_path, capsys):
    missing = _official(reference)
    del missing['model']['sd']['encoder.body.3.body.2.weight']
    torch.save(missing, tmp_path / 'missing.pth')
    err = _upscale_error(tmp_path, tmp_path / 'missing.pth', lr_path, capsys)
    assert "first mismatched key 'encoder.body.3.conv2.weight' is missing from the file (1 mismatches)" in err


def test_benchmark_shows_the_conversion_although_it_quietens_basicsr(reference):
    quiet_basicsr_logger()
    logger, records = logging.getLogger('basicsr'), []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        load_method(parse_model_arg(f'M={OPTION_FILES["metasr"]}:{reference / "metasr_official_format.pth"}'), CPU)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno == logging.INFO and 'converted from' in r.getMessage()]
