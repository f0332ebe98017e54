"""The convergence table and figure of issue 19's 8x-budget ablation runs, from their evaluations.

    python scripts/summarize_long_ablation.py [RESULTS_DIR]      (default results/ablation12k)

``scripts/evaluate_long_ablation.sh`` evaluates each row of an iteration in its own folder
(``RESULTS_DIR/iter_ITER/ROW/``, a ``basicsr benchmark`` output) as soon as that row's run has
reached the iteration. This merges, per iteration, the rows' ``per_image.csv`` into
``iter_ITER/per_image.csv`` (Bicubic, in every row's run, once: the runs must agree on it) and
the mean PSNR / SSIM of every row into ``iter_ITER/metrics.md``, writes
the paired differences of every pair present (GaussianSR − Bicubic-64, GaussianSR − LIIF,
Bicubic-64 − LIIF, X − X-old, and the first three among the old rows) to ``iter_ITER/pairs.csv``
and ``iter_ITER/pairs.md``, then the convergence table ``convergence.md`` (printed) and figure
``convergence.png`` (an iteration whose row folders are gone but whose merged ``per_image.csv``
is kept, as in docs/ablation12k/, counts with that file; a row folder added to such an iteration
joins the rows of that file): the paired
differences on B100's first 30 images at x2 and x4 against iterations (the 12,000-iteration
evaluation covers all 100 images; the curve takes the same 30 as the earlier points) and the
kernel usage of ``kernel_usage.txt`` (``basicsr explain``).
"""
import argparse
import glob
import re
import sys
from os import path as osp
from typing import Dict, List, Tuple

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from gaussiansr_plugin.benchmark.pairs import pair_rows, read_per_image, render_pairs  # noqa: E402
from gaussiansr_plugin.benchmark.report import PAIR_COLUMNS, PER_IMAGE_COLUMNS, csv_text  # noqa: E402
from gaussiansr_plugin.utils.file_io import atomic_imwrite, atomic_write  # noqa: E402
from gaussiansr_plugin.visual.figures import figure_rgb  # noqa: E402

ROWS = ('GaussianSR', 'Bicubic-64', 'LIIF')
PAIRS = [('GaussianSR', 'Bicubic-64'), ('GaussianSR', 'LIIF'), ('Bicubic-64', 'LIIF')]
PAIRS += [(row, f'{row}-old') for row in ROWS]
PAIRS += [(f'{a}-old', f'{b}-old') for a, b in PAIRS[:3]]  # the shipped weights among themselves, on the same images
CURVE_PAIRS = PAIRS[:2]  # the issue's two questions: does G − B64 grow, does G − LIIF shrink
CURVE_SET, CURVE_IMAGES, CURVE_SCALES = 'B100', 30, ('2', '4')
KERNEL_LINE = re.compile(r'(?P<image>[^/\s]+)x2\.png: [\d,]+ LR pixels select (?P<used>\d+) of \d+ kernels; '
                         r'the (?P<cover>\d+) most selected cover 90% of them; kernel_max_prob (?P<prob>\d+\.\d+)')


def merge_rows(iter_dir: str) -> List[dict]:
    """The per-image rows of every row folder of one iteration, Bicubic once, and from the
    iteration's merged ``per_image.csv`` (when there is one) the rows of every method that no
    folder holds: docs/ablation12k keeps only that file, so a row evaluated later joins the
    iteration's committed rows without re-evaluating them.

    Raises:
        ValueError: Two sources with different Bicubic PSNR for the same image.
    """
    merged: Dict[Tuple[str, str, str, str], dict] = {}

    def add(row: dict, source: str) -> None:
        key = (row['method'], row['set'], row['scale'], row['image'])
        if key in merged and row['method'] == 'Bicubic':
            if abs(merged[key]['psnr'] - row['psnr']) > 1e-6:
                raise ValueError(f'{source}: Bicubic {key[1]} x{key[2]} {key[3]} differs from an earlier '
                                 f'row folder ({row["psnr"]} vs {merged[key]["psnr"]})')
            return
        merged[key] = row  # a non-Bicubic repeat is left to pair_rows, which names it

    for file_path in sorted(glob.glob(osp.join(iter_dir, '*', 'per_image.csv'))):
        for row in read_per_image(file_path):
            add(row, file_path)
    in_folders = {key[0] for key in merged} - {'Bicubic'}
    merged_file = osp.join(iter_dir, 'per_image.csv')
    if osp.isfile(merged_file):
        for row in read_per_image(merged_file):
            if row['method'] not in in_folders:
                add(row, merged_file)
    # Scales in numeric order: the folders (ROW-xSCALE at 12000) come in name order, x3.6 before x3.
    return sorted(merged.values(), key=lambda row: float(row['scale']))


