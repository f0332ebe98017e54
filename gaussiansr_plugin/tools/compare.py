"""Compare SR methods on the same test sets, scales and machine: quality, cost, and a figure.

    python -m gaussiansr_plugin.tools.compare \\
        --model GaussianSR=options/train_gaussiansr.yml:experiments/GaussianSR/models/net_g_latest.pth \\
        --model LIIF=options/train_liif.yml:experiments/LIIF/models/net_g_latest.pth \\
        --model EDSRx2=options/train_edsr_x2.yml:experiments/EDSR_Mx2/models/net_g_latest.pth \\
        --sets Set5=datasets/benchmark/Set5 Set14=datasets/benchmark/Set14 DIV2K=datasets/DIV2K/DIV2K_valid_HR \\
        [--scales 2 3 4 2.4 3.6 6 8 12] [--out results/compare] [--train-speed] [--quick]

Every ``--model NAME=OPTION_FILE[:CHECKPOINT]`` is built by BasicSR from its option file
(``compare_methods``); bicubic is always added. Query-based models run at every scale,
fixed-scale models (e.g. EDSR) only at their own. A set is ``NAME=DIR`` with the HR images in
``DIR/HR`` (LR, when present, in ``DIR/LR_bicubic/X{s}/{name}x{s}.png``) or directly in ``DIR``.

Protocol (REFERENCE section 5, LIIF's): outputs evaluated as float, clamped to [0, 1];
benchmark sets: PSNR/SSIM on the Y channel, shave ceil(s); sets named ``DIV2K*`` (or listed in
``--div2k-protocol``): RGB, shave ceil(s) + 6. LR for s in {2, 3, 4} from ``LR_bicubic/X{s}``
when present, otherwise (and for every other s) made on the fly: h_lr = floor(H / s), HR cropped
to round(h_lr * s), MATLAB bicubic on 8-bit pixels. Loading is ``ArbitraryScalePairedDataset``
in its test phase; metrics are BasicSR's ``calculate_psnr_pt`` / ``calculate_ssim_pt``.

Cost, measured in the same run (``compare_speed``): parameters, latency and extra peak memory
from a ``--lq-size``² input to each ``--sizes``² output, and with ``--train-speed`` training
iterations/s. Written atomically to ``--out``: ``compare.md`` (the table, also printed),
``metrics.csv``, ``per_image.csv``, ``speed.csv``, ``train_speed.csv`` and the figure
``figure_{set}_{image}_x{s}.png``. See docs/COMPARE.md.
"""
import argparse
import csv
import io
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from os import path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

import gaussiansr_plugin  # noqa: F401  (patches BasicSR before anything imports it)
from basicsr.metrics import calculate_metric
from gaussiansr_plugin.data.arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset
from gaussiansr_plugin.tools import compare_figure, compare_speed, tool_parser
from gaussiansr_plugin.tools.compare_methods import (BICUBIC, Method, MethodSpec, load_method, parse_model_arg,
                                                     quiet_basicsr_logger)
from gaussiansr_plugin.utils.file_io import atomic_imwrite, atomic_write
from gaussiansr_plugin.utils.image_io import ImageError, is_image_file, scale_name
from gaussiansr_plugin.utils.options import OptionError

DEFAULT_SCALES = [2, 3, 4, 2.4, 3.6, 6, 8, 12]
DEFAULT_SIZES = [128, 256, 384, 512]
# Scales whose standard LR sets exist as files (LR_bicubic/X{s}); others are always made on the fly.
FILE_LR_SCALES = (2, 3, 4)
DIV2K_EXTRA_SHAVE = 6


@dataclass
class EvalSet:
    """A test set: its HR folder, where its LR folders may be, and its protocol."""
    name: str
    hr_dir: str
    lr_root: Optional[str]  # holds X{s}/ folders
    div2k: bool

    def protocol(self) -> str:
        return 'RGB, shave ceil(s)+6' if self.div2k else 'Y, shave ceil(s)'


