"""A run killed with SIGKILL mid-training resumes from its last complete state, from another cwd."""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussiansr_plugin.utils.resume import capture_rng_states, restore_rng_states
from helpers import tiny_train_options, write_smooth_images, write_yaml
from test_distributed import _free_port

BIN = Path(sys.executable).parent


def test_rng_states_round_trip_through_a_saved_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.save(capture_rng_states(), tmp_path / 'rng.state')
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    restore_rng_states(torch.load(tmp_path / 'rng.state', weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def _losses(log: str):
    return {int(i): (float(lr), float(loss)) for i, lr, loss in
            re.findall(r'iter:\s+(\d+), lr:\(([\d.e+-]+),\)\].*l_pix: ([\d.e+-]+)', log)}


def _tree(pid: int):
    """``pid`` and its descendants (Linux /proc): a torchrun job is torchrun, its ranks (in
    sessions of their own) and their data workers."""
    parents = {}
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


def _kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL for the whole job at one moment, as a lost node: frozen first, so that no process
    writes while the others are being killed."""
    tree = _tree(proc.pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in tree:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    proc.wait()


# Under torchrun one (persistent, spawned) worker per rank: each spawned worker imports torch and
# BasicSR, the cost of this test; two workers in one process cover several workers interleaving.
@pytest.mark.parametrize('ranks, workers', [(1, 0), (1, 2), (2, 1)],
                         ids=['in-process', '2-workers', 'torchrun-2-ranks-1-worker-each'])
def test_sigkill_then_auto_resume_continues_from_the_last_state(tmp_path, ranks, workers):
    write_smooth_images(tmp_path / 'train', 4)
    write_smooth_images(tmp_path / 'val', 1, size=(30, 38), seed=1)
    # 4 iterations per epoch on each rank: the save at iteration 14 falls mid-epoch, and the kill
    # after iteration 17 leaves the resumed run an epoch boundary (16) to cross and 11 iterations
    # of margin before the next save (28) on a fast machine.
    opt = tiny_train_options('killed_run', str(tmp_path / 'train'), str(tmp_path / 'val'),
                             num_worker_per_gpu=workers, dataset_enlarge_ratio=2 * ranks)
    if ranks > 1:  # spawned workers start slowly: once per run, and kept across epochs
        opt['datasets']['train']['persistent_workers'] = True
    opt['train'].update(total_iter=40,  # the next save (28) and the end stay well after the kill (17)
                        scheduler=dict(type='MultiStepLR', milestones=[7], gamma=0.5))
    opt['logger'].update(save_checkpoint_freq=14)
    opt['val'].update(val_freq=1000, save_img=False)
    opt_path = write_yaml(tmp_path / 'train.yml', opt)
    out = tmp_path / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [str(BIN / 'basicsr'), 'train', '-opt', str(opt_path), '--root', str(out)]
    if ranks > 1:
        command = [str(BIN / 'torchrun'), f'--nproc_per_node={ranks}', f'--master_port={_free_port()}',
                   *command, '--launcher', 'pytorch']
    states = out / 'experiments' / 'killed_run' / 'training_states'
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = out / 'experiments' / 'killed_run'
    deadline = time.time() + 240

    def logged_iters():
        logs = list(exp.glob('train_killed_run_*.log'))
        return _losses(logs[0].read_text()) if logs else {}

    while 17 not in logged_iters() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.1))  # a random moment after iteration 17, before the save at 28
    _kill_job(proc)
    saved = sorted(int(p.stem) for p in states.glob('*.state'))
    assert saved == [14]
    for path in states.glob('*.state'):  # every state under a final name is complete
        torch.load(path, map_location='cpu', weights_only=False)
    first_log = next((out / 'experiments' / 'killed_run').glob('train_killed_run_*.log')).read_text()

    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    if ranks > 1:
        command[2] = f'--master_port={_free_port()}'
    result = subprocess.run(command + ['--auto_resume'], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logs = sorted((out / 'experiments' / 'killed_run').glob('train_killed_run_*.log'))
    resumed_log = logs[-1].read_text()
    assert re.search(rf'Resuming training from epoch: \d+, iter: {saved[-1]}\.', resumed_log)
    assert f'net_g_{saved[-1]}.pth' in resumed_log  # weights (and EMA) of the same iteration
    before, after = _losses(first_log), _losses(resumed_log)
    assert min(after) == saved[-1] + 1 and max(after) == opt['train']['total_iter']
    # Scheduler state restored: the lr halved at iter 7 stays halved after the resume.
    assert after[saved[-1] + 1][0] == before[7][0] / 2
    # Weights, optimizer, data position, RNG states and per-sample seeds restored: the resumed
    # run repeats the killed run's iterations 15.. exactly (same batches, same random crops and
    # scales, drawn in data workers or not, same Gumbel noise), across an epoch boundary, then
    # goes on.
    overlap = sorted(set(before) & set(after))
    assert overlap[0] == 15 and len(overlap) >= 3
    assert [after[i] for i in overlap] == [before[i] for i in overlap]
    assert not list(out.rglob('*.tmp*'))
    assert (out / 'experiments' / 'killed_run' / 'models' / 'net_g_latest.pth').is_file()
    if ranks > 1:
        assert 'DIFFER' not in resumed_log
