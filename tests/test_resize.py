"""Tests for gaussiansr_plugin.utils.resize."""

import os

os.environ.setdefault('OMP_NUM_THREADS', '1')

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussiansr_plugin.utils.resize import (DOWNSAMPLERS, get_downsampler, imresize_matlab,
                                            resize_torch_bicubic)

# The shared data folder sits beside the repository: <root>/../shared/data.
DATA_ROOT = Path(__file__).resolve().parents[2] / 'shared' / 'data'
BENCHMARK = DATA_ROOT / 'benchmark'
# One Set5 image and its published LR images, committed: the MATLAB check runs in every clone.
FIXTURE_SET = Path(__file__).resolve().parent / 'fixtures' / 'Set5_woman'


def _basicsr_imresize():
    """BasicSR's numpy/loop port of MATLAB imresize: an independent implementation."""
    try:
        # basicsr 1.4.2 imports a torchvision module that newer torchvision renamed.
        import torchvision.transforms._functional_tensor as functional_tensor
        sys.modules.setdefault('torchvision.transforms.functional_tensor', functional_tensor)
    except ImportError:
        pass
    try:
        from basicsr.utils.matlab_functions import imresize
    except ImportError as err:
        pytest.skip(f'basicsr not importable: {err}')
    return imresize


def _read_rgb(path: Path) -> np.ndarray:
    cv2 = pytest.importorskip('cv2')
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, f'cannot read {path}'
    if img.ndim == 2:  # e.g. Set14 bridge.png is grayscale
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, ::-1])


