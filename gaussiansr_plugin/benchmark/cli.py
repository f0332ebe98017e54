"""Compare SR methods on the same test sets, scales and machine: quality, cost, and a figure.

    basicsr benchmark \\
        --model GaussianSR=options/train_gaussiansr.yml:experiments/GaussianSR_EDSR-baseline_DIV2K/models/net_g_latest.pth \\
        --model LIIF=options/train_liif.yml:experiments/LIIF_EDSR-baseline_DIV2K/models/net_g_latest.pth \\
        --model EDSRx2=options/train_edsr_x2.yml:experiments/EDSR_Mx2_DIV2K/models/net_g_latest.pth \\
        --sets Set5=datasets/benchmark/Set5 Set14=datasets/benchmark/Set14 DIV2K=datasets/DIV2K/DIV2K_valid_HR \\
        [--scales 2 3 4 2.4 3.6 6 8 12] [--out results/compare] [--train-speed] [--quick] \\
        [--pairs GaussianSR:LIIF LIIF:Bicubic]

(or ``python -m gaussiansr_plugin.benchmark ...``; ``experiments/NAME`` is the run folder of an
option file whose ``name`` is NAME). Every ``--model NAME=OPTION_FILE[:CHECKPOINT]`` is built by
BasicSR from its option file (``methods``); bicubic is always added. Query-based
models run at every scale, fixed-scale models (e.g. EDSR) only at their own. A set is
``NAME=DIR`` with the HR images in ``DIR/HR`` (LR, when present, in
``DIR/LR_bicubic/X{s}/{name}x{s}.png``) or directly in ``DIR`` (``sets``).

Protocol (REFERENCE section 5, LIIF's; ``gaussiansr_plugin.utils.metrics``): outputs evaluated
as float, clamped to [0, 1]; benchmark sets: PSNR/SSIM on the Y channel, shave ceil(s); sets
named ``DIV2K*`` (or listed in ``--div2k-protocol``): RGB, shave ceil(s) + 6. LR for s in
{2, 3, 4} from ``LR_bicubic/X{s}`` when present, otherwise (and for every other s) made on the
fly: h_lr = floor(H / s), HR cropped to round(h_lr * s), MATLAB bicubic on 8-bit pixels.
Loading is ``ArbitraryScalePairedDataset`` in its test phase; metrics are BasicSR's
``calculate_psnr_pt`` / ``calculate_ssim_pt``.

Cost, measured in the same run (``cost``, ``memory``): parameters, latency and extra peak memory
from a ``--lq-size``² input to each ``--sizes``² output, and with ``--train-speed`` training
iterations/s. Written atomically to ``--out`` (``report``): ``compare.md`` (the table, also
printed), ``metrics.csv``, ``per_image.csv``, ``speed.csv``, ``train_speed.csv`` and the figure
``figure_{set}_{image}_x{s}.png`` (``figure``); with ``--pairs A:B``, PSNR(A) - PSNR(B) image by
image, in ``compare.md`` and ``pairs.csv`` (``pairs``, which also runs post hoc). See docs/COMPARE.md.
"""
import argparse
import math
import os
import sys
import time
from typing import List, Optional, Sequence

import torch

from gaussiansr_plugin.benchmark.cost import measure_cost, measure_training
from gaussiansr_plugin.benchmark.evaluate import evaluate
from gaussiansr_plugin.benchmark.figure import FigureCapture, FigureTarget, draw_figure
from gaussiansr_plugin.benchmark.methods import (BICUBIC, Method, MethodSpec, load_method, parse_model_arg,
                                                 quiet_basicsr_logger)
from gaussiansr_plugin.benchmark.pairs import pair_rows, parse_pairs, render_pairs
from gaussiansr_plugin.benchmark.report import build_notes, render_markdown, write_outputs
from gaussiansr_plugin.benchmark.sets import EvalSet, parse_set_arg
from gaussiansr_plugin.utils.command_line import command_parser
from gaussiansr_plugin.utils.image_io import ImageError
from gaussiansr_plugin.utils.options import OptionError

MODULE = 'gaussiansr_plugin.benchmark'
DEFAULT_SCALES = [2, 3, 4, 2.4, 3.6, 6, 8, 12]
DEFAULT_SIZES = [128, 256, 384, 512]


