"""The benchmark's report: the markdown table with its notes, and the CSV files.

``compare.md``: one table, a column per method and a row per quantity (parameters, latency,
extra peak memory, training speed, PSNR / SSIM per set and scale), then ratios to a reference
method and notes saying how every figure was measured. ``metrics.csv``, ``per_image.csv``,
``speed.csv``, ``train_speed.csv`` and, with ``--pairs``, ``pairs.csv`` (``pairs``) hold the rows
behind it. Every file is written atomically.
"""
import argparse
import csv
import io
import os
import platform
import time
from os import path as osp
from typing import Dict, List, Optional, Sequence

import torch

from gaussiansr_plugin.benchmark.methods import BICUBIC
from gaussiansr_plugin.utils.file_io import atomic_write

SUMMARY_COLUMNS = ['method', 'set', 'scale', 'protocol', 'shave', 'lr_source', 'images', 'psnr', 'ssim']
PER_IMAGE_COLUMNS = ['method', 'set', 'scale', 'image', 'psnr', 'ssim']
SPEED_COLUMNS = ['method', 'params', 'lq_size', 'out_size', 'precision', 'latency_ms', 'latency_stat', 'latency_runs',
                 'threads', 'device', 'extra_peak_mib', 'peak_allocated_mib', 'memory_measure']
TRAIN_COLUMNS = ['method', 'batch', 'lq_size', 'sample_q', 'threads', 'device', 'iters', 'seconds', 'iters_per_s']
PAIR_COLUMNS = ['method_a', 'method_b', 'set', 'scale', 'images', 'psnr_diff', 'ci95', 'a_higher', 'ties']


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
    # One row per (size, precision); the precision is named unless the run measured fp32 alone.
    by_speed = {(r['method'], r['out_size'], r['precision']): r for r in speed}
    precisions = list(dict.fromkeys(r['precision'] for r in speed))
    rows = [(size, p, '' if precisions == ['fp32'] else f' {p}')
            for p in precisions for size in sorted({r['out_size'] for r in speed})]
    lq = speed[0]['lq_size'] if speed else None
    memory_rows = rows if any(r['extra_peak_mib'] is not None for r in speed) else []  # none: --no-memory
    for size, p, tag in rows:
        add(f'Latency {lq}²→{size}²{tag} (ms)',
            [_fmt(by_speed.get((n, size, p), {}).get('latency_ms'), 1) for n in names])
    for size, p, tag in memory_rows:
        add(f'Extra peak memory {lq}²→{size}²{tag} (MiB)',
            [_fmt(by_speed.get((n, size, p), {}).get('extra_peak_mib'), 1) for n in names])
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
        for size, p, tag in rows:
            refv = by_speed.get((ref, size, p), {}).get('latency_ms')
            add(f'Latency {size}²{tag}', [_ratio(by_speed.get((n, size, p), {}).get('latency_ms'), refv)
                                          for n in others])
        for size, p, tag in memory_rows:
            refv = by_speed.get((ref, size, p), {}).get('extra_peak_mib')
            add(f'Extra peak memory {size}²{tag}',
                [_ratio(by_speed.get((n, size, p), {}).get('extra_peak_mib'), refv) for n in others])
        if train:
            refv = by_train.get(ref, {}).get('iters_per_s')
            add('Training it/s', [_ratio(by_train.get(n, {}).get('iters_per_s'), refv) for n in others])
    lines += [''] + [f'- {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def build_notes(args: argparse.Namespace, device: torch.device, threads: int, seconds: float,
                summary: Sequence[dict], speed: Sequence[dict], train: Sequence[dict], figure_path: Optional[str],
                figure_protocol: str) -> List[str]:
    """The notes under the table: machine, protocol and LR source of every (set, scale), how cost
    was measured, the figure."""
    notes = [
        f'Device: {device.type}, {_machine(device)}; torch {torch.__version__}, {threads} CPU threads '
        f'(torch.set_num_threads); {time.strftime("%Y-%m-%d %H:%M")}, {seconds:.0f} s.'
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
        notes.append(f'Latency: {args.latency_stat} of {args.repeats} runs after {args.warmup} warm-up, the methods '
                     f'taking turns run by run; encoder + all query chunks from a {args.lq_size}x{args.lq_size} input; '
                     'fixed-scale models only at their own output size.'
                     + (' bf16: one torch.autocast(bfloat16) per call, opened where the network runs: '
                        'convolutions and decoder layers in bf16; coordinates, sampling and the query archs\' '
                        'colour output in fp32; fp32 weights.'
                        if 'bf16' in args.precision else ''))
        notes.append('Extra peak memory: ' + ('not measured (--no-memory).' if args.no_memory else
                                              'CUDA max_memory_allocated during one call minus memory_allocated '
                                              'before it (speed.csv: also the peak, peak_allocated_mib).'
                                              if device.type == 'cuda' else
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
                     f'of the full image, {figure_protocol}).')
    return notes


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f'{v:.6f}' if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    return buffer.getvalue()


def write_outputs(out: str, report: str, summary: Sequence[dict], per_image: Sequence[dict], speed: Sequence[dict],
                  train: Sequence[dict], pairs: Optional[Sequence[dict]] = None) -> None:
    """Writes ``compare.md`` and the CSVs into ``out``; removes a CSV this run did not measure.

    Args:
        pairs (list[dict] | None): ``pairs.csv`` rows; None: no ``--pairs`` (an empty list: pairs
            asked for but never evaluated together, written as the header alone).
    """
    atomic_write(report.encode(), osp.join(out, 'compare.md'))
    atomic_write(csv_text(summary, SUMMARY_COLUMNS).encode(), osp.join(out, 'metrics.csv'))
    atomic_write(csv_text(per_image, PER_IMAGE_COLUMNS).encode(), osp.join(out, 'per_image.csv'))
    optional = (('speed.csv', speed, SPEED_COLUMNS, bool(speed)),
                ('train_speed.csv', train, TRAIN_COLUMNS, bool(train)),
                ('pairs.csv', pairs or [], PAIR_COLUMNS, pairs is not None))
    for file_name, rows, columns, measured in optional:
        file_path = osp.join(out, file_name)
        if measured:
            atomic_write(csv_text(rows, columns).encode(), file_path)
        elif osp.isfile(file_path):
            os.remove(file_path)  # from an earlier run: it would pass for this run's numbers