def parse_set_arg(text: str, div2k_names: Sequence[str]) -> EvalSet:
    """``NAME=DIR`` -> EvalSet (DIR/HR + DIR/LR_bicubic, or DIR itself as the HR folder)."""
    name, sep, folder = text.partition('=')
    if not sep or not name or not folder:
        raise ValueError(f'--sets {text!r}: expected NAME=DIR')
    folder = osp.expanduser(folder)
    if osp.isdir(osp.join(folder, 'HR')):
        hr_dir, lr_root = osp.join(folder, 'HR'), osp.join(folder, 'LR_bicubic')
    elif osp.isdir(folder) and any(is_image_file(n) for n in os.listdir(folder)):
        hr_dir, lr_root = folder, None
    else:
        raise FileNotFoundError(f'--sets {name}: {folder} has neither an HR/ folder nor images')
    div2k = name.lower().startswith('div2k') or name in div2k_names
    return EvalSet(name, hr_dir, lr_root if lr_root and osp.isdir(lr_root) else None, div2k)


def make_dataset(eval_set: EvalSet, scale: float) -> Tuple[ArbitraryScalePairedDataset, str]:
    """The test-phase dataset of ``eval_set`` at ``scale`` and a description of its LR source."""
    opt: Dict[str, Any] = dict(
        name=f'{eval_set.name}_x{scale_name(scale)}', type='ArbitraryScalePairedDataset', phase='test',
        dataroot_gt=eval_set.hr_dir, scale=scale, downsampler='matlab', test_y_channel=not eval_set.div2k,
        shave=math.ceil(scale) + (DIV2K_EXTRA_SHAVE if eval_set.div2k else 0))
    lr_dir = osp.join(eval_set.lr_root, f'X{scale_name(scale)}') if eval_set.lr_root else None
    if lr_dir and scale in FILE_LR_SCALES and osp.isdir(lr_dir):
        opt.update(dataroot_lq=lr_dir, filename_tmpl='{}x{scale}')
        source = f'files {lr_dir}'
    else:
        source = 'on the fly (MATLAB bicubic, 8-bit)'
    return ArbitraryScalePairedDataset(opt), source


@dataclass
class FigureTarget:
    set_name: str
    image: Optional[str]  # file stem; None: the set's first image
    scale: float


@dataclass
class FigureCapture:
    """The outputs of the figure's image, kept while evaluating."""
    target: FigureTarget
    image: str = ''
    protocol: str = ''
    shave: int = 0
    hr: Optional[torch.Tensor] = None
    outputs: Optional[Dict[str, torch.Tensor]] = None
    psnr: Optional[Dict[str, float]] = None


def evaluate(methods: Sequence[Method], sets: Sequence[EvalSet], scales: Sequence[float], device: torch.device,
             max_images: Optional[int], figure: Optional[FigureCapture]) -> Tuple[List[dict], List[dict]]:
    """PSNR/SSIM of every method on every set at every scale it supports; returns
    (aggregate rows, per-image rows) and fills ``figure``."""
    summary, per_image = [], []
    for eval_set in sets:
        for scale in scales:
            here = [m for m in methods if m.supports(scale)]
            dataset, source = make_dataset(eval_set, scale)
            metric_opts = {
                metric: dict(type=f'calculate_{metric}_pt', crop_border=dataset.shave,
                             test_y_channel=not eval_set.div2k) for metric in ('psnr', 'ssim')
            }
            count = len(dataset) if max_images is None else min(max_images, len(dataset))
            sums = {m.name: {'psnr': 0.0, 'ssim': 0.0} for m in here}
            for index in range(count):
                sample = dataset[index]
                image = osp.splitext(osp.basename(sample['gt_path']))[0]
                lq, gt = sample['lq'][None].to(device), sample['gt'][None].to(device)
                keep = figure is not None and figure.outputs is None and figure.target.set_name == eval_set.name \
                    and math.isclose(figure.target.scale, scale) and figure.target.image in (None, image)
                kept: Dict[str, torch.Tensor] = {}
                for method in here:
                    sr = method.upscale(lq, gt.shape[-2:]).clamp(0, 1)
                    values = {k: float(calculate_metric({'img': sr, 'img2': gt}, opt).reshape(-1)[0])
                              for k, opt in metric_opts.items()}
                    per_image.append(dict(method=method.name, set=eval_set.name, scale=scale_name(scale), image=image,
                                          psnr=values['psnr'], ssim=values['ssim']))
                    for k, v in values.items():
                        sums[method.name][k] += v
                    if keep:
                        kept[method.name] = sr[0].cpu()
                if keep:
                    figure.image, figure.hr, figure.outputs = image, gt[0].cpu(), kept
                    figure.protocol = f'{"RGB" if eval_set.div2k else "Y"}, shave {dataset.shave}'
                    figure.shave = dataset.shave
                    figure.psnr = {r['method']: r['psnr'] for r in per_image[-len(here):]}
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


