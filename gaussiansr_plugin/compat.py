"""Every patch of BasicSR 1.4.2 behaviour lives here, each with the reason it exists.

Delete a patch when BasicSR fixes the corresponding problem upstream. This module must be
imported before anything from ``basicsr``; ``gaussiansr_plugin/__init__.py`` does that first,
so every process that unpickles one of our classes (spawned data workers, torchrun ranks)
gets the patches too.
"""
import os
import random
import sys
import types
from os import path as osp
from typing import Any, Dict, List, Optional

import numpy as np
import torch

_APPLIED = False
# dist_params.backend of the option file being run (set by the CLI); None: nccl with CUDA, else gloo.
REQUESTED_DIST_BACKEND: Optional[str] = None


def _alias_functional_tensor() -> None:
    """basicsr/data/degradations.py imports ``torchvision.transforms.functional_tensor``,
    which torchvision removed (0.17+); without the alias ``import basicsr`` fails."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        from torchvision.transforms import _functional_tensor as private_module
    except ImportError:  # a torchvision without the private module: expose what basicsr uses
        from torchvision.transforms import functional as private_module
    alias = types.ModuleType(name)
    alias.__dict__.update({k: v for k, v in vars(private_module).items() if not k.startswith('__')})
    sys.modules[name] = alias


def atomic_torch_save(obj: Any, file_path: str) -> None:
    """``torch.save`` through a temporary name and a rename: a kill mid-save leaves no truncated
    checkpoint under the final name for resume or test to pick up."""
    import io
    from .utils.file_io import atomic_write
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(buffer.getvalue(), file_path)


def choose_dist_backend(requested: Optional[str]) -> str:
    """nccl on CUDA, gloo on the CPU, unless the option file asks for one (checked to be usable)."""
    if requested is None:
        return 'nccl' if torch.cuda.is_available() else 'gloo'
    if requested == 'nccl' and not torch.cuda.is_available():
        raise SystemExit('Option error: dist_params.backend: nccl needs CUDA GPUs and none is visible; '
                         'remove the key (gloo is chosen on the CPU) or set it to gloo.')
    return requested


def _init_dist(launcher: str, backend: Optional[str] = None, port: Optional[int] = None, **kwargs) -> None:
    """BasicSR's ``_init_dist_pytorch`` does ``torch.cuda.set_device(rank % device_count())``
    (ZeroDivisionError on the CPU), uses the global RANK as a device index (wrong on multi-node)
    and ignores ``dist_params.backend`` (always nccl). The slurm path has the same device bug."""
    import torch.distributed as dist
    import torch.multiprocessing as mp
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')  # as BasicSR: CUDA does not survive fork
    backend = choose_dist_backend(REQUESTED_DIST_BACKEND or backend)
    if launcher == 'slurm':
        from basicsr.utils.dist_util import _init_dist_slurm
        if torch.cuda.is_available():
            return _init_dist_slurm(backend, port)
        _set_slurm_env(port)
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    if torch.cuda.is_available():
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend)


def _set_slurm_env(port: Optional[int]) -> None:
    """The environment torch.distributed reads, from slurm's, for CPU-only slurm jobs."""
    import subprocess
    proc_id = int(os.environ['SLURM_PROCID'])
    node_list = os.environ['SLURM_NODELIST']
    os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_PORT', str(port or 29500))
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def _model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
    """``BaseModel.model_to_device`` passes CUDA ``device_ids`` to DistributedDataParallel, which
    fails for CPU (gloo) training; on the CPU DDP must get ``device_ids=None``."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel
    net = net.to(self.device)
    if self.opt['dist']:
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(
            net, device_ids=device_ids, find_unused_parameters=self.opt.get('find_unused_parameters', False))
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


def capture_rng_states() -> Dict[str, Any]:
    """This process's torch / CUDA / numpy / random states, as plain types (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        'random': _plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def restore_rng_states(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state['torch'].cpu())
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state['random']
    random.setstate((version, tuple(internal), gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def _gather_rng_states() -> List[Dict[str, Any]]:
    """RNG states of every rank, on every rank (one entry per rank)."""
    import torch.distributed as dist
    state = capture_rng_states()
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def _patch_training_state() -> None:
    """Exact resume: BasicSR's training state holds optimizers and schedulers only, is written
    in place (a kill mid-save leaves a truncated ``.state`` that resume picks as the newest),
    is looked up in the relative ``experiments/`` (``--auto_resume`` fails unless cwd == root)
    on ``torch.cuda.current_device()`` (fails on the CPU), and the resumed run replays its
    epoch from the start. Here: RNG states of every rank are added, all checkpoints are written
    atomically, resume looks under the run's root and continues the epoch where it stopped."""
    from basicsr import train as basicsr_train
    from basicsr.models import base_model
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.utils import check_resume, scandir
    pending_rng: List[Any] = []  # RNG states gathered for the training state being saved

    def save(obj: Any, file_path: str) -> None:
        if str(file_path).endswith('.state') and isinstance(obj, dict) and pending_rng:
            obj = dict(obj, rng_states=pending_rng[0])
        atomic_torch_save(obj, file_path)

    class _AtomicSaveTorch(types.ModuleType):
        """base_model's ``torch``, whose ``save`` is atomic (BaseModel calls ``torch.save``)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

    proxy = _AtomicSaveTorch('torch')
    proxy.save = save
    base_model.torch = proxy

    original_save_state = base_model.BaseModel.save_training_state  # master_only-wrapped

    def save_training_state(self, epoch: int, current_iter: int) -> None:
        # Every rank contributes its RNG state (a collective), then rank 0 writes the file.
        pending_rng[:] = [_gather_rng_states()]
        try:
            original_save_state(self, epoch, current_iter)
        finally:
            pending_rng.clear()

    # Where the resumed run picks up; consumed by the train sampler when its epoch starts.
    resume_point: Dict[str, Any] = {}

    def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        resume_state_path = opt['path'].get('resume_state')
        if opt['auto_resume']:
            state_dir = osp.join(opt['root_path'], 'experiments', opt['name'], 'training_states')
            if osp.isdir(state_dir):
                iters = [int(name[:-6]) for name in scandir(state_dir, suffix='.state') if name[:-6].isdigit()]
                if iters:
                    resume_state_path = osp.join(state_dir, f'{max(iters)}.state')
                    opt['path']['resume_state'] = resume_state_path
        if not resume_state_path:
            return None
        resume_state = torch.load(resume_state_path, map_location='cpu', weights_only=False)
        check_resume(opt, resume_state['iter'])
        train_opt = opt['datasets']['train']
        per_process_batch = train_opt['batch_size_per_gpu'] * (1 if opt['dist'] or not opt['num_gpu'] else
                                                               opt['num_gpu'])  # as build_dataloader
        resume_point.update(epoch=resume_state['epoch'], iter=resume_state['iter'], batch=per_process_batch,
                            rng_states=resume_state.get('rng_states'), rank=opt['rank'])
        return resume_state

    original_sampler_iter = EnlargedSampler.__iter__

    def sampler_iter(self):
        """BasicSR restarts the saved epoch from its first batch and re-creates the data
        iterators (drawing from the RNG) before the first batch: the resumed run would see other
        samples than the killed one. Skip the batches the saved epoch already trained on and
        restore the RNG states right before the first sample is drawn: with in-process data
        loading (``num_worker_per_gpu: 0``) the resumed run then trains on exactly the batches
        the original would have. Worker processes reseed per epoch, so with workers the data
        order is exact and the per-sample random crops/scales are not."""
        indices = list(original_sampler_iter(self))
        if resume_point and self.epoch == resume_point['epoch']:
            point = dict(resume_point)
            resume_point.clear()
            batches_per_epoch = self.num_samples // point['batch']  # the loader drops the last partial batch
            done = point['iter'] - point['epoch'] * batches_per_epoch
            if 0 <= done <= batches_per_epoch:
                indices = indices[done * point['batch']:]
            if point['rng_states']:
                restore_rng_states(point['rng_states'][point['rank'] % len(point['rng_states'])])
        return iter(indices)

    base_model.BaseModel.save_training_state = save_training_state
    basicsr_train.load_resume_state = load_resume_state
    EnlargedSampler.__iter__ = sampler_iter


def load_weights(net: torch.nn.Module, load_path: str, strict: bool = True,
                 param_key: Optional[str] = 'params') -> None:
    """Loads a checkpoint into ``net`` with ``weights_only=True`` and one clear error.

    Replaces ``BaseModel.load_network``, which unpickles arbitrary objects (other people's
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


def _load_network(self, net: torch.nn.Module, load_path: str, strict: bool = True,
                  param_key: Optional[str] = 'params') -> None:
    from basicsr.utils import get_root_logger
    net = self.get_bare_model(net)
    load_weights(net, load_path, strict, param_key)
    get_root_logger().info(f'Loaded {type(net).__name__} from {load_path} [{param_key}].')


def apply() -> None:
    """Install all patches once per process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _alias_functional_tensor()
    from basicsr.models import base_model
    from basicsr.utils import dist_util, options
    dist_util.init_dist = options.init_dist = _init_dist
    base_model.BaseModel.model_to_device = _model_to_device
    base_model.BaseModel.load_network = _load_network
    _patch_training_state()
    _APPLIED = True


apply()
