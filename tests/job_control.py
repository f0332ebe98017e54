"""Test-side control of training jobs: torchrun with no port chosen by the test, and a whole-job
SIGKILL at the point where tests/fault_launcher.py stopped the job."""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

BIN = Path(sys.executable).parent
FAULT_LAUNCHER = Path(__file__).with_name('fault_launcher.py')


def torchrun(ranks: int, *args: str) -> List[str]:
    """``torchrun`` for ``ranks`` processes on this machine. ``--standalone``: the rendezvous
    store and the store the ranks share listen on ports the OS assigns at bind time and keeps
    open, so two tests (or two jobs) never race for a port a test picked and released. Loopback
    address: the machine's host name need not resolve."""
    return [str(BIN / 'torchrun'), '--standalone', '--local-addr=127.0.0.1', f'--nproc_per_node={ranks}', *args]


def fault_env(fault_dir: Path, at: str, action: str = 'stop', ranks: str = None) -> Dict[str, str]:
    """Environment of a job run by tests/fault_launcher.py that faults at ``at`` (``iter:N`` or
    ``state:N``) with ``action`` on ``ranks`` (default: all)."""
    fault_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS='1', FAULT_AT=at, FAULT_ACTION=action, FAULT_DIR=str(fault_dir))
    if ranks is not None:
        env['FAULT_RANKS'] = ranks
    return env


def run_job(command: Sequence[str], cwd: Path, env: Dict[str, str], timeout: float = 400) -> str:
    """Runs a job to its end and returns its console output; fails with the output's end if it
    exits non-zero or outlives ``timeout`` (then the whole job is killed: torchrun's ranks run in
    sessions of their own and would outlive torchrun)."""
    with tempfile.NamedTemporaryFile('w', dir=cwd, prefix='console-', suffix='.txt', delete=False) as out:
        console = Path(out.name)
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_job(proc)
            raise AssertionError(f'timed out after {timeout} s: ' + console.read_text()[-4000:])
    text = console.read_text()
    assert proc.returncode == 0, text[-6000:]
    return text


def process_tree(pid: int) -> List[int]:
    """``pid`` and its descendants (Linux /proc): a torchrun job is torchrun, its ranks (in
    sessions of their own) and their data workers."""
    parents: Dict[int, List[int]] = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(parents.get(tree[-1], []))
    return tree


def _state(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return 'gone'


def wait_until_stopped(proc: subprocess.Popen, fault_dir: Path, ranks: Sequence[int], timeout: float = 300) -> None:
    """Waits until every rank in ``ranks`` has stopped itself at its fault point (its marker
    written and its process in state T). Fails if the job ends first: then it ran past the point."""
    deadline = time.monotonic() + timeout
    while True:
        markers = [fault_dir / f'stopped-{rank}' for rank in ranks]
        if all(m.is_file() and _state(int(m.read_text())) == 'T' for m in markers):
            return
        assert proc.poll() is None, f'the job ended (rc {proc.returncode}) before it reached its fault point'
        assert time.monotonic() < deadline, 'the job did not reach its fault point'
        time.sleep(0.05)  # polls a condition; no outcome depends on this interval


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL for the whole job at one moment, as a lost node: frozen first, so that no process
    writes while the others are being killed."""
    tree = process_tree(proc.pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in tree:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    proc.wait()
