"""The methods the benchmark compares: BasicSR models built from option files, and bicubic.

A method is given as ``NAME=OPTION_FILE[:CHECKPOINT]`` or ``NAME=WEIGHTS`` (the name of shipped
weights, ``gaussiansr_plugin/weights``: their option file and checkpoint). The option file's
``model_type`` and ``network_g`` say what to build; the checkpoint and its key are found as
for ``upscale`` and ``explain`` (``utils/loading.model_source``); BasicSR's ``build_model``
builds the model with ``is_train: False``, so the checkpoint is loaded by the model itself (the
plugin's ``load_weights``: weights only, one clear error for a file that does not fit or was
trained with other arch options). Two kinds are supported:

* query-based arbitrary-scale models (``ArbitraryScaleSRModel``: GaussianSR, LIIF, MetaSR),
  run through ``ArbitraryScaleSRModel.predict`` (encoder once, queries in ``val.query_chunk``
  chunks) at any scale;
* fixed-scale BasicSR models (e.g. ``SRModel`` with ``EDSR``), run through their own ``test``
  and evaluated only at their ``scale`` (the option file's top-level ``scale``, else
  ``network_g.upscale``).
"""
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import torch

import gaussiansr_plugin  # noqa: F401  (patches BasicSR before anything imports it)
from basicsr.models import build_model
from basicsr.utils import get_root_logger
from gaussiansr_plugin.models.arbitrary_scale_sr_model import ArbitraryScaleSRModel
from gaussiansr_plugin.utils.checkpoint import CONVERSION_LOGGER
from gaussiansr_plugin.utils.command_line import resolve_model_arg
from gaussiansr_plugin.utils.loading import model_source
from gaussiansr_plugin.utils.options import OptionError
from gaussiansr_plugin.utils.precision import autocast
from gaussiansr_plugin.utils.resize import imresize_matlab

BICUBIC = 'Bicubic'


@dataclass(frozen=True)
class MethodSpec:
    """What ``--model NAME=OPTION_FILE[:CHECKPOINT]`` names; ``option_file`` None means bicubic."""
    name: str
    option_file: Optional[str] = None
    checkpoint: Optional[str] = None

    def to_arg(self) -> str:
        """The ``--model`` text that parses back to this spec (``bicubic`` for bicubic)."""
        if self.option_file is None:
            return BICUBIC
        return f'{self.name}={self.option_file}' + (f':{self.checkpoint}' if self.checkpoint else '')


def parse_model_arg(text: str) -> MethodSpec:
    """Parses ``NAME=OPTION_FILE[:CHECKPOINT]`` or ``NAME=WEIGHTS`` (``Bicubic`` alone is bicubic).

    The checkpoint is split off at the last ':' (not at a Windows drive letter); without one
    the option file's ``path.pretrain_network_g`` is used. ``WEIGHTS``, the name of shipped
    weights that is not an existing path, stands for their option file and checkpoint
    (``utils.command_line.resolve_model_arg``).

    Raises:
        ValueError: Malformed text, the reserved name, or an unknown name of weights, naming
            the argument.
    """
    if text.strip().lower() == BICUBIC.lower():
        return MethodSpec(BICUBIC)
    name, sep, rest = text.partition('=')
    name = name.strip()
    if not sep or not name or not rest:
        raise ValueError(f'--model {text!r}: expected NAME=OPTION_FILE[:CHECKPOINT]')
    if name.lower() == BICUBIC.lower():
        raise ValueError(f'--model {text!r}: the name {BICUBIC!r} is reserved (bicubic is always included)')
    return MethodSpec(name, *resolve_model_arg(rest))


class Method:
    """One method under comparison: a name, a parameter count and ``upscale``."""

    name: str = ''
    params: int = 0
    checkpoint: Optional[str] = None
    scale: Optional[float] = None  # the only scale a fixed-scale method supports; None: any

    def supports(self, scale: float) -> bool:
        return self.scale is None or math.isclose(self.scale, scale)

    def upscale(self, lq: torch.Tensor, out_size: Sequence[int], precision: str = 'fp32') -> torch.Tensor:
        """Super-resolves ``lq`` (B, 3, h, w) in [0, 1] to (B, 3, *out_size), unclamped, the
        network at ``precision`` (``utils/precision.py``; the method opens the one autocast)."""
        raise NotImplementedError


class BicubicMethod(Method):
    """MATLAB-compatible bicubic upscaling (``imresize_matlab``), the usual baseline row."""

    def __init__(self) -> None:
        self.name = BICUBIC

    def upscale(self, lq: torch.Tensor, out_size: Sequence[int], precision: str = 'fp32') -> torch.Tensor:
        return imresize_matlab(lq, tuple(out_size))  # float32 at every precision: no network


