"""Per-sample randomness (ours): each training sample's random draws are a function of
(run seed, epoch, position of the sample in the epoch), whichever process draws it.

Torch reseeds data-loading workers every epoch, so random crops and scales drawn from a
worker's global RNG cannot be replayed by a resumed run. Instead the train sampler yields a
``SampleKey`` per sample, made in the main process (so persistent workers get it too), and the
dataset draws from a ``torch.Generator`` seeded with the key's seed: the same sample has the same
crop, scale, flips and queries with 0 or N workers, before and after a resume.

A ``SampleKey`` is an ``int`` (the dataset index) that carries the seed as an attribute: the
sampler yields keys for every dataset, and a dataset that does not look for the seed (BasicSR's
``PairedImageDataset`` and every other host dataset) indexes, formats and pickles it as the
plain index, so it trains exactly as without the plugin.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch

# The run's seed for per-sample randomness (set when the training pipeline starts); while
# None, the sampler yields plain indices and samples draw from torch's global RNG.
_run_seed: List[Optional[int]] = [None]


class SampleKey(int):
    """What the train sampler yields instead of a plain index: the index itself, carrying
    ``seed``, which seeds this sample's generator (a function of run seed, epoch, position).

    To anything but ``seed`` and ``generator`` it is the ``int`` index (arithmetic, ``==``,
    ``hash``, ``str``/``repr``, list and tensor indexing all give the plain index's results).
    """

    seed: int

    def __new__(cls, index: int, seed: int) -> 'SampleKey':
        key = super().__new__(cls, index)
        key.seed = int(seed)
        return key

    def __reduce__(self):
        # Data workers receive their indices pickled; the default reduction of an int subclass
        # calls SampleKey(index) and fails for want of the seed.
        return SampleKey, (int(self), self.seed)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def set_run_seed(seed: Optional[int]) -> None:
    """Sets (or with None, clears) the run seed that per-sample seeds derive from."""
    _run_seed[0] = None if seed is None else int(seed)


def run_seed() -> Optional[int]:
    return _run_seed[0]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection of uint64 that spreads every input bit over the output."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """Seeds of the samples at ``positions`` of ``epoch``: a hash of (seed, epoch, position),
    computed for a whole epoch at once (an epoch can hold millions of samples).

    32-bit: torch's CPU generator (mt19937) uses only the low 32 bits of a seed.
    """
    with np.errstate(over='ignore'):  # uint64 arithmetic wraps around, as the hash wants
        base = _splitmix64(_splitmix64(np.array([seed % 2**64], dtype=np.uint64)) ^ np.uint64(epoch))
        return _splitmix64(base ^ positions.astype(np.uint64)) >> np.uint64(32)


def keys_for_epoch(indices: Sequence[int], epoch: int, rank: int,
                   num_replicas: int) -> List[int]:
    """The sampler's ``indices`` for one rank and epoch, as ``SampleKey``s (plain when no run seed).

    The i-th index of a rank is sample ``i * num_replicas + rank`` of the epoch (BasicSR's
    ``EnlargedSampler`` deals the shuffled epoch out to the ranks in turn), so every sample of
    an epoch, on every rank, gets its own seed; a repeated image (``dataset_enlarge_ratio``) gets
    a new crop each time.
    """
    seed = _run_seed[0]
    if seed is None:
        return list(indices)
    seeds = sample_seeds(seed, epoch, np.arange(len(indices)) * num_replicas + rank)
    return [SampleKey(index, sample) for index, sample in zip(indices, seeds.tolist())]
