"""Mixed precision (ours, off by default): ``train.mixed_precision`` and ``val.mixed_precision``.

``fp32`` (the default) runs everything in float32. ``bf16`` and ``fp16`` run the forward pass
under ``torch.autocast`` to that type on the model's device: convolutions and linear layers in
half precision, the weights and the optimizer in float32. The archs keep coordinates, cells,
positions, sampling weights, the Gaussian renderer's exponents and window sums, and the colour
output layer in float32 under autocast (``archs/arch_util.full_precision``).
fp16 training scales the loss with a ``GradScaler`` (bf16 has float32's range and needs none).
Meant for CUDA (tensor cores); on the CPU it runs when asked, at whatever speed the CPU's
half-precision support gives.
"""
from typing import Any, Dict

import torch

PRECISIONS: Dict[str, Any] = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_precision(value: Any, key: str) -> None:
    """Raises ValueError naming ``key`` unless ``value`` is one of ``PRECISIONS``."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ValueError(f'{key} must be one of {list(PRECISIONS)}, got {value!r}')


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of ``precision`` on ``device`` (a disabled one for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == 'fp16')
