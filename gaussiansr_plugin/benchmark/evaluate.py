"""The quality loop of the benchmark: PSNR/SSIM of every method on every set at every scale.

Outputs are evaluated as float, clamped to [0, 1], with BasicSR's ``calculate_psnr_pt`` /
``calculate_ssim_pt`` under the protocol of ``gaussiansr_plugin.utils.metrics`` (the same
options validation uses). Fixed-scale methods run only at their own scale.
"""
from os import path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from gaussiansr_plugin.benchmark.figure import FigureCapture
from gaussiansr_plugin.benchmark.methods import Method
from gaussiansr_plugin.benchmark.sets import EvalSet, make_dataset
from gaussiansr_plugin.utils.image_io import scale_name
from gaussiansr_plugin.utils.metrics import PSNR_SSIM, metric_options, metric_values


def evaluate(methods: Sequence[Method], sets: Sequence[EvalSet], scales: Sequence[float], device: torch.device,
             max_images: Optional[int], figure: Optional[FigureCapture]) -> Tuple[List[dict], List[dict]]:
    """PSNR/SSIM of every method on every set at every scale it supports; returns
    (aggregate rows, per-image rows) and fills ``figure``."""
    summary, per_image = [], []
    for eval_set in sets:
        for scale in scales:
            here = [m for m in methods if m.supports(scale)]
            dataset, source = make_dataset(eval_set, scale)
            metric_opts = metric_options(PSNR_SSIM, dataset)
            count = len(dataset) if max_images is None else min(max_images, len(dataset))
            sums = {m.name: {'psnr': 0.0, 'ssim': 0.0} for m in here}
            for index in range(count):
                sample = dataset[index]
                image = osp.splitext(osp.basename(sample['gt_path']))[0]
                lq, gt = sample['lq'][None].to(device), sample['gt'][None].to(device)
                keep = figure is not None and figure.wants(eval_set.name, scale, image)
                kept: Dict[str, torch.Tensor] = {}
                for method in here:
                    sr = method.upscale(lq, gt.shape[-2:]).clamp(0, 1)
                    values = dict(zip(metric_opts, metric_values(sr, gt, metric_opts)))
                    per_image.append(dict(method=method.name, set=eval_set.name, scale=scale_name(scale), image=image,
                                          psnr=values['psnr'], ssim=values['ssim']))
                    for k, v in values.items():
                        sums[method.name][k] += v
                    if keep:
                        kept[method.name] = sr[0].cpu()
                if keep:
                    figure.keep(image, gt[0].cpu(), kept, {r['method']: r['psnr'] for r in per_image[-len(here):]},
                                dataset.opt['test_y_channel'], dataset.shave)
            line = []
            for method in here:
                row = dict(method=method.name, set=eval_set.name, scale=scale_name(scale), protocol=eval_set.protocol(),
                           shave=dataset.shave, lr_source=source, images=count,
                           psnr=sums[method.name]['psnr'] / count, ssim=sums[method.name]['ssim'] / count)
                summary.append(row)
                line.append(f'{method.name} {row["psnr"]:.2f}/{row["ssim"]:.4f}')
            print(f'{eval_set.name} x{scale_name(scale)} ({count} images, LR {source}): ' + ' | '.join(line),
                  flush=True)
    return summary, per_image
