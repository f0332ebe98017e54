"""Writing checkpoints atomically and loading weights without unpickling code (ours).

``gaussiansr_plugin/features.py`` makes BasicSR's ``BaseModel`` use both, and has every network
checkpoint it writes carry the arch's behaviour-defining options under ``ARCH_KEY`` (beside
``params`` / ``params_ema``); ``load_weights`` refuses a checkpoint whose options differ from the
network's. The option check (``utils/options.py``) loads ``pretrain_network_g`` with
``load_weights`` before training starts. A checkpoint may also be given by the name of shipped
weights (``gaussiansr_plugin/weights``), or be a LIIF or MetaSR file as its authors released it
(``utils/official_checkpoint.py``: converted on reading, its args checked like our arch options).
"""
import io
import logging
from dataclasses import dataclass
from os import path as osp
from typing import Any, Dict, Optional, Union

import torch

from basicsr.utils import get_root_logger
from ..weights import describe_shipped, resolve_weights_name
from .file_io import atomic_write
from .official_checkpoint import convert_official, is_official_layout

# Key of a checkpoint's arch options: {'type': arch name, option: value}, plain Python values
# (bool, int, float, str, lists of them), so that ``torch.load(weights_only=True)`` reads them.
ARCH_KEY = 'arch'
# The logger of checkpoint conversions (official LIIF / MetaSR files); its records go to BasicSR's
# handlers, and ``basicsr benchmark``, which quietens BasicSR's logger, keeps this one at INFO.
CONVERSION_LOGGER = 'basicsr.checkpoint'


def param_key_of(path_opt: Optional[Dict[str, Any]]) -> str:
    """The checkpoint key a network is loaded from, for every way in (``basicsr train/test``,
    ``upscale``, ``explain``, the benchmark, the option check): ``path.param_key_g``, else
    ``'params'``, BasicSR's ``SRModel`` rule, so that every command loads the tensors ``basicsr
    test`` loads with the same option file. A key the file lacks falls back to ``params``
    (``read_weights``, as BasicSR's ``load_network``); EMA weights: ``param_key_g: params_ema``."""
    return (path_opt or {}).get('param_key_g', 'params')


