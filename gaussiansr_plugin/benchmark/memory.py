"""Extra peak memory of one ``Method.upscale`` call from ``lq_size``² to ``size``².

* CUDA: ``torch.cuda.max_memory_allocated`` during the call minus ``memory_allocated`` before it
  (tensors only; the caching allocator's reserve is not counted); also the peak itself
  (``peak_allocated_mib``: the weights, the input and the call's tensors).
* CPU: each (method, size) runs in a fresh process (``python -m
  gaussiansr_plugin.benchmark.memory --model ...``) that builds the method, runs one tiny
  warm-up (8x8 LR), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), reads its
  RSS, runs the call once and reads the peak RSS (``VmHWM``; ``ru_maxrss`` where there is no
  /proc, see ``_peak_rss_kib``).
  Reported: peak RSS minus that RSS, less the growth of file-backed RSS over the call (library
  code paged back in), i.e. the anonymous memory the call made resident at its peak
  (activations, output, allocator caches, thread buffers). The probe runs with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc returns freed large blocks at once (see
  ``measure_cpu_memory``). Without ``clear_refs`` (non-Linux) the peak may include model
  building and is marked so.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import torch

from gaussiansr_plugin.benchmark.methods import (Method, MethodSpec, load_method, parse_model_arg,
                                                 probe_input, quiet_basicsr_logger)

PROBE_MODULE = 'gaussiansr_plugin.benchmark.memory'
PROBE_LQ_SIZE = 8  # the tiny warm-up before a memory probe
MMAP_THRESHOLD = 128 * 1024  # bytes; glibc's default before its dynamic adjustment


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
def probe_cpu_memory(method: Method, size: int, lq_size: int, precision: str = 'fp32') -> Dict[str, object]:
    """In this (fresh) process: the extra peak RSS of one call, see the module docstring."""
    scale = size / lq_size
    method.upscale(probe_input(PROBE_LQ_SIZE, torch.device('cpu')), (round(PROBE_LQ_SIZE * scale), ) * 2, precision)
    lq = probe_input(lq_size, torch.device('cpu'))
    file_before = _status_kib('RssFile')
    reset = _reset_peak_rss()
    baseline = _status_kib('VmRSS')
    if baseline is None:  # no /proc: the peak so far is the best available baseline
        baseline = _peak_rss_kib()
    method.upscale(lq, (size, size), precision)
    peak = _peak_rss_kib()
    file_after = _status_kib('RssFile')
    # Library pages mapped back in by the call (the kernel may have dropped cold ones) are not
    # memory the call needs; they stay mapped afterwards, so their growth is subtracted.
    file_growth = max(0, file_after - file_before) if file_before is not None and file_after is not None else 0
    return {'baseline_rss_kib': baseline, 'peak_rss_kib': peak, 'file_growth_kib': file_growth,
            'extra_mib': max(0, peak - baseline - file_growth) / 1024, 'peak_reset': reset}


@torch.no_grad()
def measure_cuda_memory(method: Method, size: int, lq_size: int, device: torch.device,
                        precision: str = 'fp32') -> Dict[str, float]:
    """Extra peak CUDA memory (MiB) of one call from ``lq_size``² to ``size``², and the peak
    allocated memory during it."""
    lq = probe_input(lq_size, device)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    method.upscale(lq, (size, size), precision)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {'extra_mib': (peak - before) / 1024**2, 'peak_allocated_mib': peak / 1024**2}


def probe_command(spec: MethodSpec, size: int, lq_size: int, threads: int, precision: str = 'fp32') -> List[str]:
    """The command line of one CPU memory probe (this module's ``main``) in a fresh process."""
    return [sys.executable, '-m', PROBE_MODULE, '--model', spec.to_arg(), '--size', str(size), '--lq-size',
            str(lq_size), '--threads', str(threads), '--precision', precision]


def measure_cpu_memory(jobs: Sequence[tuple], lq_size: int, threads: int,
                       parallel: int = 1) -> Dict[tuple, Dict[str, object]]:
    """Runs one fresh probe process per (spec, size, precision) in ``jobs``; returns
    {(name, size, precision): result}.

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
            spec, size, precision = pending.pop(0)
            proc = subprocess.Popen(probe_command(spec, size, lq_size, threads, precision), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            running.append((spec, size, precision, proc))
        spec, size, precision, proc = running.pop(0)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f'Memory probe for {spec.name} at {size}x{size} {precision} failed (exit '
                               f'{proc.returncode}): {err.strip()[-2000:]}')
        results[(spec.name, size, precision)] = json.loads(out.strip().splitlines()[-1])
    return results


def main(argv: Optional[List[str]] = None) -> int:
    """The CPU memory probe that ``measure_cpu_memory`` runs in a fresh process; prints one JSON line."""
    parser = argparse.ArgumentParser(prog=f'python -m {PROBE_MODULE}',
                                     description='Memory probe used by gaussiansr_plugin.benchmark.')
    parser.add_argument('--model', required=True, help='NAME=OPTION_FILE[:CHECKPOINT] or Bicubic')
    parser.add_argument('--size', type=int, required=True, help='output side')
    parser.add_argument('--lq-size', type=int, default=64, help='input side (default: 64)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default: 1)')
    parser.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_basicsr_logger()
    method = load_method(parse_model_arg(args.model), torch.device('cpu'))
    print(json.dumps(probe_cpu_memory(method, args.size, args.lq_size, args.precision)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
