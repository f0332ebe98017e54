"""One-command GPU check (run through scripts/gpu_check.sh; standard library only).

Steps, each with a time limit (together under 8 minutes on one GPU), each logged to its own
file in the results folder; a failed step is reported and the next one runs all the same:

* ``setup``: the Python to use (``gpu_check_env``): this one, or a virtual environment over it
  with what it lacks installed from ``--wheels``; what it imports and the GPU, torch, CUDA and
  NCCL it sees (``gpu_check_probe``).
* ``tests``: the test suite (tests that take the ``device`` fixture run on ``cuda`` too), in
  parallel with pytest-xdist where it is installed; ``--quick``: the chunked-prediction tests.
* ``train``: ``gpu_check_train``: the paper recipe for 200 iterations under torchrun, killed
  after the checkpoint of iteration 100 and resumed.
* ``benchmark``: ``gpu_check_bench``: ``basicsr benchmark`` cost only for GaussianSR, LIIF and
  MetaSR (paper Table 3 protocol, 256² -> 1024² frames/s and peak memory, fp32 and bf16 (one
  bf16 autocast per call: convolutions and decoder layers in bf16, coordinates, sampling
  and the colour output in fp32), training iterations/s at batch 16).

Results folder (``$OUT`` when set, else ``--out``; at most 8 files, as a device run returns):
``summary.md`` (also printed), ``summary.json``, ``setup.log``, ``tests.log``, ``train.log``,
``benchmark.log``. The exit status is 0 when every step passed.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from os import path as osp
from typing import Dict, List, Optional, Tuple

import gpu_check_bench
import gpu_check_env
import gpu_check_train

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LIMITS = {'setup': 40, 'tests': 150, 'train': 150, 'benchmark': 130}  # seconds; 470 in all
QUICK_LIMITS = {'setup': 60, 'tests': 60, 'train': 120, 'benchmark': 120}
PROBE = osp.join(REPO, 'scripts', 'gpu_check_probe.py')
TEST_TIMEOUT = 90  # seconds for one test, where pytest-timeout is installed


class Step:
    """One step: its log file, its deadline and what it found."""

    def __init__(self, name: str, results: str, limit: float, env: Dict[str, str]) -> None:
        self.name, self.limit, self.env = name, limit, env
        self.log_path = osp.join(results, f'{name}.log')
        self.deadline = time.monotonic() + limit
        self.start = time.monotonic()
        self.status, self.detail, self.facts = 'failed', '', {}
        open(self.log_path, 'w').close()

    def log(self, text: str) -> None:
        with open(self.log_path, 'a') as f:
            f.write(text.rstrip('\n') + '\n')

    def run(self, cmd: List[str], timeout: Optional[float] = None, name: str = '', preamble: str = '',
            cwd: str = REPO) -> Tuple[int, str]:
        """Runs ``cmd`` (killed with everything it started at the step's deadline, or after
        ``timeout`` s); returns (exit status, output), -9 when it ran out of time. The output
        goes to the step's log."""
        timeout = max(1.0, self.deadline - time.monotonic() if timeout is None else timeout)
        start = time.monotonic()
        with tempfile.TemporaryFile('w+') as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                gpu_check_train.kill_tree(proc.pid)
                proc.wait()
                rc = -9
            out.seek(0)
            text = out.read()
        if preamble:
            self.log(preamble)
        self.log(f'$ {" ".join(cmd)}  # {name or "command"}: exit {rc}'
                 f'{" (time limit)" if rc == -9 else ""}, {time.monotonic() - start:.1f} s\n{text}')
        return rc, text

    def finish(self, status: str, detail: str) -> None:
        self.status, self.detail = status, detail
        self.seconds = time.monotonic() - self.start
        line = f'== {self.name}: {status} in {self.seconds:.1f} s (limit {self.limit:.0f} s): {detail}'
        self.log(line)
        print(line.splitlines()[0][:400], flush=True)


