"""Writing checkpoints atomically and loading weights without unpickling code (ours).

``gaussiansr_plugin/features.py`` makes BasicSR's ``BaseModel`` use both; the option check
(``utils/options.py``) loads ``pretrain_network_g`` with ``load_weights`` before training starts.
"""
import io
from os import path as osp
from typing import Any, Optional

import torch

from .file_io import atomic_write


def atomic_torch_save(obj: Any, file_path: str) -> None:
    """``torch.save`` through a temporary name and a rename: a kill mid-save leaves no truncated
    checkpoint under the final name for resume or test to pick up."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(buffer.getvalue(), file_path)


def load_weights(net: torch.nn.Module, load_path: str, strict: bool = True,
                 param_key: Optional[str] = 'params') -> None:
    """Loads a checkpoint into ``net`` with ``weights_only=True`` and one clear error.

    Stands in for ``BaseModel.load_network``, which unpickles arbitrary objects (other people's
    checkpoints run code) and, on a file that does not fit the network, fails deep in
    ``load_state_dict`` after printing key lists to the log. Here a missing, unreadable or
    mismatched file raises ``ValueError`` naming the file and the first mismatched key.
    BasicSR's conventions stay: ``params_ema`` falls back to ``params``; 'module.' prefixes are
    dropped; ``strict=False`` skips keys whose shapes differ.
    """
    if not osp.isfile(load_path):
        raise ValueError(f'Checkpoint {load_path} does not exist')
    try:
        checkpoint = torch.load(load_path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001  (unpickling a bad file raises many types)
        raise ValueError(f'Checkpoint {load_path} cannot be loaded as weights only '
                         f'(truncated, or it holds more than tensors): {err}') from err
    if isinstance(checkpoint, dict) and param_key is not None and param_key in checkpoint:
        state = checkpoint[param_key]
    elif isinstance(checkpoint, dict) and 'params' in checkpoint:
        state = checkpoint['params']
    else:
        state = checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'Checkpoint {load_path} is not a state dict (key {param_key!r} or "params" holding '
                         'tensors)')
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = net.state_dict()
    problems = [f'{k!r} is missing from the file' for k in expected if k not in state]
    problems += [f'{k!r} is not in {type(net).__name__}' for k in state if k not in expected]
    shape_problems = [f'{k!r} has shape {tuple(state[k].shape)}, the network {tuple(expected[k].shape)}'
                      for k in state if k in expected and state[k].shape != expected[k].shape]
    if strict and (problems or shape_problems):
        first = sorted(problems + shape_problems)[0]
        raise ValueError(f'Checkpoint {load_path} does not fit {type(net).__name__}: first mismatched key {first} '
                         f'({len(problems) + len(shape_problems)} mismatches)')
    for k in [k for k in state if k in expected and state[k].shape != expected[k].shape]:
        state.pop(k)
    net.load_state_dict(state, strict=strict)
