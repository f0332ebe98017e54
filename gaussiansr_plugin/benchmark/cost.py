"""What each method costs, measured in the benchmark's run: latency, extra peak memory, training speed.

Latency: one LR input of ``lq_size``² (``methods.probe_input``) super-resolved to each output
size with ``Method.upscale`` (encoder + all query chunks + assembling the image); ``warmup``
untimed calls, then the median (or mean: ``--latency-stat``) of ``repeats`` timed calls,
interleaved across methods (CUDA synchronized before reading the clock). Latency and memory are
measured at each ``--precision``, which ``Method.upscale`` passes down to the one place that opens
the autocast (``utils/precision.py``): for ``bf16`` convolutions and the decoders' linear layers
in bfloat16, what the archs keep in float32 (coordinates, sampling, the colour output) in float32.

Extra peak memory of one such call: see ``memory``.

Training speed: iterations per second of ``ArbitraryScaleSRModel.optimize_parameters``
(forward, L1 loss, backward, Adam step) on a fixed synthetic batch shaped like the training
data (per sample s ~ U(1, 4), HR patch round(lq_size * s), ``sample_q`` random query pixels),
after ``warmup`` untimed iterations, the archs taking turns iteration by iteration. Data
loading is not included.
"""
import argparse
import math
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch

from gaussiansr_plugin.benchmark import memory
from gaussiansr_plugin.benchmark.methods import Method, MethodSpec, build_train_model, probe_input
from gaussiansr_plugin.utils.coord import make_cell, make_coord

CPU_MEMORY_MEASURE = ('fresh process: peak RSS (VmHWM) - RSS after build + warm-up, less file-backed RSS growth, '
                      'MALLOC_MMAP_THRESHOLD_=131072')


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def output_size(method: Method, lq_size: int, size: int) -> Optional[int]:
    """The output side ``method`` is measured at for the requested ``size``; None if it cannot
    produce it (a fixed-scale method only produces lq_size * scale)."""
    if method.scale is None:
        return size
    return size if math.isclose(lq_size * method.scale, size) else None


@torch.no_grad()
def measure_latency(methods: Sequence[Method], size: int, lq_size: int, device: torch.device, warmup: int,
                    repeats: int, precision: str = 'fp32', stat: str = 'median') -> List[float]:
    """Median (``stat``: or mean) wall time (ms) of each method's ``upscale`` from ``lq_size``²
    to ``size``², at ``precision`` (``Method.upscale``).

    The timed calls are interleaved (one call of every method per round), so that a change of
    background load affects every method alike instead of whichever was being timed.
    """
    lq = probe_input(lq_size, device)
    for method in methods:
        for _ in range(warmup):
            method.upscale(lq, (size, size), precision)
    _sync(device)
    times: List[List[float]] = [[] for _ in methods]
    for _ in range(repeats):
        for method, method_times in zip(methods, times):
            start = time.perf_counter()
            method.upscale(lq, (size, size), precision)
            _sync(device)
            method_times.append(time.perf_counter() - start)
    average = statistics.mean if stat == 'mean' else statistics.median
    return [1000 * average(t) for t in times]


def _train_batch(batch: int, lq_size: int, sample_q: int, device: torch.device) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    coords, cells = [], []
    for _ in range(batch):
        patch = round(lq_size * (1 + 3 * torch.rand((), generator=gen).item()))
        coord = make_coord((patch, patch))
        keep = torch.randperm(coord.shape[0], generator=gen)[:sample_q]
        coords.append(coord[keep])
        cells.append(make_cell((patch, patch), sample_q))
    return {
        'lq': torch.rand(batch, 3, lq_size, lq_size, generator=gen).to(device),
        'gt': torch.rand(batch, sample_q, 3, generator=gen).to(device),
        'coord': torch.stack(coords).to(device),
        'cell': torch.stack(cells).to(device),
    }