def atomic_torch_save(obj: Any, file_path: str) -> None:
    """``torch.save`` through a temporary name and a rename: a kill mid-save leaves no truncated
    checkpoint under the final name for resume or test to pick up."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(buffer.getvalue(), file_path)


def arch_options_of(net: torch.nn.Module) -> Optional[Dict[str, Any]]:
    """``net.arch_options()`` (``ImplicitSRNet``: type and behaviour-defining options), None for
    networks that do not define it (e.g. BasicSR's EDSR)."""
    get = getattr(net, 'arch_options', None)
    return get() if callable(get) else None


def find_checkpoint(load_path: str) -> str:
    """``load_path`` when it is a file, else the checkpoint of the shipped weights of that name.

    Raises:
        ValueError: Neither; the message lists the shipped names.
    """
    if osp.isfile(load_path):
        return load_path
    shipped = resolve_weights_name(load_path)
    if shipped is not None:
        return shipped[1]
    raise ValueError(f'Checkpoint {load_path} does not exist, nor is it the name of shipped weights '
                     f'({describe_shipped()})')


def check_arch(saved: Any, net: torch.nn.Module, load_path: str) -> None:
    """Raises ``ValueError`` when the arch options a checkpoint was saved with (``saved``, its
    ``ARCH_KEY`` entry) differ from ``net``'s, naming the file and every differing option.

    Options such as ``rgb_skip`` change what the network computes, not its parameter shapes:
    without this check such a checkpoint would load silently and give wrong outputs. Only the
    options both sides name are compared, so checkpoints without them (older files, other
    people's) and options added later pass. A network without ``arch_options`` (e.g. BasicSR's
    EDSR) is compared by its class name only.
    """
    if not isinstance(saved, dict):
        return
    ours = arch_options_of(net) or {'type': type(net).__name__}
    if saved.get('type', ours.get('type')) != ours.get('type'):
        raise ValueError(f'Checkpoint {load_path} was trained as {saved["type"]}, the network is {ours["type"]}')
    differing = [k for k in ours if k != 'type' and k in saved and saved[k] != ours[k]]
    if differing:
        theirs = ', '.join(f'{k}={saved[k]!r}' for k in differing)
        mine = ', '.join(f'{k}={ours[k]!r}' for k in differing)
        raise ValueError(f'Checkpoint {load_path} was trained with {theirs}, the network has {mine}')


@dataclass
class Weights:
    """A checkpoint as ``read_weights`` read it.

    Attributes:
        path: The file.
        state: Its state dict, 'module.' prefixes dropped.
        arch: Its arch options record (``ARCH_KEY``), None when it has none.
        converted: For a file in another layout (``utils/official_checkpoint.py``), what the
            conversion did; None otherwise.
    """
    path: str
    state: Dict[str, torch.Tensor]
    arch: Optional[Dict[str, Any]] = None
    converted: Optional[str] = None


def read_weights(load_path: str, param_key: Optional[str] = 'params') -> Weights:
    """Reads a checkpoint with ``weights_only=True``: ours (``params_ema`` falling back to
    ``params``, as BasicSR does), or LIIF's and MetaSR's as their authors released them (the LIIF
    repository's layout, converted). ``load_path`` may be the name of shipped weights.

    Raises:
        ValueError: Missing, unreadable (truncated, or holding more than tensors), not a state
            dict, or in the official layout with args not implemented here; one line naming the file.
    """
    load_path = find_checkpoint(load_path)
    try:
        checkpoint = torch.load(load_path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001  (unpickling a bad file raises many types)
        raise ValueError(f'Checkpoint {load_path} cannot be loaded as weights only '
                         f'(truncated, or it holds more than tensors): {err}') from err
    if is_official_layout(checkpoint):
        return Weights(load_path, *convert_official(checkpoint, load_path))
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
    arch = checkpoint.get(ARCH_KEY) if isinstance(checkpoint, dict) else None
    return Weights(load_path, state, arch)


def load_weights(net: torch.nn.Module, source: Union[str, Weights], strict: bool = True,
                 param_key: Optional[str] = 'params') -> str:
    """Loads a checkpoint into ``net`` with ``weights_only=True`` and one clear error.

    Stands in for ``BaseModel.load_network``, which unpickles arbitrary objects (other people's
    checkpoints run code) and, on a file that does not fit the network, fails deep in
    ``load_state_dict`` after printing key lists to the log. Here a missing, unreadable or
    mismatched file raises ``ValueError`` naming the file and the first mismatched key, and a
    file saved with other arch options (see ``check_arch``) names the options. ``source`` is a
    path, the name of shipped weights, or what ``read_weights`` returned; official LIIF and
    MetaSR files are converted (``read_weights``), their args checked like our arch options,
    and the conversion logged. BasicSR's conventions stay: ``params_ema`` falls back to
    ``params``; 'module.' prefixes are dropped; ``strict=False`` skips keys whose shapes differ
    and only logs differing arch options.

    Returns:
        str: The file loaded.
    """
    weights = source if isinstance(source, Weights) else read_weights(source, param_key)
    load_path, state = weights.path, dict(weights.state)
    if weights.arch is not None:
        try:
            check_arch(weights.arch, net, load_path)
        except ValueError as err:
            if strict:
                raise
            get_root_logger().warning(f'{err} (loaded anyway: strict loading is off)')
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
    if weights.converted:
        # A child of BasicSR's logger, not ``get_root_logger()``: called before BasicSR sets its
        # logger up (the option check), that would set it up without the run's log file.
        logging.getLogger(CONVERSION_LOGGER).info(f'Checkpoint {load_path} {weights.converted}')
    return load_path
