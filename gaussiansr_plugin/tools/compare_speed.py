"""Cost measurements for ``compare``: latency, extra peak memory and training speed.

Latency: one LR input of ``lq_size``² (uniform noise, fixed seed) super-resolved to each output
size with ``Method.upscale`` (encoder + all query chunks + assembling the image); ``warmup``
untimed calls, then the median of ``repeats`` timed calls, interleaved across methods (CUDA
synchronized before reading the clock).

Extra peak memory of one such call:

* CUDA: ``torch.cuda.max_memory_allocated`` during the call minus ``memory_allocated`` before it
  (tensors only; the caching allocator's reserve is not counted).
* CPU: each (method, size) runs in a fresh process (``python -m
  gaussiansr_plugin.tools.compare_speed probe ...``) that builds the method, runs one tiny
  warm-up (8x8 LR), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), reads its
  RSS, runs the call once and reads the peak RSS (``VmHWM``; ``ru_maxrss`` where there is no
  /proc, see ``_peak_rss_kib``).
  Reported: peak RSS minus that RSS, less the growth of file-backed RSS over the call (library
  code paged back in), i.e. the anonymous memory the call made resident at its peak
  (activations, output, allocator caches, thread buffers). The probe runs with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc returns freed large blocks at once (see
  ``measure_cpu_memory``). Without ``clear_refs`` (non-Linux) the peak may include model
  building and is marked so.

Training speed: iterations per second of ``ArbitraryScaleSRModel.optimize_parameters``
(forward, L1 loss, backward, Adam step) on a fixed synthetic batch shaped like the training
data (per sample s ~ U(1, 4), HR patch round(lq_size * s), ``sample_q`` random query pixels),
after ``warmup`` untimed iterations, the archs taking turns iteration by iteration. Data
loading is not included.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

from gaussiansr_plugin.tools.compare_methods import (Method, MethodSpec, build_train_model, load_method,
                                                     parse_model_arg, quiet_basicsr_logger)
from gaussiansr_plugin.utils.coord import make_cell, make_coord

PROBE_LQ_SIZE = 8  # the tiny warm-up before a memory probe
MMAP_THRESHOLD = 128 * 1024  # bytes; glibc's default before its dynamic adjustment


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _input(lq_size: int, device: torch.device) -> torch.Tensor:
    return torch.rand(1, 3, lq_size, lq_size, generator=torch.Generator().manual_seed(0)).to(device)


def output_size(method: Method, lq_size: int, size: int) -> Optional[int]:
    """The output side ``method`` is measured at for the requested ``size``; None if it cannot
    produce it (a fixed-scale method only produces lq_size * scale)."""
    if method.scale is None:
        return size
    return size if math.isclose(lq_size * method.scale, size) else None


@torch.no_grad()
def measure_latency(methods: Sequence[Method], size: int, lq_size: int, device: torch.device, warmup: int,
                    repeats: int) -> List[float]:
    """Median wall time (ms) of each method's ``upscale`` from ``lq_size``² to ``size``².

    The timed calls are interleaved (one call of every method per round), so that a change of
    background load affects every method alike instead of whichever was being timed.
    """
    lq = _input(lq_size, device)
    for method in methods:
        for _ in range(warmup):
            method.upscale(lq, (size, size))
    _sync(device)
    times: List[List[float]] = [[] for _ in methods]
    for _ in range(repeats):
        for method, method_times in zip(methods, times):
            start = time.perf_counter()
            method.upscale(lq, (size, size))
            _sync(device)
            method_times.append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]


def _status_kib(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Resets the peak-RSS mark to the current RSS (Linux >= 4.0); False where impossible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _peak_rss_kib() -> int:
    """This process's peak RSS since the last ``_reset_peak_rss``.

    ``VmHWM`` where /proc exists: ``getrusage``'s ``ru_maxrss`` is not reset by ``clear_refs``
    and, on Linux, starts at the RSS of the parent at fork (``exec`` carries the forked copy's
    peak over), so a probe started by a 1 GB harness would report at least 1 GB.
    """
    hwm = _status_kib('VmHWM')
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == 'darwin' else maxrss  # bytes on macOS, KiB on Linux


@torch.no_grad()
def probe_cpu_memory(method: Method, size: int, lq_size: int) -> Dict[str, object]:
    """In this (fresh) process: the extra peak RSS of one call, see the module docstring."""
    scale = size / lq_size
    method.upscale(_input(PROBE_LQ_SIZE, torch.device('cpu')), (round(PROBE_LQ_SIZE * scale), ) * 2)
    lq = _input(lq_size, torch.device('cpu'))
    file_before = _status_kib('RssFile')
    reset = _reset_peak_rss()
    baseline = _status_kib('VmRSS')
    if baseline is None:  # no /proc: the peak so far is the best available baseline
        baseline = _peak_rss_kib()
    method.upscale(lq, (size, size))
    peak = _peak_rss_kib()
    file_after = _status_kib('RssFile')
    # Library pages mapped back in by the call (the kernel may have dropped cold ones) are not
    # memory the call needs; they stay mapped afterwards, so their growth is subtracted.
    file_growth = max(0, file_after - file_before) if file_before is not None and file_after is not None else 0
    return {'baseline_rss_kib': baseline, 'peak_rss_kib': peak, 'file_growth_kib': file_growth,
            'extra_mib': max(0, peak - baseline - file_growth) / 1024, 'peak_reset': reset}


@torch.no_grad()
def measure_cuda_memory(method: Method, size: int, lq_size: int, device: torch.device) -> float:
    """Extra peak CUDA memory (MiB) of one call from ``lq_size``² to ``size``²."""
    lq = _input(lq_size, device)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    method.upscale(lq, (size, size))
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 1024**2


def probe_command(spec: MethodSpec, size: int, lq_size: int, threads: int) -> List[str]:
    return [sys.executable, '-m', 'gaussiansr_plugin.tools.compare_speed', 'probe', '--model', spec.to_arg(),
            '--size', str(size), '--lq-size', str(lq_size), '--threads', str(threads)]


def measure_cpu_memory(jobs: Sequence[tuple], lq_size: int, threads: int,
                       parallel: int = 1) -> Dict[tuple, Dict[str, object]]:
    """Runs one fresh probe process per (spec, size) in ``jobs``; returns {(name, size): result}.

    Peak RSS is per process, so probes running side by side (``parallel``) do not disturb each
    other's numbers, only their wall time.
    """
    # A fixed mmap threshold (glibc's static default) turns off glibc's dynamic one, which lets
    # freed blocks of tens of MB stay resident at random: with it, repeated probes agree to ~1 MiB
    # instead of +-20%, and the peak follows the memory the call holds.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    pending = list(jobs)
    running: List[tuple] = []
    results: Dict[tuple, Dict[str, object]] = {}
    while pending or running:
        while pending and len(running) < max(1, parallel):
            spec, size = pending.pop(0)
            proc = subprocess.Popen(probe_command(spec, size, lq_size, threads), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            running.append((spec, size, proc))
        spec, size, proc = running.pop(0)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f'Memory probe for {spec.name} at {size}x{size} failed (exit {proc.returncode}): '
                               f'{err.strip()[-2000:]}')
        results[(spec.name, size)] = json.loads(out.strip().splitlines()[-1])
    return results


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


def main(argv: Optional[List[str]] = None) -> int:
    """``probe``: the CPU memory probe that ``measure_cpu_memory`` runs in a fresh process; prints
    one JSON line."""
    parser = argparse.ArgumentParser(prog='python -m gaussiansr_plugin.tools.compare_speed',
                                     description='Memory probe used by gaussiansr_plugin.tools.compare.')
    parser.add_argument('command', choices=['probe'])
    parser.add_argument('--model', required=True, help='NAME=OPTION_FILE[:CHECKPOINT] or Bicubic')
    parser.add_argument('--size', type=int, required=True, help='output side')
    parser.add_argument('--lq-size', type=int, default=64, help='input side (default: 64)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default: 1)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_basicsr_logger()
    method = load_method(parse_model_arg(args.model), torch.device('cpu'))
    print(json.dumps(probe_cpu_memory(method, args.size, args.lq_size)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