class ModelMethod(Method):
    """A BasicSR model built from an option file (see the module docstring)."""

    def __init__(self, name: str, model: Any, scale: Optional[float]) -> None:
        self.name = name
        self.model = model
        self.checkpoint = model.opt['path'].get('pretrain_network_g')  # None: random weights
        self.scale = scale
        net = model.get_bare_model(model.net_g)
        self.params = sum(p.numel() for p in net.parameters())
        self.arbitrary = isinstance(model, ArbitraryScaleSRModel)

    @property
    def net(self) -> torch.nn.Module:
        return self.model.get_bare_model(self.model.net_g)

    def upscale(self, lq: torch.Tensor, out_size: Sequence[int], precision: str = 'fp32') -> torch.Tensor:
        if self.arbitrary:
            return self.model.predict(lq, tuple(out_size), precision=precision)
        self.model.feed_data({'lq': lq})
        with autocast(lq.device, precision):  # BasicSR's test() opens none of its own
            self.model.test()
        output = self.model.output.to(lq.dtype)
        del self.model.lq, self.model.output  # do not keep the last image alive between calls
        if tuple(output.shape[-2:]) != tuple(out_size):
            raise ValueError(f'{self.name}: a x{self.scale:g} model gave {tuple(output.shape[-2:])} for an LR of '
                             f'{tuple(lq.shape[-2:])}, expected {tuple(out_size)}')
        return output


def quiet_basicsr_logger() -> None:
    """BasicSR's logger prints every network and model creation at INFO; the harness prints its own
    lines. Conversions of checkpoints in another layout (official LIIF / MetaSR files) stay shown."""
    get_root_logger().setLevel(logging.WARNING)
    logging.getLogger(CONVERSION_LOGGER).setLevel(logging.INFO)


def probe_input(lq_size: int, device: torch.device) -> torch.Tensor:
    """The LR input cost is measured on: (1, 3, lq_size, lq_size) uniform noise, fixed seed."""
    return torch.rand(1, 3, lq_size, lq_size, generator=torch.Generator().manual_seed(0)).to(device)


def _model_options(spec: MethodSpec, device: torch.device, is_train: bool) -> Dict[str, Any]:
    try:  # the commands' one loader: checkpoint and key as upscale and explain find them
        source = model_source(spec.option_file, spec.checkpoint)
    except ValueError as err:
        raise FileNotFoundError(f'--model {spec.name}: {err}') from err
    opt = source.opt
    for key in ('model_type', 'network_g'):
        if key not in opt:
            raise OptionError(f'{spec.option_file}: {key} is required (method {spec.name})')
    path_opt = dict(opt.get('path') or {})
    model_opt = dict(
        name=spec.name,
        model_type=opt['model_type'],
        num_gpu=1 if device.type == 'cuda' else 0,
        is_train=is_train,
        dist=False,
        rank=0,
        world_size=1,
        network_g=dict(opt['network_g']),
        path=dict(pretrain_network_g=None if is_train else source.checkpoint,
                  strict_load_g=path_opt.get('strict_load_g', True), param_key_g=source.param_key),
        val={k: v for k, v in (opt.get('val') or {}).items() if k == 'query_chunk'},
    )
    if 'scale' in opt:  # fixed-scale BasicSR models keep their top-level scale
        model_opt['scale'] = opt['scale']
    return model_opt


def fixed_scale(opt: Dict[str, Any], option_file: str) -> float:
    """The scale of a fixed-scale model: top-level ``scale``, else ``network_g.upscale``."""
    scale = opt.get('scale', opt['network_g'].get('upscale'))
    if not isinstance(scale, (int, float)) or scale < 1:
        raise OptionError(f'{option_file}: a fixed-scale model ({opt["model_type"]}) needs a top-level scale '
                          f'or network_g.upscale >= 1, got {scale!r}')
    return float(scale)


def load_method(spec: MethodSpec, device: torch.device) -> Method:
    """Builds the method ``spec`` names on ``device`` (bicubic when ``spec.option_file`` is None).

    Raises:
        OptionError, FileNotFoundError, ValueError: bad option file or checkpoint, naming it.
    """
    if spec.option_file is None:
        return BicubicMethod()
    opt = _model_options(spec, device, is_train=False)
    model = build_model(opt)
    arbitrary = isinstance(model, ArbitraryScaleSRModel)
    if not arbitrary and not hasattr(model, 'test'):
        raise OptionError(f'{spec.option_file}: model_type {opt["model_type"]} has no test()')
    scale = None if arbitrary else fixed_scale(opt, spec.option_file)
    return ModelMethod(spec.name, model, scale)


def build_train_model(spec: MethodSpec, device: torch.device) -> Any:
    """An ``ArbitraryScaleSRModel`` of ``spec``'s network set up for training, with one recipe for
    every arch (Adam lr 1e-4, betas (0.9, 0.999), L1 loss, no EMA) so that training speed is
    compared on equal terms. Weights are freshly initialized (speed does not depend on them)."""
    opt = _model_options(spec, device, is_train=True)
    if opt['model_type'] != 'ArbitraryScaleSRModel':
        raise OptionError(f'{spec.option_file}: training speed is measured for ArbitraryScaleSRModel archs, '
                          f'not {opt["model_type"]}')
    opt.update(
        manual_seed=0,
        train=dict(ema_decay=0,
                   optim_g=dict(type='Adam', lr=1e-4, weight_decay=0, betas=[0.9, 0.999]),
                   scheduler=dict(type='MultiStepLR', milestones=[10**9], gamma=0.5),
                   total_iter=10**9, warmup_iter=-1,
                   pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean')))
    return build_model(opt)
