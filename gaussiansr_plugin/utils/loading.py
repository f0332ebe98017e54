"""The one way the commands (``basicsr upscale``, ``explain``, ``benchmark``) find a network's weights.

A model argument is ``OPTION_FILE:CHECKPOINT``, ``OPTION_FILE`` (its ``path.pretrain_network_g``)
or ``NAME`` (shipped weights, ``gaussiansr_plugin/weights``); ``model_source`` resolves it to the
option file, the checkpoint file and the key to read (``utils/checkpoint.param_key_of``: the
rule of ``basicsr test``). ``load_net`` builds the option file's ``network_g`` as the option check
builds it (``utils/options.py``) and loads the checkpoint with ``weights_only=True``
(``utils/checkpoint.py``); a LIIF or MetaSR file as its authors released it is converted (the
model line says so); a file that does not fit, or was trained with other arch options, fails
with one line naming it. Without a model argument, upscale and explain take the shipped
weights, else the demo's checkpoint (``default_model_arg``); the benchmark builds whole BasicSR
models from the same source.
"""
from dataclasses import dataclass
from os import path as osp
from typing import Any, Dict, Optional

import torch

from .. import weights
from ..archs.arch_util import ImplicitSRNet
from ..render.tiling import query_chunk_or_default
from .checkpoint import find_checkpoint, load_weights, param_key_of, read_weights
from .command_line import resolve_model_arg
from .options import build_network, load_option_file

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_OPTIONS = osp.join('options', 'train_gaussiansr_demo.yml')
DEMO_CHECKPOINT = osp.join('experiments', 'GaussianSR_demo', 'models', 'net_g_latest.pth')


@dataclass(frozen=True)
class ModelSource:
    """Where a model's network and weights come from.

    Attributes:
        option_file: The option file.
        opt: Its options.
        checkpoint: The checkpoint file (a shipped name resolved), None when neither the model
            argument nor ``path.pretrain_network_g`` gives one.
        param_key: The key to read (``param_key_of``).
    """
    option_file: str
    opt: Dict[str, Any]
    checkpoint: Optional[str]
    param_key: str


def model_source(option_file: str, checkpoint: Optional[str] = None) -> ModelSource:
    """The option file (read) and the checkpoint of a model: ``checkpoint``, else the option
    file's ``path.pretrain_network_g`` (a file or the name of shipped weights), else None.

    Raises:
        OptionError: The option file is missing or malformed.
        ValueError: The checkpoint is neither a file nor the name of shipped weights (naming it).
    """
    opt = load_option_file(option_file)
    path_opt = opt.get('path') or {}
    checkpoint = checkpoint or path_opt.get('pretrain_network_g')
    if checkpoint:
        checkpoint = find_checkpoint(osp.expanduser(checkpoint))
    return ModelSource(option_file, opt, checkpoint, param_key_of(path_opt))


@dataclass
class LoadedNet:
    """A network ready for inference and where it came from."""
    net: ImplicitSRNet
    option_file: str
    checkpoint: str
    query_chunk: int
    converted: Optional[str] = None  # what converting a file in another layout did (official LIIF/MetaSR)

    @property
    def description(self) -> str:
        params = sum(p.numel() for p in self.net.parameters())
        converted = f', {self.converted}' if self.converted else ''
        return f'{type(self.net).__name__} ({params:,} parameters) from {self.checkpoint}{converted}'


def default_model_arg() -> str:
    """``OPTION_FILE:CHECKPOINT`` of the shipped weights (the first name starting with 'gaussiansr',
    else the first), else of the demo run in the current directory.

    Raises:
        FileNotFoundError: Neither exists; the message says what to pass.
    """
    names = weights.shipped_names()
    if names:
        name = next((n for n in names if n.lower().startswith('gaussiansr')), names[0])
        return '{0}.yml:{0}.pth'.format(osp.join(weights.WEIGHTS_DIR, name))
    if osp.isfile(DEMO_CHECKPOINT):
        options = DEMO_OPTIONS if osp.isfile(DEMO_OPTIONS) else osp.join(REPO_ROOT, DEMO_OPTIONS)
        return f'{options}:{DEMO_CHECKPOINT}'
    raise FileNotFoundError(
        f'No --model given and no default weights ({weights.WEIGHTS_DIR} has none and the demo has not been run '
        f'here: no {DEMO_CHECKPOINT}); pass --model OPTION_FILE:CHECKPOINT, e.g. --model '
        'options/train_gaussiansr.yml:experiments/GaussianSR/models/net_g_latest.pth')


def load_net(model_arg: Optional[str], device: torch.device) -> LoadedNet:
    """Builds and loads the network ``model_arg`` names (``OPTION_FILE[:CHECKPOINT]`` or the name of
    shipped weights; None: ``default_model_arg()``), in eval mode on ``device``.

    Raises:
        OptionError: The option file is missing or malformed.
        FileNotFoundError, KeyError, ValueError: No checkpoint, a bad ``network_g``, a network
            that is not query-based, an unknown name, or a checkpoint that does not fit; the
            message names it.
    """
    source = model_source(*resolve_model_arg(model_arg or default_model_arg()))
    option_file, opt = source.option_file, source.opt
    try:
        net = build_network(opt.get('network_g'))
    except (KeyError, ValueError) as err:
        raise ValueError(f'{option_file}: {err.args[0] if err.args else err}') from err
    if not isinstance(net, ImplicitSRNet):
        raise ValueError(f'{option_file}: {type(net).__name__} is not an arbitrary-scale network '
                         '(GaussianSR, LIIF or MetaSR)')
    if not source.checkpoint:
        raise FileNotFoundError(f'--model {model_arg}: no checkpoint (give OPTION_FILE:CHECKPOINT)')
    weights = read_weights(source.checkpoint, param_key=source.param_key)
    load_weights(net, weights, strict=True)
    net.eval().requires_grad_(False).to(device)
    chunk = query_chunk_or_default((opt.get('val') or {}).get('query_chunk'))
    return LoadedNet(net, option_file, weights.path, chunk, weights.converted)


def choose_device(gpu_id: Optional[int]) -> torch.device:
    """CUDA device ``gpu_id`` (default 0) when CUDA is present, else the CPU.

    Raises:
        ValueError: ``gpu_id`` names a device that is not there.
    """
    if not torch.cuda.is_available():
        if gpu_id is not None:
            raise ValueError(f'--gpu-id {gpu_id}: CUDA is not available on this machine (omit it to use the CPU)')
        return torch.device('cpu')
    index = gpu_id or 0
    if not 0 <= index < torch.cuda.device_count():
        raise ValueError(f'--gpu-id {index}: there are {torch.cuda.device_count()} CUDA devices')
    return torch.device('cuda', index)

