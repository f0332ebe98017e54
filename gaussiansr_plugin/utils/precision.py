"""Mixed precision (ours, off by default): ``train.mixed_precision`` and ``val.mixed_precision``.

``fp32`` (the default) runs everything in float32. ``bf16`` and ``fp16`` run the forward pass
under ``torch.autocast`` to that type on the model's device: convolutions and linear layers in
half precision, the weights and the optimizer in float32. The archs keep coordinates, cells,
positions, sampling weights, the Gaussian renderer's exponents and window sums, and the colour
output layer in float32 under autocast (``archs/arch_util.full_precision``).
fp16 training scales the loss with a ``GradScaler`` (bf16 has float32's range and needs none).
Meant for CUDA (tensor cores); on the CPU it runs when asked, at whatever speed the CPU's
half-precision support gives.

One precision per measured or served call, decided by whoever makes the call: ``autocast`` opens
no context for ``fp32``, so a model's own fp32 (``val.mixed_precision`` unset) leaves an autocast
its caller opened in force, e.g. ``basicsr benchmark --precision bf16`` (a disabled
``torch.autocast`` would have switched it off for the query archs, and only for them).
"""
import contextlib
from typing import Any, ContextManager, Dict

import torch

PRECISIONS: Dict[str, Any] = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


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