def run_tests(step: Step, python: str, quick: bool) -> str:
    """The test suite (``--quick``: a few tests); returns its counts, raises when it failed."""
    xml_path = osp.join(step.env['GPU_CHECK_WORK'], 'tests.xml')
    cmd = [python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rfE', '--ignore=tests/test_gpu_check.py',
           f'--junitxml={xml_path}']
    if quick:
        cmd += ['tests/test_model.py', '-k', 'chunked']
    else:
        def has(module: str) -> bool:
            return subprocess.run([python, '-c', f'import {module}'], cwd='/', capture_output=True).returncode == 0

        # In parallel where pytest-xdist is installed; a hanging test fails alone (pytest-timeout)
        # instead of taking the step's whole time limit and the report with it.
        cmd += ['-n', str(min(8, max(2, (os.cpu_count() or 2) // 2)))] if has('xdist') else []
        cmd += ['--timeout', str(TEST_TIMEOUT)] if has('pytest_timeout') else []
        cmd += ['tests']
    if osp.exists(xml_path):
        os.remove(xml_path)  # an earlier run's would pass for this one's if pytest is killed
    rc, out = step.run(cmd)
    counts = re.findall(r'(\d+) (passed|failed|skipped|error|errors)\b', out.strip().splitlines()[-1] if out else '')
    xml = open(xml_path).read() if osp.exists(xml_path) else ''
    on_cuda = len(re.findall(r'<testcase [^>]*name="[^"]*[\[-]cuda[\]-][^"]*"[^>]*?(?:/>|>\s*</testcase>)', xml))
    summary = ', '.join(f'{n} {what}' for n, what in counts) + f'; {on_cuda} passed on cuda'
    if rc != 0:
        raise RuntimeError(summary + (' (time limit)' if rc == -9 else ''))
    return summary


def write_text(path: str, text: str) -> None:
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)


def render_summary(machine: dict, steps: List[Step], cost: str) -> str:
    gpu = machine.get('gpu') or 'no GPU (CPU run)'
    lines = [f'# GPU check: {gpu}', '',
             f'{gpu}{" " + machine["capability"] if machine.get("capability") else ""}'
             f'{", %s GiB" % machine["gpu_memory_gib"] if machine.get("gpu_memory_gib") else ""}; '
             f'torch {machine.get("torch")}, CUDA {machine.get("cuda")}, cuDNN {machine.get("cudnn")}, '
             f'NCCL {machine.get("nccl")}, Python {machine.get("python")}, {machine.get("cpus")} CPUs, '
             f'distributed backend {machine.get("dist_backend")}; {time.strftime("%Y-%m-%d %H:%M")}', '',
             '| step | result | time (s) | limit (s) | details |', '|---|---|---|---|---|']
    for s in steps:
        detail = (s.detail.splitlines() or [''])[0][:300].replace('|', '\\|')
        lines.append(f'| {s.name} | {s.status} | {s.seconds:.0f} | {s.limit:.0f} | {detail} |')
    return '\n'.join(lines) + '\n' + (f'\n{cost}' if cost else '')


def run_step(step: Step, python: str, machine: dict, quick: bool, work: str) -> str:
    """Runs one of the steps after setup; returns its part of the summary (the cost table)."""
    if step.name == 'tests':
        step.finish('passed', run_tests(step, python, quick))
        return ''
    if step.name == 'train':
        step.facts = gpu_check_train.train_and_resume(step.run, python, osp.dirname(python), REPO,
                                                      osp.join(work, 'train_step'), quick, step.deadline)
        failed = step.facts.pop('failed')
        step.finish('failed' if failed else 'passed', '; '.join(failed) if failed else ', '.join(
            f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in step.facts.items()))
        return ''
    step.facts, cost = gpu_check_bench.run_benchmarks(step.run, python, osp.dirname(python), work, quick,
                                                      bool(machine.get('gpu')), step.deadline)
    failed = step.facts['failed']
    step.finish('failed' if failed else 'passed',
                f'failed: {", ".join(failed)}' if failed else f'{", ".join(step.facts["runs"])}: table below')
    return cost


def write_summary(out: str, machine: dict, steps: List[Step], cost: str, started: float) -> str:
    """summary.md and summary.json as they stand (rewritten after every step, so that a run cut
    short still leaves what it found); returns the markdown."""
    summary = render_summary(machine, steps, cost)
    write_text(osp.join(out, 'summary.md'), summary)
    write_text(osp.join(out, 'summary.json'), json.dumps(
        {'machine': machine, 'platform': platform.platform(), 'seconds': time.monotonic() - started,
         'steps': {s.name: {'status': s.status, 'seconds': s.seconds, 'detail': s.detail} for s in steps},
         'facts': {s.name: s.facts for s in steps[1:]}}, indent=1, default=str))
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='scripts/gpu_check.sh', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--wheels', default=osp.join(REPO, '.whl'), help='wheel folder (default: .whl)')
    parser.add_argument('--out', default=os.environ.get('OUT') or osp.join(REPO, 'results', 'gpu_check'),
                        help='results folder (default: $OUT, else results/gpu_check)')
    parser.add_argument('--quick', action='store_true', help='tiny sizes, few iterations (CPU without CUDA)')
    parser.add_argument('--work', default=None, help='work folder (default: a temporary one, removed at the end)')
    parser.add_argument('--fresh-env', action='store_true', help='install every wheel of --wheels into a new '
                        'virtual environment even when nothing is missing (checks the install itself)')
    parser.add_argument('--steps', nargs='+', default=['tests', 'train', 'benchmark'],
                        choices=['tests', 'train', 'benchmark'], help='steps to run (default: all)')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    work = osp.abspath(args.work) if args.work else tempfile.mkdtemp(prefix='gpu_check_')
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1', GPU_CHECK_WORK=work)
    limits = QUICK_LIMITS if args.quick else LIMITS
    started = time.monotonic()
    machine, python, cost = {}, None, ''

    setup = Step('setup', args.out, limits['setup'], env)
    steps = [setup]
    try:
        python = gpu_check_env.find_python(sys.executable, work, REPO, osp.abspath(args.wheels), args.fresh_env,
                                           setup.log)
        rc, out = setup.run([python, PROBE], name='imports and machine', cwd=work)
        if rc != 0:
            raise RuntimeError(f'{python} cannot import what the check needs: {out.strip().splitlines()[-1:]}')
        machine = dict(json.loads(out.strip().splitlines()[-1]), python_path=python)
        setup.finish('passed', f'{python}: basicsr {machine["basicsr"]}, lmdb {machine["lmdb"]}, '
                               f'plugin {machine["plugin"]}')
    except Exception as err:  # noqa: BLE001  (the summary reports it; nothing else can run)
        setup.finish('failed', f'{type(err).__name__}: {err}')
        python = None
    summary = write_summary(args.out, machine, steps, cost, started)

    for name in args.steps:
        step = Step(name, args.out, limits[name], env)
        steps.append(step)
        if python is None:
            step.finish('skipped', 'no usable Python (see setup)')
        else:
            try:
                cost = run_step(step, python, machine, args.quick, work) or cost
            except Exception as err:  # noqa: BLE001  (reported; the next step runs all the same)
                step.finish('failed', f'{type(err).__name__}: {err}')
        summary = write_summary(args.out, machine, steps, cost, started)
    print(f'\n{summary}\nTotal {time.monotonic() - started:.0f} s; logs in {args.out}/')
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(s.status == 'passed' for s in steps) else 1


if __name__ == '__main__':
    sys.exit(main())