def kernel_usage(file_path: str) -> Dict[str, Tuple[int, int, float]]:
    """image -> (kernels used, kernels covering 90%, kernel_max_prob) from a kernel_usage.txt."""
    if not osp.isfile(file_path):
        return {}
    with open(file_path) as f:
        found = [KERNEL_LINE.search(line) for line in f]
    return {m['image']: (int(m['used']), int(m['cover']), float(m['prob'])) for m in found if m}


def means_table(per_image: List[dict]) -> str:
    """Markdown: mean PSNR / SSIM over the images, a row per (set, scale), a column per method."""
    order = ['Bicubic', *ROWS, *(f'{row}-old' for row in ROWS)]
    methods = sorted(dict.fromkeys(r['method'] for r in per_image), key=lambda m: (order + [m]).index(m))
    cells: Dict[Tuple[str, str, str], List[dict]] = {}
    for row in per_image:
        cells.setdefault((row['set'], row['scale'], row['method']), []).append(row)
    lines = ['| | ' + ' | '.join(methods) + ' |', '|---|' + '---:|' * len(methods)]
    for set_name, scale in dict.fromkeys((r['set'], r['scale']) for r in per_image):
        found = [cells.get((set_name, scale, m), []) for m in methods]
        lines.append(f'| {set_name} x{scale} ({max(map(len, found))} images) | ' + ' | '.join(
            f'{np.mean([float(r["psnr"]) for r in f]):.2f} / {np.mean([float(r["ssim"]) for r in f]):.4f}'
            if f else '—' for f in found) + ' |')
    return '\n'.join(lines) + '\n\nMean PSNR (dB) / SSIM over the images (Y channel, shave ceil(s)).\n'


def summarize_iteration(iter_dir: str) -> Tuple[List[dict], List[dict]]:
    """Writes iter_dir's merged per_image.csv, metrics.md, pairs.csv and pairs.md; returns (per-image
    rows, pair rows)."""
    per_image = merge_rows(iter_dir)
    methods = set(r['method'] for r in per_image)
    pairs = [p for p in PAIRS if set(p) <= methods]
    rows = pair_rows(per_image, pairs)
    atomic_write(csv_text(per_image, PER_IMAGE_COLUMNS).encode(), osp.join(iter_dir, 'per_image.csv'))
    atomic_write(csv_text(rows, PAIR_COLUMNS).encode(), osp.join(iter_dir, 'pairs.csv'))
    atomic_write(render_pairs(pairs, rows).encode(), osp.join(iter_dir, 'pairs.md'))
    atomic_write(means_table(per_image).encode(), osp.join(iter_dir, 'metrics.md'))
    return per_image, rows


def curve_rows(per_image: List[dict]) -> List[dict]:
    """The curve's pair rows: CURVE_SET's first CURVE_IMAGES images by name (those of the benchmark's
    ``--max-images``), CURVE_SCALES."""
    names = sorted(set(r['image'] for r in per_image if r['set'] == CURVE_SET))[:CURVE_IMAGES]
    kept = [r for r in per_image if r['set'] == CURVE_SET and r['image'] in names and r['scale'] in CURVE_SCALES]
    return pair_rows(kept, [p for p in CURVE_PAIRS if set(p) <= set(r['method'] for r in kept)])


def _cell(row: dict) -> str:
    return f'{row["psnr_diff"]:+.3f} ± {row["ci95"]:.3f} ({row["a_higher"]}/{row["images"]})'


