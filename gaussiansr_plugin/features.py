"""Our features in BasicSR's own pipelines, all wired in by ``install()`` (and nowhere else).

``compat.py`` fixes BasicSR 1.4.2 on today's stack; this module changes what BasicSR does, by
choice. ``gaussiansr_plugin/__init__.py`` calls ``install()`` right after ``compat.apply()``, so
every process that imports the plugin (torchrun ranks, spawned data workers) gets them:

- atomic checkpoints: ``BaseModel``'s ``torch.save`` (networks and training states) writes
  through a temporary name and a rename (``utils/checkpoint.py``);
- weights-only loading: ``BaseModel.load_network`` is ``utils.checkpoint.load_weights``, with
  one clear error for a file that does not fit, and the name of shipped weights accepted;
- arch options in checkpoints: every network checkpoint ``save_network`` writes holds, beside
  ``params`` / ``params_ema``, the arch's behaviour-defining options (``ARCH_KEY``), which
  ``load_weights`` compares with the network's (``rgb_skip`` and the like change outputs, not
  parameter shapes);
- exact resume: every training state holds the RNG states of every rank, and the resumed run
  continues the saved epoch where it stopped (``utils/resume.py``);
- per-sample randomness: the train sampler yields ``SampleKey``s, ints (the indices it yielded
  before) that carry a seed, a function of (run seed, epoch, position), so our datasets' data
  workers draw the same crops and scales in every run (``utils/sample_keys.py``); BasicSR's own
  datasets index with them as with the plain indices and draw as before.
"""
import types
from typing import Any, Dict, List, Optional

import torch

from basicsr import train as basicsr_train
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.models import base_model
from basicsr.utils import get_root_logger
from .utils import resume, sample_keys
from .utils.checkpoint import ARCH_KEY, arch_options_of, atomic_torch_save, load_weights

_INSTALLED = False
# RNG states of every rank, gathered for the training state being written (see _save).
_pending_rng_states: List[Any] = []
# Arch options of the network checkpoint being written (see _save).
_pending_arch: List[Dict[str, Any]] = []


def _save(obj: Any, file_path: str) -> None:
    """``torch.save`` as ``BaseModel`` calls it: atomic; training states get the RNG states and
    network checkpoints the arch options."""
    if str(file_path).endswith('.state') and isinstance(obj, dict) and _pending_rng_states:
        obj = dict(obj, rng_states=_pending_rng_states[0])
    if str(file_path).endswith('.pth') and isinstance(obj, dict) and _pending_arch:
        obj = dict(obj, **{ARCH_KEY: _pending_arch[0]})
    atomic_torch_save(obj, file_path)


class _BaseModelTorch(types.ModuleType):
    """``torch`` as seen by ``basicsr.models.base_model``: everything is torch's but ``save``
    (BaseModel writes checkpoints and training states with ``torch.save``, retries included)."""

    save = staticmethod(_save)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _wrap_save_training_state(original):
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        # Every rank contributes its RNG state (a collective); rank 0 then writes the file
        # (``original`` is master_only).
        _pending_rng_states[:] = [resume.gather_rng_states()]
        try:
            original(self, epoch, current_iter)
        finally:
            _pending_rng_states.clear()
    return save_training_state


def _wrap_save_network(original):
    def save_network(self, net, net_label: str, current_iter: int, param_key='params') -> None:
        # BasicSR builds the dict and calls torch.save (_save) inside; the nets saved together
        # (net_g and its EMA copy) are built from one network_g, so they share their options.
        options = [arch_options_of(self.get_bare_model(n)) for n in (net if isinstance(net, list) else [net])]
        shared = options[0] is not None and all(o == options[0] for o in options)
        _pending_arch[:] = [options[0]] if shared else []
        try:
            original(self, net, net_label, current_iter, param_key)
        finally:
            _pending_arch.clear()
    return save_network


def _load_network(self, net: torch.nn.Module, load_path: str, strict: bool = True,
                  param_key: Optional[str] = 'params') -> None:
    net = self.get_bare_model(net)
    loaded = load_weights(net, load_path, strict, param_key)
    get_root_logger().info(f'Loaded {type(net).__name__} from {loaded} [{param_key}].')


def _wrap_load_resume_state(original):
    def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        resume_state = original(opt)
        sample_keys.set_run_seed(opt.get('manual_seed'))  # parse_options has set it (drawn when absent)
        resume.remember_resume_point(opt, resume_state)  # a resumed run takes up the saved run's seed
        return resume_state
    return load_resume_state


def _wrap_sampler_iter(original):
    def sampler_iter(self):
        keys = sample_keys.keys_for_epoch(list(original(self)), self.epoch, self.rank, self.num_replicas)
        return iter(resume.continue_epoch(keys, self.epoch))
    return sampler_iter


def install() -> None:
    """Installs the features above once per process (idempotent); after ``compat.apply()``."""
    global _INSTALLED
    if _INSTALLED:
        return
    base_model.torch = _BaseModelTorch('torch')
    base_model.BaseModel.load_network = _load_network
    base_model.BaseModel.save_network = _wrap_save_network(base_model.BaseModel.save_network)
    base_model.BaseModel.save_training_state = _wrap_save_training_state(base_model.BaseModel.save_training_state)
    basicsr_train.load_resume_state = _wrap_load_resume_state(basicsr_train.load_resume_state)
    EnlargedSampler.__iter__ = _wrap_sampler_iter(EnlargedSampler.__iter__)
    _INSTALLED = True