def measure_train_speed(specs: Sequence[MethodSpec], device: torch.device, batch: int, lq_size: int, sample_q: int,
                        warmup: int, iters: int) -> List[Dict[str, float]]:
    """Training iterations per second of each spec's arch (see the module docstring); the timed
    iterations are interleaved across archs, as in ``measure_latency``."""
    data = _train_batch(batch, lq_size, sample_q, device)
    models = []
    for spec in specs:
        torch.manual_seed(0)
        model = build_train_model(spec, device)
        model.feed_data(data)
        for step in range(warmup):
            model.optimize_parameters(step)
        models.append(model)
    seconds = [0.0] * len(models)
    for step in range(iters):
        for i, model in enumerate(models):
            _sync(device)
            start = time.perf_counter()
            model.optimize_parameters(warmup + step)
            _sync(device)
            seconds[i] += time.perf_counter() - start
    return [{'iters': iters, 'seconds': s, 'iters_per_s': iters / s} for s in seconds]


def measure_cost(methods: Sequence[Method], specs: Dict[str, MethodSpec], args: argparse.Namespace,
                 device: torch.device) -> List[dict]:
    """Latency and extra peak memory of every method at every size it can produce and every
    ``--precision`` (``speed.csv`` rows)."""
    sizes = sorted(set(args.sizes) | {round(args.lq_size * m.scale) for m in methods if m.scale is not None})
    rows, memory_jobs = [], []
    for precision in args.precision:
        for size in sizes:
            here = [m for m in methods if output_size(m, args.lq_size, size) is not None]
            latencies = measure_latency(here, size, args.lq_size, device, args.warmup, args.repeats, precision,
                                        args.latency_stat)
            for method, latency in zip(here, latencies):
                row = dict(method=method.name, params=method.params, lq_size=args.lq_size, out_size=size,
                           precision=precision, latency_ms=latency, latency_stat=args.latency_stat,
                           latency_runs=args.repeats, threads=torch.get_num_threads(), device=device.type,
                           extra_peak_mib=None, peak_allocated_mib=None, memory_measure='')
                if device.type == 'cuda' and not args.no_memory:
                    measured = memory.measure_cuda_memory(method, size, args.lq_size, device, precision)
                    row.update(extra_peak_mib=measured['extra_mib'], peak_allocated_mib=measured['peak_allocated_mib'],
                               memory_measure='cuda max_memory_allocated - memory_allocated before')
                elif not args.no_memory:
                    memory_jobs.append((specs[method.name], size, precision))
                rows.append(row)
            timings = ', '.join(f'{m.name} {t:.1f}' for m, t in zip(here, latencies))
            print(f'latency {args.lq_size}->{size} {precision} (ms, {args.latency_stat}): {timings}', flush=True)
    if memory_jobs:
        results = memory.measure_cpu_memory(memory_jobs, args.lq_size, torch.get_num_threads(), args.probe_jobs)
        for row in rows:
            probe = results.get((row['method'], row['out_size'], row['precision']))
            if probe:
                row['extra_peak_mib'] = probe['extra_mib']
                row['memory_measure'] = CPU_MEMORY_MEASURE + ('' if probe['peak_reset'] else
                                                              ' (peak not reset: includes build)')
    return rows


def measure_training(specs: Sequence[MethodSpec], args: argparse.Namespace, device: torch.device) -> List[dict]:
    """Training iterations/s of every spec (``train_speed.csv`` rows)."""
    rows = []
    results = measure_train_speed(specs, device, args.train_batch, args.train_lq_size, args.train_sample_q,
                                  args.train_warmup, args.train_iters)
    for spec, result in zip(specs, results):
        rows.append(dict(method=spec.name, batch=args.train_batch, lq_size=args.train_lq_size,
                         sample_q=args.train_sample_q, threads=torch.get_num_threads(), device=device.type,
                         **result))
        print(f'train {spec.name}: {result["iters_per_s"]:.3f} it/s ({result["iters"]} iterations in '
              f'{result["seconds"]:.1f} s)', flush=True)
    return rows
