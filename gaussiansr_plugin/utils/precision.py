"""Mixed precision (ours, off by default): ``train.mixed_precision`` and ``val.mixed_precision``.

``fp32`` (the default) runs everything in float32. ``bf16`` and ``fp16`` run the forward pass
under ``torch.autocast`` to that type on the model's device: convolutions and linear layers in
half precision, the weights and the optimizer in float32. The archs keep coordinates, cells,
positions, sampling weights, the Gaussian renderer's exponents and window sums, and the colour
output layer in float32 under autocast (``archs/arch_util.full_precision``).
fp16 training scales the loss with a ``GradScaler`` (bf16 has float32's range and needs none).
Meant for CUDA (tensor cores); on the CPU it runs when asked, at whatever speed the CPU's
half-precision support gives.

Serving (``basicsr test``, ``upscale``, ``explain``, the benchmark): one precision per call, passed
down to the one place that opens the autocast (``render/tiling.render`` for the query archs,
the benchmark's ``ModelMethod`` for BasicSR's fixed-scale networks); nobody wraps a call in an
autocast of their own, so no inner context can switch an outer one off. ``serving_precision``
decides what ``auto`` means on a device: on CUDA bf16 where the GPU has it, else fp16; on the
CPU fp32. bf16 on a CPU with AVX512-BF16 was measured (docs/COMPARE.md, ``scripts/measure_bf16.py``
and ``basicsr benchmark --precision fp32 bf16``): GaussianSR 1.5-1.7x faster at 64² -> 512², short
of the 2x that would make it the default, so on the CPU it is asked for (``--precision bf16``).
``basicsr test``, validation, ``explain`` and the benchmark's quality tables stay fp32 unless asked.
``autocast`` opens no context for ``fp32`` (a disabled ``torch.autocast`` would switch off one
that a caller opened).
"""
import contextlib
from typing import Any, ContextManager, Dict

import torch

PRECISIONS: Dict[str, Any] = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# How the commands name a precision to the user.
PRECISION_NAMES = {'fp32': 'float32', 'bf16': 'bfloat16 autocast', 'fp16': 'float16 autocast'}
# What a serving command's --precision accepts: a precision, or auto (see serving_precision).
SERVING_CHOICES = ('auto', *PRECISIONS)


def check_precision(value: Any, key: str) -> None:
    """Raises ValueError naming ``key`` unless ``value`` is one of ``PRECISIONS``."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ValueError(f'{key} must be one of {list(PRECISIONS)}, got {value!r}')


def autocast(device: torch.device, precision: str) -> ContextManager[Any]:
    """The autocast context of ``precision`` on ``device``; for fp32 none at all (a null context),
    so that an autocast the caller opened stays in force (see the module docstring)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == 'fp16')


def serving_precision(device: torch.device, requested: str = 'auto') -> str:
    """The precision a served call runs at on ``device``: ``requested``, or for ``auto`` on CUDA bf16
    where the GPU has native bfloat16, else fp16, and fp32 on the CPU (see the module docstring).

    Raises:
        ValueError: ``requested`` is unknown, or bf16 on a GPU without bfloat16.
    """
    if requested not in SERVING_CHOICES:
        raise ValueError(f'--precision must be one of {list(SERVING_CHOICES)}, got {requested!r}')
    if requested == 'auto':
        if device.type == 'cuda':
            return 'bf16' if torch.cuda.is_bf16_supported(including_emulation=False) else 'fp16'
        return 'fp32'
    if requested == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise ValueError(f'--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or fp32')
    return requested
