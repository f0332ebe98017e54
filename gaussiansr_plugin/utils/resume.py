"""Exact resume (ours): RNG states in every training state, and continuing the saved epoch.

BasicSR's training state holds optimizers and schedulers only, and the resumed run replays the
saved epoch from its first batch after re-creating the data iterators (which draws from the
RNGs): it would train on other samples than the killed run. Here each training state also
holds the torch / CUDA / numpy / random states of every rank, and the resumed run skips the
batches the saved epoch already trained on, then restores the RNG states right before its first
sample is drawn. Train samples draw their crops and scales from a generator of their own,
seeded from (run seed, epoch, position) (``utils/sample_keys.py``; the run seed is saved with
the RNG states), so the resumed run repeats the killed run's iterations exactly, with or without
data-loading workers.

``gaussiansr_plugin/features.py`` wires these functions into BasicSR's training loop.
"""
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from . import sample_keys

# Where the resumed run picks up: set by ``remember_resume_point`` when the model takes up the
# loaded training state, armed by ``epoch_set`` when the training loop sets the sampler to that
# epoch, consumed by ``continue_epoch`` when the train sampler then starts that epoch.
_resume_point: Dict[str, Any] = {}


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
    if sample_keys.run_seed() is not None:
        state['sample_keys_seed'] = sample_keys.run_seed()
    return state


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def restore_rng_states(state: Dict[str, Any]) -> None:
    """Sets this process's RNGs to a ``capture_rng_states`` result (as saved and loaded)."""
    torch.set_rng_state(state['torch'].cpu())
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state['random']
    random.setstate((version, tuple(internal), gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def gather_rng_states() -> List[Dict[str, Any]]:
    """RNG states of every rank, on every rank (one entry per rank; a collective when distributed)."""
    import torch.distributed as dist
    state = capture_rng_states()
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def remember_resume_point(opt: Dict[str, Any], resume_state: Optional[Dict[str, Any]]) -> None:
    """Notes where the loaded training state stopped, for ``continue_epoch``, and takes up the
    saved run's seed for per-sample randomness (which differs from ``manual_seed`` when that was
    drawn at random, or per rank).

    Args:
        opt (dict): The run's options (after ``parse_options``: ``dist``, ``num_gpu``, ``rank``).
        resume_state (dict | None): The loaded training state; None when not resuming.
    """
    _resume_point.clear()
    if resume_state is None:
        return
    train_opt = opt['datasets']['train']
    # Samples per iteration in this process, as build_dataloader computes the batch size.
    batch = train_opt['batch_size_per_gpu'] * (1 if opt['dist'] or not opt['num_gpu'] else opt['num_gpu'])
    rng_states = resume_state.get('rng_states')
    _resume_point.update(epoch=resume_state['epoch'], iter=resume_state['iter'], batch=batch,
                         rng_states=rng_states, rank=opt['rank'])
    own = rng_states[opt['rank'] % len(rng_states)] if rng_states else {}
    if 'sample_keys_seed' in own:
        sample_keys.set_run_seed(own['sample_keys_seed'])


def epoch_set(epoch: int) -> None:
    """Arms the resume point when the train sampler is set to its epoch (``set_epoch``).

    BasicSR's prefetchers create a loader iterator when built, before the loop's first
    ``set_epoch`` and ``reset()``, and discard it. With data workers (or CUDA prefetching) that
    iterator iterates the sampler at once, at its default epoch 0: a resume point in epoch 0 taken
    there would be lost, and the loop would replay epoch 0 from its start. The loop sets the epoch
    before every iterator it trains on, so only an iteration after ``set_epoch`` continues the epoch.
    """
    if _resume_point and epoch == _resume_point['epoch']:
        _resume_point['armed'] = True


def continue_epoch(indices: List[Any], epoch: int) -> List[Any]:
    """The train sampler's ``indices`` for ``epoch``, less the batches the saved run trained on.

    Once, for the epoch of the resume point, after ``epoch_set`` for it: drops the samples of the
    iterations done in that epoch and restores this rank's saved RNG states (the caller's next step
    is drawing samples). Any other epoch's indices are returned unchanged.
    """
    if not _resume_point.get('armed') or epoch != _resume_point['epoch']:
        return indices
    point = dict(_resume_point)
    _resume_point.clear()
    num_samples = len(indices)
    batches_per_epoch = num_samples // point['batch']  # the loader drops the last partial batch
    done = point['iter'] - point['epoch'] * batches_per_epoch
    if 0 <= done <= batches_per_epoch:
        indices = indices[done * point['batch']:]
    if point['rng_states']:
        restore_rng_states(point['rng_states'][point['rank'] % len(point['rng_states'])])
    return indices