def _benchmark_sets() -> list:
    """The committed fixture always; Set5 and Set14 where ``../shared`` has them."""
    return [pytest.param(FIXTURE_SET, id='fixture')] + [
        pytest.param(BENCHMARK / name, id=name, marks=pytest.mark.skipif(
            not (BENCHMARK / name).is_dir(), reason=f'benchmark data not found under {DATA_ROOT}'))
        for name in ('Set5', 'Set14')]


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('benchmark_set', _benchmark_sets())
def test_matches_matlab_benchmark_lr_exactly(benchmark_set, scale):
    """Every pixel of the published MATLAB-bicubic LR images (max difference 0, as the README says)."""
    hr_paths = sorted((benchmark_set / 'HR').glob('*.png'))
    assert hr_paths, f'no HR images in {benchmark_set / "HR"}'

    failures = []
    for hr_path in hr_paths:
        hr = _read_rgb(hr_path)
        h, w = hr.shape[:2]
        hr = hr[:h - h % scale, :w - w % scale]  # the standard top-left crop
        ref = _read_rgb(benchmark_set / 'LR_bicubic' / f'X{scale}' / f'{hr_path.stem}x{scale}.png')

        lr = imresize_matlab(torch.from_numpy(hr).permute(2, 0, 1), (hr.shape[0] // scale, hr.shape[1] // scale))
        assert lr.dtype == torch.uint8
        lr = lr.permute(1, 2, 0).numpy()
        assert lr.shape == ref.shape, hr_path.name
        if not np.array_equal(lr, ref):
            diff = np.abs(lr.astype(np.int16) - ref.astype(np.int16))
            failures.append(f'{hr_path.name}: {int((diff > 0).sum())} values differ, by up to {int(diff.max())}/255')
    assert not failures, failures


@pytest.mark.parametrize(
    'in_hw, scale',
    [
        ((48, 40), 1 / 4),  # integer downscale
        ((50, 35), 0.4),  # non-integer factor (x2.5), same scale on both axes
        ((24, 20), 2),  # upscale: no antialiasing
        ((24, 20), 1.5),  # non-integer upscale
    ])
def test_agrees_with_basicsr(in_hw, scale):
    imresize = _basicsr_imresize()
    img = torch.rand(3, *in_hw, generator=torch.Generator().manual_seed(0))
    ref = imresize(img, scale)
    out = imresize_matlab(img, tuple(ref.shape[-2:]))
    assert out.dtype == img.dtype
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_agrees_with_basicsr_anisotropic_size():
    """50x37 -> 21x16 has a different scale per axis (21/50 vs 16/37).

    BasicSR's imresize takes one scale for both axes, so it is applied one axis
    at a time: an axis of length 1 is left as is when downscaling, and BasicSR
    treats the channel dimension independently, so folding the other axis into
    channels resizes just one axis.
    """
    imresize = _basicsr_imresize()

    def along_w(x, out_w):
        c, h, w = x.shape
        y = imresize(x.reshape(c * h, 1, w), out_w / w)
        assert y.shape[-2:] == (1, out_w)
        return y.reshape(c, h, out_w)

    def along_h(x, out_h):
        return along_w(x.transpose(1, 2), out_h).transpose(1, 2)

    img = torch.rand(3, 50, 37, generator=torch.Generator().manual_seed(1))
    ref = along_w(along_h(img, 21), 16)
    out = imresize_matlab(img, (21, 16))
    assert out.shape == (3, 21, 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize('name', sorted(DOWNSAMPLERS))
@pytest.mark.parametrize('size', [(12, 9), (40, 50)])
def test_constant_image_stays_constant(name, size):
    resize = get_downsampler(name)
    img = torch.full((3, 24, 30), 0.3, dtype=torch.float64)
    torch.testing.assert_close(resize(img, size), torch.full((3, *size), 0.3, dtype=torch.float64))
    img_u8 = torch.full((3, 24, 30), 77, dtype=torch.uint8)
    assert torch.equal(resize(img_u8, size), torch.full((3, *size), 77, dtype=torch.uint8))


@pytest.mark.parametrize('name', sorted(DOWNSAMPLERS))
@pytest.mark.parametrize('dtype', [torch.uint8, torch.float16, torch.float32, torch.float64])
def test_dtype_and_layout(name, dtype):
    resize = get_downsampler(name)
    gen = torch.Generator().manual_seed(2)
    img4 = torch.rand(2, 3, 32, 28, generator=gen)
    img4 = (img4 * 255).round().to(torch.uint8) if dtype == torch.uint8 else img4.to(dtype)

    out4 = resize(img4, (8, 7))
    assert out4.shape == (2, 3, 8, 7)
    assert out4.dtype == dtype
    out3 = resize(img4[1], (8, 7))
    assert out3.shape == (3, 8, 7)
    assert out3.dtype == dtype
    # A batch is just its images resized one by one.
    assert torch.equal(out4[1], out3)


def test_float_output_is_not_clamped():
    # A sharp edge makes bicubic overshoot; float output must keep it.
    img = torch.zeros(1, 16, 16, dtype=torch.float64)
    img[:, :, 8:] = 1.0
    out = imresize_matlab(img, (32, 32))
    assert out.max() > 1.0 and out.min() < 0.0


def test_quantize_default():
    gen = torch.Generator().manual_seed(3)
    img_u8 = (torch.rand(3, 40, 30, generator=gen) * 255).round().to(torch.uint8)
    # Different scales per axis, so the intermediate pass is a real step.
    assert torch.equal(imresize_matlab(img_u8, (13, 10)), imresize_matlab(img_u8, (13, 10), quantize=True))
    img = img_u8.double() / 255
    assert torch.equal(imresize_matlab(img, (13, 10)), imresize_matlab(img, (13, 10), quantize=False))
    # Quantizing a float image lands the intermediate on the same 8-bit grid as uint8 input.
    from_float = (imresize_matlab(img, (13, 10), quantize=True) * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    assert (from_float.int() - imresize_matlab(img_u8, (13, 10)).int()).abs().max() <= 1


def test_torch_bicubic_matches_matlab_away_from_borders():
    # Same a=-0.5 kernel when antialiased; only border handling differs.
    img = torch.rand(1, 3, 64, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a = imresize_matlab(img, (16, 12))
    b = resize_torch_bicubic(img, (16, 12))
    torch.testing.assert_close(a[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2])


def test_get_downsampler():
    assert get_downsampler('matlab') is imresize_matlab
    assert get_downsampler('torch') is resize_torch_bicubic
    with pytest.raises(ValueError, match='nope') as info:
        get_downsampler('nope')
    assert 'matlab' in str(info.value) and 'torch' in str(info.value)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        imresize_matlab(torch.rand(8, 8), (4, 4))
    with pytest.raises(TypeError):
        imresize_matlab(torch.zeros(3, 8, 8, dtype=torch.int32), (4, 4))
    with pytest.raises(ValueError):
        imresize_matlab(torch.rand(3, 8, 8), (0, 4))
