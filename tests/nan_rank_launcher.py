"""``basicsr`` with one extra train dataset, for tests/test_nan_sync.py: run under torchrun, rank 1
(and only rank 1) gets a NaN ground truth in one sample, as a corrupt image on one GPU would give.

    torchrun --nproc_per_node=2 tests/nan_rank_launcher.py train -opt X.yml --launcher pytorch
"""
import os
from typing import Any, Dict

import torch

from gaussiansr_plugin.cli import main  # first: the plugin patches BasicSR before it is imported
from gaussiansr_plugin.data.arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset
from basicsr.utils.registry import DATASET_REGISTRY

# Which train sample (counted from 0, in this process) rank 1 poisons: with a batch of 2 the
# poisoned sample lands in the batch of iteration POISONED_SAMPLE // 2 + 1.
POISONED_SAMPLE = int(os.environ.get('POISONED_SAMPLE', '4'))


@DATASET_REGISTRY.register()
class NaNOnRankOneDataset(ArbitraryScalePairedDataset):
    """The plugin's dataset, except that sample number POISONED_SAMPLE on rank 1 has a NaN gt."""

    def __init__(self, opt: Dict[str, Any]) -> None:
        super().__init__(opt)
        self.drawn = 0  # samples drawn in this process (the test runs without data workers)

    def __getitem__(self, index: Any) -> Dict[str, Any]:
        sample = super().__getitem__(index)
        if self.is_train:
            if os.environ.get('RANK') == '1' and self.drawn == POISONED_SAMPLE:
                sample['gt'] = torch.full_like(sample['gt'], float('nan'))
            self.drawn += 1
        return sample


if __name__ == '__main__':
    main()
