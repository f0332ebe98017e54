"""Fixes of BasicSR 1.4.2 on today's stack (torch, torchvision, CPU-only machines), each with
its reason: delete one when BasicSR fixes the problem upstream.

Only fixes live here; our own features (atomic checkpoints, weights-only loading, exact resume)
are in ``gaussiansr_plugin/features.py``. ``apply()`` must run before anything imports
``basicsr`` (the torchvision alias); ``gaussiansr_plugin/__init__.py`` calls it first, so every
process that unpickles one of our classes (spawned data workers, torchrun ranks) gets the fixes.
"""
import os
import sys
import types
from os import path as osp
from typing import Any, Dict, Optional

import torch

_APPLIED = False


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
    and ignores ``dist_params.backend`` (always nccl). The slurm path has the same device bug.

    ``parse_options`` passes ``dist_params`` only with ``--launcher slurm``, so the ``basicsr``
    command calls ``init_dist(launcher, **dist_params)`` itself before BasicSR's pipeline starts;
    the second call, from ``parse_options``, finds the process group initialized and returns.
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')  # as BasicSR: CUDA does not survive fork
    if dist.is_available() and dist.is_initialized():
        return
    backend = choose_dist_backend(backend)
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
    store = _attempt_store() if launcher == 'pytorch' else None
    if store is None:
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, store=store, rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))


def _attempt_store() -> Optional[Any]:
    """torchrun's agent lends the ranks its TCPStore (``TORCHELASTIC_USE_AGENT_STORE``) and keeps
    it across the group restarts of ``--max-restarts``, while ``init_process_group`` names its keys
    by group only: a restarted rank can read the address a dead rank of the previous attempt left
    there, and gloo fails (``connectFullMesh failed ... Connection refused``) or the group hangs
    (a two-rank CPU job with one rank killed: 5 of 8 restarts failed or hung, 0 of 8 with this).
    Here each attempt gets keys of its own, under ``TORCHELASTIC_RESTART_COUNT``. That count is
    one agent's: on several nodes the agents count their restarts each and can disagree, so
    multi-node jobs keep torch's store (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` for torchrun
    gives them a new store per attempt)."""
    env = os.environ
    if env.get('TORCHELASTIC_USE_AGENT_STORE') != 'True' or env.get('GROUP_WORLD_SIZE') != '1':
        return None
    import torch.distributed as dist
    from torch.distributed.constants import default_pg_timeout
    store = dist.TCPStore(env['MASTER_ADDR'], int(env['MASTER_PORT']), int(env['WORLD_SIZE']), is_master=False,
                          timeout=default_pg_timeout)
    return dist.PrefixStore(f'attempt_{env["TORCHELASTIC_RESTART_COUNT"]}', store)


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


def _load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``basicsr.train.load_resume_state`` looks for ``--auto_resume`` states in the relative
    ``experiments/`` (it fails unless the working directory is the run's root) and maps the state
    onto ``torch.cuda.current_device()`` (fails on the CPU). Here: under ``opt['root_path']``,
    loaded to the CPU (``load_state_dict`` moves optimizer states to their parameters' device).
    Without a state found, ``path.resume_state`` is used as given."""
    from basicsr.utils import check_resume, scandir
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
    return resume_state


def apply() -> None:
    """Installs every fix once per process (idempotent), before anything imports ``basicsr``."""
    global _APPLIED
    if _APPLIED:
        return
    _alias_functional_tensor()
    from basicsr import train
    from basicsr.models import base_model
    from basicsr.utils import dist_util, options
    dist_util.init_dist = options.init_dist = _init_dist
    base_model.BaseModel.model_to_device = _model_to_device
    train.load_resume_state = _load_resume_state
    _APPLIED = True