def parse_args(argv: Optional[List[str]], prog: str = 'basicsr benchmark') -> argparse.Namespace:
    parser = command_parser(MODULE, __doc__)
    parser.prog = prog  # how the user invoked it, for usage and error lines
    parser.add_argument('--model', action='append', default=[], metavar='NAME=OPTION_FILE[:CHECKPOINT]',
                        help='a method to compare (repeat); without CHECKPOINT: path.pretrain_network_g of the '
                        'option file, else random weights (cost only); NAME=WEIGHTS for shipped weights, e.g. '
                        'GaussianSR=gaussiansr')
    parser.add_argument('--sets', nargs='*', default=[], metavar='NAME=DIR', help='test sets (DIR/HR or DIR = HR)')
    parser.add_argument('--div2k-protocol', nargs='*', default=[], metavar='NAME',
                        help='sets evaluated on RGB with shave ceil(s)+6 (besides those named DIV2K*)')
    parser.add_argument('--scales', type=float, nargs='+', default=DEFAULT_SCALES,
                        help=f'scales (default: {" ".join(map(str, DEFAULT_SCALES))})')
    parser.add_argument('--pairs', nargs='+', default=[], metavar='A:B',
                        help='also PSNR(A) - PSNR(B) per image: mean, 95%% interval, images where A is higher '
                        '(names of --model, or Bicubic)')
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
    speed.add_argument('--repeats', type=int, default=None, help='timed runs (default: 10)')
    speed.add_argument('--latency-stat', choices=('median', 'mean'), default='median',
                       help='latency reported: median (default) or mean (the paper\'s Table 3) of the timed runs')
    speed.add_argument('--precision', nargs='+', choices=('fp32', 'bf16'), default=['fp32'],
                       help='inference precision(s) of latency and memory; bf16: the network\'s layers under '
                       'torch.autocast(bfloat16) (default: fp32)')
    speed.add_argument('--no-memory', action='store_true',
                       help='skip extra peak memory (on the CPU: one process per method, size and precision)')
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
    if args.pairs and not args.sets:
        raise ValueError(f'--pairs {" ".join(args.pairs)}: PSNR differences need --sets')
    if any(s < 1 for s in args.sizes):
        raise ValueError(f'--sizes must be >= 1, got {args.sizes}')


def _load_methods(specs: Sequence[MethodSpec], scales: Sequence[float], device: torch.device) -> List[Method]:
    """Builds every method, printing what it is (and which are not evaluated at ``scales``)."""
    methods = []
    for spec in specs:
        method = load_method(spec, device)
        untrained = spec.option_file is not None and not method.checkpoint
        kind = 'any scale' if method.scale is None else f'x{method.scale:g} only'
        print(f'{spec.name}: {method.params:,} parameters, {kind}'
              f'{", RANDOM WEIGHTS (no checkpoint)" if untrained else ""}', flush=True)
        methods.append(method)
    for method in methods:
        if method.scale is not None and not any(math.isclose(method.scale, s) for s in scales):
            print(f'Note: {method.name} (x{method.scale:g}) is not evaluated: x{method.scale:g} is not in --scales')
    return methods


def _figure_capture(args: argparse.Namespace, sets: Sequence[EvalSet]) -> Optional[FigureCapture]:
    """What the figure shows (checked before the long work), None without sets or with --no-figure."""
    if not sets or args.no_figure:
        return None
    figure_set = args.figure_set or sets[0].name
    if figure_set not in {s.name for s in sets}:
        raise ValueError(f'--figure-set {figure_set!r} is not one of --sets ({", ".join(s.name for s in sets)})')
    figure_scale = args.figure_scale or (4.0 if 4 in args.scales else args.scales[0])
    if not any(math.isclose(figure_scale, s) for s in args.scales):
        raise ValueError(f'--figure-scale {figure_scale:g} is not one of --scales')
    return FigureCapture(FigureTarget(figure_set, args.figure_image, figure_scale))


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
    pairs = parse_pairs(args.pairs, names)
    sets = [parse_set_arg(text, args.div2k_protocol) for text in args.sets]
    if len({s.name for s in sets}) != len(sets):
        raise ValueError(f'--sets: duplicate set names in {args.sets}')
    methods = _load_methods(specs, args.scales, device)
    capture = _figure_capture(args, sets)

    start = time.perf_counter()
    summary, per_image = evaluate(methods, sets, args.scales, device, args.max_images, capture)
    speed = [] if args.no_speed else measure_cost(methods, {s.name: s for s in specs}, args, device)
    train_specs = [s for s, m in zip(specs, methods) if getattr(m, 'arbitrary', False)]
    train = measure_training(train_specs, args, device) if args.train_speed else []

    os.makedirs(args.out, exist_ok=True)
    figure_path = draw_figure(capture, names, args.out, args.crop, args.crop_size, args.zoom) if capture else None
    ref = args.ref or ('LIIF' if 'LIIF' in names else None)
    if ref is not None and ref not in names:
        raise ValueError(f'--ref {ref!r} is not a method name ({", ".join(names)})')
    notes = build_notes(args, device, threads, time.perf_counter() - start, summary, speed, train, figure_path,
                        capture.protocol if capture else '')
    report = render_markdown(names, {m.name: m.params for m in methods}, summary, speed, train, ref, notes)
    pair_table = pair_rows(per_image, pairs) if pairs else None
    if pairs:
        report += '\n' + render_pairs(pairs, pair_table)
    write_outputs(args.out, report, summary, per_image, speed, train, pair_table)
    return report


def main(argv: Optional[List[str]] = None, prog: str = 'basicsr benchmark') -> int:
    """Command-line entry point; returns the exit status. ``prog``: the command as invoked."""
    args = parse_args(argv, prog)
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