def measure_cost(methods: Sequence[Method], specs: Dict[str, MethodSpec], args: argparse.Namespace,
                 device: torch.device) -> List[dict]:
    """Latency and extra peak memory of every method at every size it can produce."""
    sizes = sorted(set(args.sizes) | {round(args.lq_size * m.scale) for m in methods if m.scale is not None})
    rows, memory_jobs = [], []
    for size in sizes:
        here = [m for m in methods if compare_speed.output_size(m, args.lq_size, size) is not None]
        latencies = compare_speed.measure_latency(here, size, args.lq_size, device, args.warmup, args.repeats)
        for method, latency in zip(here, latencies):
            row = dict(method=method.name, params=method.params, lq_size=args.lq_size, out_size=size,
                       latency_ms=latency, latency_runs=args.repeats, threads=torch.get_num_threads(),
                       device=device.type, extra_peak_mib=None, memory_measure='')
            if device.type == 'cuda':
                row['extra_peak_mib'] = compare_speed.measure_cuda_memory(method, size, args.lq_size, device)
                row['memory_measure'] = 'cuda max_memory_allocated - memory_allocated before'
            else:
                memory_jobs.append((specs[method.name], size))
            rows.append(row)
        timings = ', '.join(f'{m.name} {t:.1f}' for m, t in zip(here, latencies))
        print(f'latency {args.lq_size}->{size} (ms): {timings}', flush=True)
    if memory_jobs:
        results = compare_speed.measure_cpu_memory(memory_jobs, args.lq_size, torch.get_num_threads(),
                                                   args.probe_jobs)
        for row in rows:
            probe = results.get((row['method'], row['out_size']))
            if probe:
                row['extra_peak_mib'] = probe['extra_mib']
                row['memory_measure'] = ('fresh process: peak RSS (VmHWM) - RSS after build + warm-up, '
                                         'less file-backed RSS growth, MALLOC_MMAP_THRESHOLD_=131072' +
                                         ('' if probe['peak_reset'] else ' (peak not reset: includes build)'))
    return rows


def measure_training(specs: Sequence[MethodSpec], args: argparse.Namespace, device: torch.device) -> List[dict]:
    rows = []
    results = compare_speed.measure_train_speed(specs, device, args.train_batch, args.train_lq_size,
                                                args.train_sample_q, args.train_warmup, args.train_iters)
    for spec, result in zip(specs, results):
        rows.append(dict(method=spec.name, batch=args.train_batch, lq_size=args.train_lq_size,
                         sample_q=args.train_sample_q, threads=torch.get_num_threads(), device=device.type,
                         **result))
        print(f'train {spec.name}: {result["iters_per_s"]:.3f} it/s ({result["iters"]} iterations in '
              f'{result["seconds"]:.1f} s)', flush=True)
    return rows


# ----------------------------------------------------------------------------- report
def _fmt(value: Optional[float], digits: int) -> str:
    return '—' if value is None else f'{value:.{digits}f}'


