"""What serving in bf16 changes: PSNR and 8-bit pixels of every image, bf16 against fp32, in one run.

    python scripts/measure_bf16.py --model GaussianSR=gaussiansr --model LIIF=liif \
        --sets Set5=../shared/data/benchmark/Set5 Set14=../shared/data/benchmark/Set14 B100=../shared/data/benchmark/B100 \
        --scales 2 3 4 3.6 [--max-images N] [--threads 2] [--out results/bf16]

Every model super-resolves every image of every set at every scale twice, at ``fp32`` and at
``bf16`` (``Method.upscale``, the benchmark's call: the precision policy of
``utils/precision.py``), under the benchmark's protocol (``utils/metrics.py``: Y channel, shave
ceil(s), outputs clamped to [0, 1]). Printed per model, set and scale: the mean PSNR at fp32,
the mean and the largest |PSNR change| over the images and the mean signed change, and of the
8-bit outputs (round(255 x)) the share of values that differ and the largest difference in
levels. ``OUT/bf16_per_image.csv`` has every image's row, ``OUT/bf16.md`` the table. Latency is
``basicsr benchmark --precision fp32 bf16`` (one run, both precisions).

    python scripts/measure_bf16.py --merge RUN1/bf16_per_image.csv RUN2/bf16_per_image.csv ...

prints one table of several runs (e.g. scales or models measured in parallel processes): a row
per model and set, a column per scale, each cell mean |change| / max |change| (mean change) in dB.
"""
import argparse
import csv
import io
import os
from os import path as osp
from typing import Dict, List

import torch

from gaussiansr_plugin.benchmark.methods import Method, load_method, parse_model_arg, quiet_basicsr_logger
from gaussiansr_plugin.benchmark.sets import make_dataset, parse_set_arg
from gaussiansr_plugin.utils.file_io import atomic_write
from gaussiansr_plugin.utils.image_io import scale_name
from gaussiansr_plugin.utils.metrics import PSNR_SSIM, metric_options, metric_values

PSNR_ONLY = {'psnr': PSNR_SSIM['psnr']}


def compare_image(method: Method, lq: torch.Tensor, gt: torch.Tensor, metric_opts: Dict) -> Dict[str, float]:
    """PSNR of ``method``'s output at fp32 and bf16, and how their 8-bit versions differ."""
    outputs = {p: method.upscale(lq, gt.shape[-2:], p).float().clamp(0, 1) for p in ('fp32', 'bf16')}
    psnr = {p: metric_values(sr, gt, metric_opts)[0] for p, sr in outputs.items()}
    levels = [(sr * 255).round() for sr in outputs.values()]
    diff = (levels[0] - levels[1]).abs()
    return dict(psnr_fp32=psnr['fp32'], psnr_bf16=psnr['bf16'], change=psnr['bf16'] - psnr['fp32'],
                changed_8bit=(diff > 0).double().mean().item(), max_levels=int(diff.max().item()))


def summarize(rows: List[Dict]) -> Dict[str, float]:
    changes = [abs(r['change']) for r in rows]
    return dict(images=len(rows), psnr_fp32=sum(r['psnr_fp32'] for r in rows) / len(rows),
                mean_abs_change=sum(changes) / len(rows), max_abs_change=max(changes),
                mean_change=sum(r['change'] for r in rows) / len(rows),
                changed_8bit=sum(r['changed_8bit'] for r in rows) / len(rows),
                max_levels=max(r['max_levels'] for r in rows))


