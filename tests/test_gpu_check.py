"""scripts/gpu_check.sh: the one-command GPU check runs end to end with --quick (on the CPU here),
so that it works the day a GPU is at hand."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'scripts' / 'gpu_check.sh'
STEPS = ('setup', 'tests', 'train', 'benchmark')
# What a device run returns: at most 8 files from its results folder.
RESULT_FILES = ['benchmark.log', 'setup.log', 'summary.json', 'summary.md', 'tests.log', 'train.log']


def _run(*args: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != 'OUT'}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS='1')
    return subprocess.run(['bash', str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_quick_check_runs_every_step_and_summarizes_them(tmp_path):
    out = tmp_path / 'results'
    result = _run('--quick', '--out', str(out), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == RESULT_FILES
    summary = json.loads((out / 'summary.json').read_text())
    assert {name: step['status'] for name, step in summary['steps'].items()} == dict.fromkeys(STEPS, 'passed')
    assert summary['machine']['gpu'] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    assert summary['machine']['torch'] == torch.__version__
    # The killed run was resumed from its checkpoint and repeated the killed run's losses.
    train = summary['facts']['train']
    assert train['compared_losses'] >= 2 and train['loss_max_rel_diff'] <= 2e-3
    # Both cost runs measured the three methods at both precisions; training speed too.
    for run in ('table3', 'x4_1024'):
        rows = summary['facts']['benchmark'][f'{run}_speed']
        assert {(r['method'], r['precision']) for r in rows} >= {
            (m, p) for m in ('GaussianSR', 'LIIF', 'MetaSR') for p in ('fp32', 'bf16')}
        assert all(float(r['latency_ms']) > 0 and r['latency_stat'] == 'mean' for r in rows)
    assert {r['method'] for r in summary['facts']['benchmark']['train_speed']} == {'GaussianSR', 'LIIF', 'MetaSR'}
    printed = (out / 'summary.md').read_text()
    assert printed in result.stdout and '| train | passed |' in printed and '(frames/s)' in printed


def test_a_failed_setup_is_reported_and_the_steps_skipped(tmp_path):
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    with zipfile.ZipFile(wheels / 'lmdb-9.9.9-py3-none-any.whl', 'w') as whl:  # no metadata: pip refuses it
        whl.writestr('lmdb/__init__.py', '')
    out = tmp_path / 'results'
    result = _run('--quick', '--fresh-env', '--wheels', str(wheels), '--out', str(out), cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    steps = json.loads((out / 'summary.json').read_text())['steps']
    assert steps['setup']['status'] == 'failed' and 'lmdb-9.9.9' in steps['setup']['detail']
    assert [steps[name]['status'] for name in STEPS[1:]] == ['skipped'] * 3
    assert '| setup | failed |' in result.stdout