def _ratio(value: Optional[float], ref: Optional[float]) -> str:
    return '—' if value is None or not ref else f'{value / ref:.2f}x'


def _machine(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        return f'{names[0]} ({len(names)} logical CPUs)' if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def render_markdown(names: Sequence[str], params: Dict[str, int], summary: Sequence[dict], speed: Sequence[dict],
                    train: Sequence[dict], ref: Optional[str], notes: Sequence[str]) -> str:
    """One table, a column per method and a row per quantity; then ratios to ``ref`` and notes."""
    lines = ['| | ' + ' | '.join(names) + ' |', '|---|' + '---:|' * len(names)]

    def add(label: str, cells: Sequence[str]) -> None:
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')

    add('Parameters', [f'{params[n]:,}' for n in names])
    by_speed = {(r['method'], r['out_size']): r for r in speed}
    sizes = sorted({r['out_size'] for r in speed})
    lq = speed[0]['lq_size'] if speed else None
    for size in sizes:
        add(f'Latency {lq}²→{size}² (ms)', [_fmt(by_speed.get((n, size), {}).get('latency_ms'), 1) for n in names])
    for size in sizes:
        add(f'Extra peak memory {lq}²→{size}² (MiB)',
            [_fmt(by_speed.get((n, size), {}).get('extra_peak_mib'), 1) for n in names])
    by_train = {r['method']: r for r in train}
    if train:
        add(f'Training it/s (batch {train[0]["batch"]})',
            [_fmt(by_train.get(n, {}).get('iters_per_s'), 3) for n in names])
    by_quality = {(r['method'], r['set'], r['scale']): r for r in summary}
    for set_name, scale in dict.fromkeys((r['set'], r['scale']) for r in summary):
        cells = []
        for n in names:
            r = by_quality.get((n, set_name, scale))
            cells.append('—' if r is None else f'{r["psnr"]:.2f} / {r["ssim"]:.4f}')
        add(f'{set_name} x{scale} PSNR / SSIM', cells)

    if ref and (speed or train):
        others = [n for n in names if n != ref]
        lines += ['', f'Ratios to {ref} (below 1: cheaper / fewer; training: above 1 is faster):', '',
                  '| | ' + ' | '.join(others) + ' |', '|---|' + '---:|' * len(others)]
        for size in sizes:
            refv = by_speed.get((ref, size), {}).get('latency_ms')
            add(f'Latency {size}²', [_ratio(by_speed.get((n, size), {}).get('latency_ms'), refv) for n in others])
        for size in sizes:
            refv = by_speed.get((ref, size), {}).get('extra_peak_mib')
            add(f'Extra peak memory {size}²',
                [_ratio(by_speed.get((n, size), {}).get('extra_peak_mib'), refv) for n in others])
        if train:
            refv = by_train.get(ref, {}).get('iters_per_s')
            add('Training it/s', [_ratio(by_train.get(n, {}).get('iters_per_s'), refv) for n in others])
    lines += [''] + [f'- {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def _csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f'{v:.6f}' if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    return buffer.getvalue()


SUMMARY_COLUMNS = ['method', 'set', 'scale', 'protocol', 'shave', 'lr_source', 'images', 'psnr', 'ssim']
PER_IMAGE_COLUMNS = ['method', 'set', 'scale', 'image', 'psnr', 'ssim']
SPEED_COLUMNS = ['method', 'params', 'lq_size', 'out_size', 'latency_ms', 'latency_runs', 'threads', 'device',
                 'extra_peak_mib', 'memory_measure']
TRAIN_COLUMNS = ['method', 'batch', 'lq_size', 'sample_q', 'threads', 'device', 'iters', 'seconds', 'iters_per_s']


def draw_figure(capture: FigureCapture, names: Sequence[str], args: argparse.Namespace, out: str) -> Optional[str]:
    """Writes the figure PNG of ``capture``; returns its path (None when nothing was captured)."""
    if capture.outputs is None:
        print(f'No figure: set {capture.target.set_name!r} has no image {capture.target.image!r} evaluated at '
              f'x{capture.target.scale:g}', file=sys.stderr)
        return None
    hr = capture.hr
    height, width = hr.shape[-2:]
    what = f'{capture.target.set_name} {capture.image} at x{capture.target.scale:g}'
    if args.crop:
        crop = compare_figure.parse_crop(args.crop)
        compare_figure.check_crop(crop, height, width, what)
    else:
        crop = compare_figure.worst_bicubic_crop(capture.outputs[BICUBIC], hr, args.crop_size, capture.shave)
    panels = [(['HR'], compare_figure.to_bgr_uint8(hr))]
    for name in names:
        if name in capture.outputs:
            panels.append(([name, f'{capture.psnr[name]:.2f} dB'], compare_figure.to_bgr_uint8(capture.outputs[name])))
    x, y, w, h = crop
    footer = (f'{what}, crop x={x} y={y} {w}x{h} zoomed x{args.zoom}; '
              f'PSNR of the full image ({capture.protocol})')
    figure = compare_figure.make_figure(panels, crop, args.zoom, footer)
    path = osp.join(out, f'figure_{capture.target.set_name}_{capture.image}_x{scale_name(capture.target.scale)}.png')
    atomic_imwrite(figure, path)
    return path


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = tool_parser('gaussiansr_plugin.tools.compare', __doc__)
    parser.add_argument('--model', action='append', default=[], metavar='NAME=OPTION_FILE[:CHECKPOINT]',
                        help='a method to compare (repeat); without CHECKPOINT: path.pretrain_network_g of the '
                        'option file, else random weights (cost only)')
    parser.add_argument('--sets', nargs='*', default=[], metavar='NAME=DIR', help='test sets (DIR/HR or DIR = HR)')
    parser.add_argument('--div2k-protocol', nargs='*', default=[], metavar='NAME',
                        help='sets evaluated on RGB with shave ceil(s)+6 (besides those named DIV2K*)')
    parser.add_argument('--scales', type=float, nargs='+', default=DEFAULT_SCALES,
                        help=f'scales (default: {" ".join(map(str, DEFAULT_SCALES))})')
    parser.add_argument('--max-images', type=int, default=None, help='first N images of each set only')
    parser.add_argument('--out', default='results/compare', help='output folder (default: results/compare)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: $OMP_NUM_THREADS, else torch\'s default)')
    parser.add_argument('--quick', action='store_true',
                        help='short cost measurement: 1 warm-up + 3 runs, 128² only, 1+1 training iterations')
    speed = parser.add_argument_group('cost')
    speed.add_argument('--no-speed', action='store_true', help='skip latency and memory')
    speed.add_argument('--lq-size', type=int, default=64, help='input side for latency/memory (default: 64)')
    speed.add_argument('--sizes', type=int, nargs='+', default=None, help='output sides (default: 128 256 384 512)')
    speed.add_argument('--warmup', type=int, default=None, help='untimed runs first (default: 2)')
    speed.add_argument('--repeats', type=int, default=None, help='timed runs, median reported (default: 10)')
    speed.add_argument('--probe-jobs', type=int, default=1, help='CPU memory probe processes at once (default: 1)')
    speed.add_argument('--train-speed', action='store_true', help='also measure training iterations/s')
    speed.add_argument('--train-batch', type=int, default=16)
    speed.add_argument('--train-lq-size', type=int, default=48)
    speed.add_argument('--train-sample-q', type=int, default=2304)
    speed.add_argument('--train-warmup', type=int, default=None, help='(default: 2)')
    speed.add_argument('--train-iters', type=int, default=None, help='timed iterations (default: 5)')
    speed.add_argument('--ref', default=None, help='method the ratios are relative to (default: LIIF if given)')
    fig = parser.add_argument_group('figure')
    fig.add_argument('--no-figure', action='store_true')
    fig.add_argument('--figure-set', default=None, help='set of the figure (default: the first)')
    fig.add_argument('--figure-image', default=None, help='image stem (default: the set\'s first image)')
    fig.add_argument('--figure-scale', type=float, default=None, help='scale (default: 4 if listed, else the first)')
    fig.add_argument('--crop', default=None, help='x,y,w,h on the HR (default: where bicubic errs most)')
    fig.add_argument('--crop-size', type=int, default=64, help='side of the automatic crop (default: 64)')
    fig.add_argument('--zoom', type=int, default=3, help='nearest-neighbour enlargement (default: 3)')
    args = parser.parse_args(argv)
    if not args.model and not args.sets:
        parser.error('nothing to compare: give --model NAME=OPTION_FILE[:CHECKPOINT] and/or --sets NAME=DIR')
    quick = dict(sizes=[128], warmup=1, repeats=3, train_warmup=1, train_iters=1)
    full = dict(sizes=DEFAULT_SIZES, warmup=2, repeats=10, train_warmup=2, train_iters=5)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _check_args(args: argparse.Namespace) -> None:
    if any(s < 1 for s in args.scales):
        raise ValueError(f'--scales must be >= 1, got {args.scales}')
    for key in ('lq_size', 'repeats', 'zoom', 'crop_size', 'train_batch', 'train_lq_size', 'train_sample_q',
                'train_iters', 'probe_jobs'):
        if getattr(args, key) < 1:
            raise ValueError(f'--{key.replace("_", "-")} must be >= 1, got {getattr(args, key)}')
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f'--max-images must be >= 1, got {args.max_images}')
    if any(s < 1 for s in args.sizes):
        raise ValueError(f'--sizes must be >= 1, got {args.sizes}')


def run(args: argparse.Namespace) -> str:
    """Runs the comparison; returns the markdown report."""
    _check_args(args)
    device = torch.device('cuda' if args.device == 'cuda' or (args.device == 'auto' and torch.cuda.is_available())
                          else 'cpu')
    threads = args.threads or int(os.environ.get('OMP_NUM_THREADS') or torch.get_num_threads())
    torch.set_num_threads(threads)
    quiet_basicsr_logger()
    specs = [MethodSpec(BICUBIC)] + [parse_model_arg(text) for text in args.model]
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f'--model: duplicate method name(s) {duplicated}')
    sets = [parse_set_arg(text, args.div2k_protocol) for text in args.sets]
    if len({s.name for s in sets}) != len(sets):
        raise ValueError(f'--sets: duplicate set names in {args.sets}')
    methods = []
    for spec in specs:
        method = load_method(spec, device)
        untrained = spec.option_file is not None and not method.checkpoint
        kind = 'any scale' if method.scale is None else f'x{method.scale:g} only'
        print(f'{spec.name}: {method.params:,} parameters, {kind}'
              f'{", RANDOM WEIGHTS (no checkpoint)" if untrained else ""}', flush=True)
        methods.append(method)
    for method in methods:
        if method.scale is not None and not any(math.isclose(method.scale, s) for s in args.scales):
            print(f'Note: {method.name} (x{method.scale:g}) is not evaluated: x{method.scale:g} is not in --scales')

    capture = None
    if sets and not args.no_figure:
        figure_set = args.figure_set or sets[0].name
        if figure_set not in {s.name for s in sets}:
            raise ValueError(f'--figure-set {figure_set!r} is not one of --sets ({", ".join(s.name for s in sets)})')
        figure_scale = args.figure_scale or (4.0 if 4 in args.scales else args.scales[0])
        if not any(math.isclose(figure_scale, s) for s in args.scales):
            raise ValueError(f'--figure-scale {figure_scale:g} is not one of --scales')
        capture = FigureCapture(FigureTarget(figure_set, args.figure_image, figure_scale))

    start = time.perf_counter()
    summary, per_image = evaluate(methods, sets, args.scales, device, args.max_images, capture)
    speed = [] if args.no_speed else measure_cost(methods, {s.name: s for s in specs}, args, device)
    train_specs = [s for s, m in zip(specs, methods) if getattr(m, 'arbitrary', False)]
    train = measure_training(train_specs, args, device) if args.train_speed else []

    os.makedirs(args.out, exist_ok=True)
    figure_path = draw_figure(capture, names, args, args.out) if capture else None
    ref = args.ref or ('LIIF' if 'LIIF' in names else None)
    if ref is not None and ref not in names:
        raise ValueError(f'--ref {ref!r} is not a method name ({", ".join(names)})')
    notes = [
        f'Device: {device.type}, {_machine(device)}; torch {torch.__version__}, {threads} CPU threads '
        f'(torch.set_num_threads); {time.strftime("%Y-%m-%d %H:%M")}, {time.perf_counter() - start:.0f} s.'
    ]
    if summary:
        notes.append('Quality: float outputs clamped to [0, 1]; calculate_psnr_pt / calculate_ssim_pt; benchmark '
                     'sets Y channel, shave ceil(s); DIV2K sets RGB, shave ceil(s)+6. Mean over images.')
    for row in summary:
        if row['method'] == BICUBIC:
            channel = row['protocol'].split(',')[0]
            notes.append(f'{row["set"]} x{row["scale"]}: {row["images"]} images, {channel}, shave {row["shave"]}, '
                         f'LR {row["lr_source"]}.')
    if speed:
        notes.append(f'Latency: median of {args.repeats} runs after {args.warmup} warm-up, the methods taking turns '
                     f'run by run; encoder + all query chunks from a {args.lq_size}x{args.lq_size} input; fixed-scale '
                     'models only at their own output size.')
        notes.append('Extra peak memory: ' + ('CUDA max_memory_allocated during one call minus memory_allocated '
                                              'before it.' if device.type == 'cuda' else
                                              'per (method, size) a fresh process builds the method, runs an 8x8 '
                                              'warm-up and resets the peak-RSS mark (/proc/self/clear_refs); '
                                              'reported = peak RSS (VmHWM) over one call minus the RSS before it, '
                                              'less the growth of file-backed RSS (library pages): activations, '
                                              'output, allocator caches; glibc MALLOC_MMAP_THRESHOLD_=131072.'))
    if train:
        notes.append(f'Training: iterations/s of forward + L1 + backward + Adam step (ArbitraryScaleSRModel.'
                     f'optimize_parameters), batch {args.train_batch}, LR {args.train_lq_size}², '
                     f'{args.train_sample_q} queries per sample, synthetic data (no loading), '
                     f'{args.train_iters} iterations after {args.train_warmup} warm-up, the archs taking turns '
                     'iteration by iteration.')
    if figure_path:
        notes.append(f'Figure: {figure_path} (HR, bicubic and each method on the same crop; captions give the PSNR '
                     f'of the full image, {capture.protocol}).')
    params = {m.name: m.params for m in methods}
    report = render_markdown(names, params, summary, speed, train, ref, notes)

    atomic_write(report.encode(), osp.join(args.out, 'compare.md'))
    atomic_write(_csv_text(summary, SUMMARY_COLUMNS).encode(), osp.join(args.out, 'metrics.csv'))
    atomic_write(_csv_text(per_image, PER_IMAGE_COLUMNS).encode(), osp.join(args.out, 'per_image.csv'))
    for file_name, rows, columns in (('speed.csv', speed, SPEED_COLUMNS), ('train_speed.csv', train, TRAIN_COLUMNS)):
        file_path = osp.join(args.out, file_name)
        if rows:
            atomic_write(_csv_text(rows, columns).encode(), file_path)
        elif osp.isfile(file_path):
            os.remove(file_path)  # from an earlier run: it would pass for this run's numbers
    return report


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        report = run(args)
    except OptionError as err:
        print(err.code, file=sys.stderr)
        return 1
    except (ImageError, ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f'Error: {err.args[0] if err.args else err}', file=sys.stderr)
        return 1
    print()
    print(report, end='')
    print(f'Written to {args.out}/')
    return 0


if __name__ == '__main__':
    sys.exit(main())
