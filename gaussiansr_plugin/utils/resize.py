"""Image downsamplers for building LR/HR training pairs.

Two bicubic resizers with one contract:

* :func:`imresize_matlab` reproduces MATLAB's ``imresize(img, [h w], 'bicubic')``
  (antialiased when downscaling). The standard SR benchmarks (Set5, Set14,
  DIV2K, ...) were made with it, so training LR must come from it for results
  to be comparable.
* :func:`resize_torch_bicubic` is PyTorch's antialiased bicubic: the same
  kernel, but with different border handling, so only the outermost pixels
  differ from MATLAB's.

Both take a ``(C, H, W)`` or ``(B, C, H, W)`` tensor, float in [0, 1] or uint8
in [0, 255], and return the same layout and dtype. Float results are neither
clamped nor rounded (bicubic overshoot is part of the signal); uint8 results
are rounded and clamped.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['imresize_matlab', 'resize_torch_bicubic', 'DOWNSAMPLERS', 'get_downsampler']


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as used by MATLAB."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return ((1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) +
            (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2)))


@functools.lru_cache(maxsize=256)
def _weight_matrix(in_len: int, out_len: int) -> torch.Tensor:
    """Dense (out_len, in_len) float64 matrix doing MATLAB's 1-D bicubic resize.

    Follows MATLAB's ``contributions()``; the matrix form folds its symmetric
    border handling in by adding the weight of a mirrored tap onto the pixel it
    mirrors. The cached tensor is shared between calls: never modify it in place.
    """
    scale = out_len / in_len
    antialias = scale < 1
    # Downscaling stretches the kernel by 1/scale so it low-pass filters
    # (antialiasing); upscaling uses the plain 4-tap kernel.
    kernel_width = 4.0 / scale if antialias else 4.0

    x = np.arange(1, out_len + 1, dtype=np.float64)  # MATLAB's 1-based output index
    u = x / scale + 0.5 * (1 - 1 / scale)  # matching position in input coordinates
    left = np.floor(u - kernel_width / 2)
    num_taps = math.ceil(kernel_width) + 2  # one spare tap each side, as MATLAB
    indices = left[:, None] + np.arange(num_taps)[None, :]  # 1-based input indices

    dist = u[:, None] - indices
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)

    # MATLAB's symmetric padding: aux = [1:in, in:-1:1], indexed modulo its length,
    # so out-of-range taps land on mirrored pixels (edge pixel repeated).
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]

    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], cols.shape)
    np.add.at(matrix, (rows, cols), weights)  # add.at: mirrored taps may repeat a column
    return torch.from_numpy(matrix)


def _check_input(img: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
    """Validates the shared input contract and returns ``(out_h, out_w)`` as ints."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f'img must be a torch.Tensor, got {type(img).__name__}')
    if img.dim() not in (3, 4):
        raise ValueError(f'img must be (C, H, W) or (B, C, H, W), got shape {tuple(img.shape)}')
    if img.dtype != torch.uint8 and not img.is_floating_point():
        raise TypeError(f'img must be float or uint8, got {img.dtype}')
    out_h, out_w = (int(s) for s in size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'size must be positive, got {tuple(size)}')
    return out_h, out_w


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    # float64 input keeps its precision; uint8 and low-precision floats are
    # computed in float32 (half matmuls are not supported everywhere on CPU).
    return torch.float64 if dtype == torch.float64 else torch.float32


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    # floor(x + 0.5) rounds halves up, like MATLAB's uint8 conversion does for
    # non-negative values (torch.round would round halves to even).
    return (x + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


def imresize_matlab(img: torch.Tensor, size: tuple[int, int], quantize: bool | None = None) -> torch.Tensor:
    """Resizes like MATLAB's ``imresize(img, [out_h out_w], 'bicubic')``.

    Antialiased when downscaling, plain bicubic when upscaling, with MATLAB's
    symmetric border handling. Each dimension is one matrix multiplication
    with a cached weight matrix, so this is cheap enough for a data pipeline.

    Args:
        img: ``(C, H, W)`` or ``(B, C, H, W)`` tensor, float in [0, 1] or uint8.
        size: Output ``(out_h, out_w)``; the scale of each dimension is
            ``out / in``, as MATLAB does when given an output size.
        quantize: Round the intermediate result to 8 bits after the first of
            the two 1-D passes, as MATLAB does for uint8 images (for float
            input, to multiples of 1/255 in [0, 1]). ``None`` means True for
            uint8 input and False for float input.

    Returns:
        The resized tensor, same layout and dtype as ``img``. Float output is
        not clamped or rounded; uint8 output is rounded and clamped.
    """
    out_h, out_w = _check_input(img, size)
    in_h, in_w = img.shape[-2:]
    is_uint8 = img.dtype == torch.uint8
    if quantize is None:
        quantize = is_uint8
    # Quantizing works on the 0-255 grid; float images are on a 0-1 scale.
    levels = 1.0 if is_uint8 else 255.0

    work_dtype = _work_dtype(img.dtype)
    out = img.to(work_dtype)
    w_h = _weight_matrix(in_h, out_h).to(device=img.device, dtype=work_dtype)
    w_w = _weight_matrix(in_w, out_w).to(device=img.device, dtype=work_dtype)

    # MATLAB resizes the dimension with the smaller scale first (stable sort,
    # rows first on ties). Without quantization the order does not change the
    # result, but with it the intermediate rounding happens at a different point.
    passes = ['h', 'w'] if out_h / in_h <= out_w / in_w else ['w', 'h']
    for i, dim in enumerate(passes):
        out = torch.matmul(w_h, out) if dim == 'h' else torch.matmul(out, w_w.t())
        if quantize and i == 0:
            out = _to_uint8(out * levels).to(work_dtype) / levels

    if is_uint8:
        return _to_uint8(out)
    return out.to(img.dtype)


def resize_torch_bicubic(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resizes with PyTorch's antialiased bicubic interpolation.

    With ``antialias=True`` PyTorch uses the same a = -0.5 kernel as MATLAB and
    matches :func:`imresize_matlab` away from the borders, but it truncates the
    kernel at the image edge instead of mirroring, so the outermost few pixels
    differ from the standard benchmark LR.

    Args:
        img: ``(C, H, W)`` or ``(B, C, H, W)`` tensor, float in [0, 1] or uint8.
        size: Output ``(out_h, out_w)``.

    Returns:
        The resized tensor, same layout and dtype as ``img``. Float output is
        not clamped or rounded; uint8 output is rounded and clamped.
    """
    out_h, out_w = _check_input(img, size)
    batched = img.dim() == 4
    # interpolate needs a batch dimension, and antialiased bicubic is only
    # implemented for float32/float64 on every device.
    x = (img if batched else img.unsqueeze(0)).to(_work_dtype(img.dtype))
    out = F.interpolate(x, size=(out_h, out_w), mode='bicubic', antialias=True, align_corners=False)
    if not batched:
        out = out.squeeze(0)
    if img.dtype == torch.uint8:
        return _to_uint8(out)
    return out.to(img.dtype)


DOWNSAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    'matlab': imresize_matlab,
    'torch': resize_torch_bicubic,
}


def get_downsampler(name: str) -> Callable[..., torch.Tensor]:
    """Returns the downsampler registered under ``name``.

    Args:
        name: A key of :data:`DOWNSAMPLERS` (``'matlab'`` or ``'torch'``).

    Returns:
        A function ``(img, size) -> resized img``.

    Raises:
        ValueError: If ``name`` is not a known downsampler.
    """
    try:
        return DOWNSAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(f'Unknown downsampler {name!r}; valid names: {sorted(DOWNSAMPLERS)}') from None
