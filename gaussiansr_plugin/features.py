"""Our features in BasicSR's own pipelines, all wired in by ``install()`` (and nowhere else).

``compat.py`` fixes BasicSR 1.4.2 on today's stack; this module changes what BasicSR does, by
choice. ``gaussiansr_plugin/__init__.py`` calls ``install()`` right after ``compat.apply()``, so
every process that imports the plugin (torchrun ranks, spawned data workers) gets them:

- atomic checkpoints: ``BaseModel.save_network`` and ``save_training_state`` are ours: they build
  BasicSR's checkpoint and training state, with the fields below, and write them through a
  temporary name and a rename (``utils/checkpoint.py``);
- weights-only loading: ``BaseModel.load_network`` is ``utils.checkpoint.load_weights``, with
  one clear error for a file that does not fit, and the name of shipped weights accepted;
- arch options in checkpoints: every network checkpoint ``save_network`` writes holds, beside
  ``params`` / ``params_ema``, the arch's behaviour-defining options (``ARCH_KEY``), which
  ``load_weights`` compares with the network's (``rgb_skip`` and the like change outputs, not
  parameter shapes);
- exact resume: every training state holds the RNG states of every rank (``rng_states``), and
  ``BaseModel.resume_training`` has the resumed run continue the saved epoch where it stopped,
  in the first sampler iteration after the loop's ``set_epoch`` for it (``utils/resume.py``);
- per-sample randomness: the train sampler yields ``SampleKey``s, ints (the indices it yielded
  before) that carry a seed, a function of (run seed, epoch, position), so our datasets' data
  workers draw the same crops and scales in every run (``utils/sample_keys.py``); BasicSR's own
  datasets index with them as with the plain indices and draw as before. The run seed is
  ``manual_seed``, set when ``train_pipeline`` builds its data loaders (``resume_training``
  takes up the saved run's instead).
"""
import os
from typing import Any, Dict, List, Optional, Union

import torch

from basicsr import train as basicsr_train
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.models import base_model
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from .utils import resume, sample_keys
from .utils.checkpoint import ARCH_KEY, arch_options_of, atomic_torch_save, load_weights

_INSTALLED = False

# BasicSR's save_network / save_training_state retry a failed torch.save 3 times (against a
# half-written file), then log and carry on without the file. Ours write atomically
# (atomic_torch_save): a failed or killed write leaves no partial file under the final name, so
# they have no retry loop; a write error stops the run, and its last complete state resumes it.


@master_only
def _save_network(self, net: Union[torch.nn.Module, List[torch.nn.Module]], net_label: str, current_iter: int,
                  param_key: Union[str, List[str]] = 'params') -> None:
    """``BaseModel.save_network``: BasicSR's checkpoint (``{param_key: state dict on the CPU}``
    per network, in ``path.models``, ``latest`` for iteration -1), written atomically, with the
    arch options (``ARCH_KEY``) of the networks saved together when they share them (net_g and
    its EMA copy are built from one ``network_g``)."""
    nets = [self.get_bare_model(n) for n in (net if isinstance(net, list) else [net])]
    keys = param_key if isinstance(param_key, list) else [param_key]
    assert len(nets) == len(keys), 'The lengths of net and param_key should be the same.'
    checkpoint = {}
    for net_, key in zip(nets, keys):
        state = net_.state_dict()  # of the bare network: no 'module.' prefixes
        for name, tensor in state.items():
            state[name] = tensor.cpu()  # in place: the state dict keeps its metadata, as in BasicSR's
        checkpoint[key] = state
    options = [arch_options_of(n) for n in nets]
    if options[0] is not None and all(o == options[0] for o in options):
        checkpoint[ARCH_KEY] = options[0]
    label = 'latest' if current_iter == -1 else current_iter
    atomic_torch_save(checkpoint, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))


def _save_training_state(self, epoch: int, current_iter: int) -> None:
    """``BaseModel.save_training_state``: BasicSR's state (epoch, iter, optimizers, schedulers;
    none for iteration -1) plus the RNG states of every rank (``rng_states``), written atomically.
    Called on every rank: each contributes its RNG states (a collective), rank 0 writes."""
    if current_iter == -1:
        return
    _write_training_state(self, epoch, current_iter, resume.gather_rng_states())


@master_only
def _write_training_state(self, epoch: int, current_iter: int, rng_states: List[Dict[str, Any]]) -> None:
    state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers], 'rng_states': rng_states}
    atomic_torch_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def _load_network(self, net: torch.nn.Module, load_path: str, strict: bool = True,
                  param_key: Optional[str] = 'params') -> None:
    net = self.get_bare_model(net)
    loaded = load_weights(net, load_path, strict, param_key)
    get_root_logger().info(f'Loaded {type(net).__name__} from {loaded} [{param_key}].')


def _wrap_create_train_val_dataloader(original):
    def create_train_val_dataloader(opt: Dict[str, Any], logger):
        # Every training run, fresh or resumed, before its train sampler yields: the sample keys
        # derive from the run's seed (parse_options has set manual_seed, drawn when absent), and
        # there is no resume point unless resume_training sets one.
        sample_keys.set_run_seed(opt['manual_seed'])
        resume.remember_resume_point(opt, None)
        return original(opt, logger)
    return create_train_val_dataloader


def _wrap_resume_training(original):
    def resume_training(self, resume_state: Dict[str, Any]) -> None:
        original(self, resume_state)  # optimizers and schedulers
        resume.remember_resume_point(self.opt, resume_state)  # and the saved run's seed
    return resume_training


def _wrap_sampler_iter(original):
    def sampler_iter(self):
        keys = sample_keys.keys_for_epoch(list(original(self)), self.epoch, self.rank, self.num_replicas)
        return iter(resume.continue_epoch(keys, self.epoch))
    return sampler_iter


def _wrap_sampler_set_epoch(original):
    def set_epoch(self, epoch: int) -> None:
        original(self, epoch)
        resume.epoch_set(epoch)  # the loop's iterator, not the prefetcher's first, continues the epoch
    return set_epoch


def install() -> None:
    """Installs the features above once per process (idempotent); after ``compat.apply()``."""
    global _INSTALLED
    if _INSTALLED:
        return
    base_model.BaseModel.load_network = _load_network
    base_model.BaseModel.save_network = _save_network
    base_model.BaseModel.save_training_state = _save_training_state
    base_model.BaseModel.resume_training = _wrap_resume_training(base_model.BaseModel.resume_training)
    basicsr_train.create_train_val_dataloader = _wrap_create_train_val_dataloader(
        basicsr_train.create_train_val_dataloader)
    EnlargedSampler.__iter__ = _wrap_sampler_iter(EnlargedSampler.__iter__)
    EnlargedSampler.set_epoch = _wrap_sampler_set_epoch(EnlargedSampler.set_epoch)
    _INSTALLED = True