def convergence_table(points: Dict[int, Tuple[List[dict], Dict[str, Tuple[int, int, float]]]]) -> str:
    """Markdown: a row per iteration; the curve pairs at each scale, then the kernel usage."""
    images = sorted({image for _, usage in points.values() for image in usage})
    head = [f'{a} − {b} x{s}' for a, b in CURVE_PAIRS for s in CURVE_SCALES]
    head += [f'{image}: kernels (90%) / max prob' for image in images]
    lines = ['| iteration | ' + ' | '.join(head) + ' |', '|---:|' + '---:|' * len(head)]
    for iteration, (rows, usage) in sorted(points.items()):
        by_key = {(r['method_a'], r['method_b'], r['scale']): r for r in rows}
        cells = [_cell(by_key[(a, b, s)]) if (a, b, s) in by_key else '—' for a, b in CURVE_PAIRS
                 for s in CURVE_SCALES]
        cells += [f'{usage[i][0]} ({usage[i][1]}) / {usage[i][2]:.3f}' if i in usage else '—' for i in images]
        lines.append(f'| {iteration:,} | ' + ' | '.join(cells) + ' |')
    lines += ['', f'Paired PSNR differences (dB) on {CURVE_SET}\'s first {CURVE_IMAGES} images: mean ± 95% interval '
              '(k/n: the first method higher on k of the n images). Kernels: of the 100 kernels, how many the LR '
              'pixels select, in brackets how many cover 90% of them; max prob: the mean softmax probability of '
              'the selected kernel (`basicsr explain`, LR x2).']
    return '\n'.join(lines) + '\n'


def convergence_figure(points: Dict[int, Tuple[List[dict], Dict[str, Tuple[int, int, float]]]]) -> Figure:
    """Left: the curve pairs' mean difference with its 95% interval against iterations; right: kernel_max_prob."""
    figure = Figure(figsize=(11, 4), dpi=100)
    left, right = figure.subplots(1, 2)
    iterations = sorted(points)
    nudges = iter(np.linspace(-150, 150, len(CURVE_PAIRS) * len(CURVE_SCALES)))  # side by side, not on top
    for (a, b), colour in zip(CURVE_PAIRS, ('tab:blue', 'tab:orange')):
        for scale, marker in zip(CURVE_SCALES, ('o', 's')):
            nudge = next(nudges)
            found = [(i, r) for i in iterations for r in points[i][0]
                     if (r['method_a'], r['method_b'], r['scale']) == (a, b, scale)]
            if found:
                left.errorbar([i + nudge for i, _ in found], [r['psnr_diff'] for _, r in found],
                              yerr=[r['ci95'] for _, r in found], color=colour, marker=marker, capsize=3,
                              linestyle='-' if scale == CURVE_SCALES[0] else '--', label=f'{a} − {b}, x{scale}')
    left.axhline(0, color='grey', linewidth=0.8)
    for axes in (left, right):
        axes.set_xticks(iterations)
    left.set(xlabel='iteration', ylabel='PSNR difference (dB)',
             title=f'{CURVE_SET} (first {CURVE_IMAGES}): mean ± 95% interval')
    left.legend(fontsize=8)
    images = sorted({image for _, usage in points.values() for image in usage})
    for image in images:
        found = [(i, points[i][1][image][2]) for i in iterations if image in points[i][1]]
        right.plot([i for i, _ in found], [p for _, p in found], marker='o', label=image)
    right.set(xlabel='iteration', ylabel='kernel_max_prob', title='GaussianSR kernel selection (LR x2)')
    if images:
        right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='?', default='results/ablation12k', help='the evaluations\' folder')
    args = parser.parse_args(argv)
    points = {}
    for iter_dir in glob.glob(osp.join(args.results, 'iter_*')):
        match = re.fullmatch(r'iter_(\d+)', osp.basename(iter_dir))
        if not match:
            continue
        merged_file = osp.join(iter_dir, 'per_image.csv')
        try:
            if glob.glob(osp.join(iter_dir, '*', 'per_image.csv')):
                per_image, _ = summarize_iteration(iter_dir)
            elif osp.isfile(merged_file):  # only the merged files kept (docs/ablation12k): read, not rewritten
                per_image = read_per_image(merged_file)
            else:
                continue
        except (FileNotFoundError, ValueError) as err:
            print(f'Error: {err}', file=sys.stderr)
            return 1
        points[int(match[1])] = (curve_rows(per_image), kernel_usage(osp.join(iter_dir, 'kernel_usage.txt')))
    if not points:
        print(f'Error: no evaluated iteration (iter_*/ROW/per_image.csv) under {args.results}', file=sys.stderr)
        return 1
    table = convergence_table(points)
    atomic_write(table.encode(), osp.join(args.results, 'convergence.md'))
    rgb = figure_rgb(convergence_figure(points))
    atomic_imwrite(np.ascontiguousarray(rgb[:, :, ::-1]), osp.join(args.results, 'convergence.png'))
    print(table, end='')
    print(f'Written: {osp.join(args.results, "convergence.md")}, {osp.join(args.results, "convergence.png")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
