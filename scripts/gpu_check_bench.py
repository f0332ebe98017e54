"""The benchmark step of scripts/gpu_check.py: ``basicsr benchmark`` cost only, two runs.

* Table 3 of the paper: a 64² input to 128², 256², 384², the mean of 100 runs after 10 warm-up
  runs, fp32 and bf16 (one ``torch.autocast(bfloat16)`` per call, opened where the network runs:
  convolutions and decoder layers in bf16; coordinates, sampling and the colour output in
  fp32), extra peak memory, and training iterations/s at batch 16 (48² LR patches, 2304 queries
  per sample, fp32);
* a 256² input to 1024² (x4), as frames per second (1000 / mean latency of 10 runs after 3
  warm-up runs) with the peak allocated memory of one call, fp32 and bf16.

GaussianSR, LIIF and MetaSR with their option files' networks and random weights (cost does not
depend on the weights); bicubic is measured too. ``--quick``: tiny sizes, 2 runs, one training
iteration at batch 2, and no memory probes on the CPU (one process per method and size there).
"""
import csv
import time
from os import path as osp
from typing import Callable, Dict, List, Tuple

METHODS = ['GaussianSR', 'LIIF', 'MetaSR']
OPTION_FILES = {'GaussianSR': 'options/train_gaussiansr.yml', 'LIIF': 'options/train_liif.yml',
                'MetaSR': 'options/train_metasr.yml'}
# name: (input side, output sides, warm-up, runs, training speed, share of the step's time left)
FULL = {'table3': (64, [128, 256, 384], 10, 100, True, 0.65), 'x4_1024': (256, [1024], 3, 10, False, 1.0)}
QUICK = {'table3': (8, [16, 24], 1, 2, True, 0.65), 'x4_1024': (16, [64], 1, 2, False, 1.0)}
TRAIN = ['--train-batch', '16', '--train-warmup', '5', '--train-iters', '20']
QUICK_TRAIN = ['--train-batch', '2', '--train-lq-size', '8', '--train-sample-q', '32', '--train-warmup', '1',
               '--train-iters', '1']

Run = Callable[..., Tuple[int, str]]


def _read_csv(path: str) -> List[dict]:
    if not osp.isfile(path):
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _cell(value: str, digits: int, fps: bool = False) -> str:
    if not value:
        return '—'
    return f'{1000 / float(value):.{digits}f}' if fps else f'{float(value):.{digits}f}'


def render(runs: Dict[str, Tuple[List[dict], List[dict]]], device: str) -> str:
    """The cost table of the summary, from the runs' speed.csv and train_speed.csv rows."""
    lines = [f'Cost (`basicsr benchmark`, {device}, random weights; each run\'s own table is in benchmark.log):', '',
             '| | ' + ' | '.join(METHODS) + ' |', '|---|' + '---:|' * len(METHODS)]

    def add(label: str, rows: Dict[str, dict], key: str, digits: int, fps: bool = False) -> None:
        cells = [_cell(rows.get(m, {}).get(key, ''), digits, fps) for m in METHODS]
        if any(c != '—' for c in cells):  # memory is not measured on the CPU with --quick
            lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')

    for name, (speed, train) in runs.items():
        groups: Dict[tuple, Dict[str, dict]] = {}
        for row in speed:
            groups.setdefault((row['precision'], int(row['out_size'])), {})[row['method']] = row
        for (precision, size), rows in groups.items():
            first = next(iter(rows.values()))
            where = f'{first["lq_size"]}²→{size}² {precision}'
            if name == 'x4_1024':
                add(f'{where} (frames/s)', rows, 'latency_ms', 1, fps=True)
                add(f'{where} peak allocated (MiB)', rows, 'peak_allocated_mib', 0)
            else:
                add(f'{where} latency (ms, {first["latency_stat"]} of {first["latency_runs"]})', rows, 'latency_ms', 2)
                add(f'{where} extra peak memory (MiB)', rows, 'extra_peak_mib', 1)
        if train:
            add(f'Training it/s (batch {train[0]["batch"]}, fp32, no data loading)', {r['method']: r for r in train},
                'iters_per_s', 2)
    return '\n'.join(lines) + '\n'


def run_benchmarks(run: Run, python: str, bin_dir: str, work: str, quick: bool, cuda: bool,
                   deadline: float) -> Tuple[Dict[str, object], str]:
    """Both runs (the second also when the first failed); returns (facts, the cost table), the
    facts' ``failed`` naming the runs that failed."""
    device = 'cuda' if cuda else 'cpu'
    models = [f'--model={m}={OPTION_FILES[m]}' for m in METHODS]
    runs, failed = {}, []
    for name, (lq, sizes, warmup, repeats, train, share) in (QUICK if quick else FULL).items():
        out = osp.join(work, f'bench_{name}')
        cmd = [osp.join(bin_dir, 'basicsr'), 'benchmark', *models, '--device', device, '--lq-size', str(lq), '--sizes',
               *map(str, sizes), '--warmup', str(warmup), '--repeats', str(repeats), '--latency-stat', 'mean',
               '--precision', 'fp32', 'bf16', '--no-figure', '--out', out]
        cmd += (['--train-speed'] + (QUICK_TRAIN if quick else TRAIN)) if train else []
        cmd += [] if cuda else ['--no-memory']
        rc, _ = run(cmd, timeout=share * (deadline - time.monotonic()), name=name)
        runs[name] = (_read_csv(osp.join(out, 'speed.csv')), _read_csv(osp.join(out, 'train_speed.csv')))
        if rc != 0 or not runs[name][0]:
            failed.append(f'{name} (exit {rc})')
    facts = {'runs': list(runs), 'failed': failed, 'train_speed': runs['table3'][1],
             **{f'{name}_speed': rows for name, (rows, _) in runs.items()}}
    return facts, render(runs, device)