def merged_table(csv_paths: List[str]) -> str:
    """The compact table of every per-image row in ``csv_paths`` (see the module docstring)."""
    groups: Dict[tuple, List[Dict]] = {}
    for path in csv_paths:
        with open(path, newline='') as f:
            for row in csv.DictReader(f):
                row.update({k: float(row[k]) for k in ('psnr_fp32', 'psnr_bf16', 'change', 'changed_8bit')},
                           max_levels=int(row['max_levels']))
                groups.setdefault((row['method'], row['set'], row['scale']), []).append(row)
    scales = sorted({key[2] for key in groups}, key=float)
    lines = ['| model | set | images | ' + ' | '.join(f'x{s}' for s in scales) + ' | 8-bit values changed (max levels) |',
             '|---|---|---|' + '---|' * (len(scales) + 1)]
    for method, set_name in dict.fromkeys(key[:2] for key in groups):
        cells, summaries = [], []
        for scale in scales:
            rows = groups.get((method, set_name, scale))
            if not rows:
                cells.append('')
                continue
            summary = summarize(rows)
            summaries.append(summary)
            cells.append(f'{summary["mean_abs_change"]:.4f} / {summary["max_abs_change"]:.4f} ({summary["mean_change"]:+.4f})')
        changed = sum(x['changed_8bit'] for x in summaries) / len(summaries)
        lines.append(f'| {method} | {set_name} | {summaries[0]["images"]} | ' + ' | '.join(cells) +
                     f' | {100 * changed:.1f}% ({max(x["max_levels"] for x in summaries)}) |')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--merge', nargs='+', metavar='CSV', help='print the table of earlier runs and stop')
    parser.add_argument('--model', action='append', metavar='NAME=MODEL')
    parser.add_argument('--sets', nargs='+', metavar='NAME=DIR')
    parser.add_argument('--scales', type=float, nargs='+', default=[2, 3, 4, 3.6])
    parser.add_argument('--max-images', type=int, default=None)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--out', default='results/bf16')
    args = parser.parse_args()
    if args.merge:
        print(merged_table(args.merge))
        return
    if not args.model or not args.sets:
        parser.error('--model and --sets are required (or --merge)')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device('cpu')
    quiet_basicsr_logger()
    sets = [parse_set_arg(text, []) for text in args.sets]  # every path checked before any work
    methods = [load_method(parse_model_arg(text), device) for text in args.model]
    os.makedirs(args.out, exist_ok=True)
    per_image, table = [], []
    for eval_set in sets:
        for scale in args.scales:
            dataset, _ = make_dataset(eval_set, scale)
            metric_opts = metric_options(PSNR_ONLY, dataset)
            count = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
            rows: Dict[str, List[Dict]] = {m.name: [] for m in methods}
            for index in range(count):
                sample = dataset[index]
                lq, gt = sample['lq'][None].to(device), sample['gt'][None].to(device)
                image = osp.splitext(osp.basename(sample['gt_path']))[0]
                for method in methods:
                    row = dict(method=method.name, set=eval_set.name, scale=scale_name(scale), image=image,
                               **compare_image(method, lq, gt, metric_opts))
                    rows[method.name].append(row)
                    per_image.append(row)
            for method in methods:
                line = dict(method=method.name, set=eval_set.name, scale=scale_name(scale), **summarize(rows[method.name]))
                table.append(line)
                print(f'{method.name} {eval_set.name} x{line["scale"]} ({count}): fp32 {line["psnr_fp32"]:.3f} dB, '
                      f'|change| mean {line["mean_abs_change"]:.4f} max {line["max_abs_change"]:.4f} dB, '
                      f'mean {line["mean_change"]:+.4f}; 8-bit values changed {100 * line["changed_8bit"]:.2f}%, '
                      f'max {line["max_levels"]} levels', flush=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(per_image[0]))
    writer.writeheader()
    writer.writerows(per_image)
    atomic_write(buffer.getvalue().encode(), osp.join(args.out, 'bf16_per_image.csv'))
    lines = ['| method | set | scale | images | PSNR fp32 | mean \\|change\\| | max \\|change\\| | mean change | '
             '8-bit values changed | max levels |', '|---|---|---|---|---|---|---|---|---|---|']
    lines += [f'| {r["method"]} | {r["set"]} | x{r["scale"]} | {r["images"]} | {r["psnr_fp32"]:.3f} | '
              f'{r["mean_abs_change"]:.4f} | {r["max_abs_change"]:.4f} | {r["mean_change"]:+.4f} | '
              f'{100 * r["changed_8bit"]:.2f}% | {r["max_levels"]} |' for r in table]
    atomic_write(('\n'.join(lines) + '\n').encode(), osp.join(args.out, 'bf16.md'))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
