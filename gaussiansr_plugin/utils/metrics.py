"""The evaluation protocol: which border is shaved, which channel is measured, with which options.

One place for what validation (``ArbitraryScaleSRModel``) and the benchmark harness
(``gaussiansr_plugin.benchmark``) both apply (REFERENCE section 5, LIIF's protocol): outputs are
evaluated as float with BasicSR's ``calculate_*_pt`` metrics; a test set's ``shave`` (border
excluded) defaults to ceil(scale); benchmark sets are measured on the Y channel with that shave,
DIV2K sets on RGB with ceil(scale) + 6.
"""
import math
from typing import Any, Dict, List, Mapping

import torch

from basicsr.metrics import calculate_metric

DIV2K_EXTRA_SHAVE = 6
# The metrics the harness reports, as BasicSR metric options (float tensors, not 8-bit images).
PSNR_SSIM = {metric: {'type': f'calculate_{metric}_pt'} for metric in ('psnr', 'ssim')}


def default_shave(scale: float) -> int:
    """Border (pixels) excluded from metrics at ``scale`` when a test set does not set one."""
    return math.ceil(scale)


def protocol_options(scale: float, div2k: bool) -> Dict[str, Any]:
    """The test-set keys of the protocol: Y channel and shave ceil(s) for benchmark sets, RGB and
    shave ceil(s) + 6 for DIV2K sets."""
    return dict(test_y_channel=not div2k, shave=default_shave(scale) + (DIV2K_EXTRA_SHAVE if div2k else 0))


def metric_options(metrics: Mapping[str, Mapping[str, Any]], dataset: Any) -> Dict[str, Dict[str, Any]]:
    """``metrics`` (name -> BasicSR metric options) as evaluated on ``dataset``: its ``shave`` as
    ``crop_border`` and, when the dataset sets ``test_y_channel``, that channel choice."""
    shave = dataset.shave if hasattr(dataset, 'shave') else 0
    opts = {}
    for name, metric_opt in metrics.items():
        metric_opt = dict(metric_opt, crop_border=shave)
        if 'test_y_channel' in dataset.opt:
            metric_opt['test_y_channel'] = dataset.opt['test_y_channel']
        opts[name] = metric_opt
    return opts


def metric_values(img: torch.Tensor, gt: torch.Tensor, metric_opts: Mapping[str, Mapping[str, Any]]) -> List[float]:
    """Each metric of ``metric_opts`` for float images ``img`` and ``gt`` (B, 3, H, W), averaged
    over the batch."""
    return [float(calculate_metric({'img': img, 'img2': gt}, opt).mean()) for opt in metric_opts.values()]
