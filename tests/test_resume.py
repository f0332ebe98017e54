"""A run killed with SIGKILL mid-training resumes from its last complete state, from another cwd."""
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from gaussiansr_plugin.tools import make_benchmark_lr
from gaussiansr_plugin.utils.resume import capture_rng_states, restore_rng_states
from helpers import build_tiny_train_model, tiny_train_options, write_smooth_images, write_yaml
from job_control import BIN, FAULT_LAUNCHER, fault_env, kill_job, run_job, torchrun, wait_until_stopped
from test_host_models import host_options


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


def test_the_models_save_writes_basicsr_training_state_with_the_rng_states(tmp_path):
    """``model.save`` writes BasicSR's training state plus ``rng_states`` (one entry per rank)
    that restore this process's RNGs, through torch's own ``save`` (BasicSR's torch is not
    swapped), and no state for the final save (iteration -1), as BasicSR."""
    from basicsr.models import base_model
    assert base_model.torch is torch
    model = build_tiny_train_model(tmp_path, 'state')
    torch.manual_seed(4)
    model.save(epoch=1, current_iter=3)
    expected = torch.rand(3)
    state = torch.load(tmp_path / '3.state', weights_only=False)
    assert list(state) == ['epoch', 'iter', 'optimizers', 'schedulers', 'rng_states']
    assert (state['epoch'], state['iter'], len(state['optimizers']), len(state['schedulers'])) == (1, 3, 1, 1)
    assert len(state['rng_states']) == 1
    restore_rng_states(state['rng_states'][0])
    assert torch.equal(torch.rand(3), expected)
    model.save(epoch=-1, current_iter=-1)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ['3.state', 'net_g_3.pth', 'net_g_latest.pth']


def _losses(log: str):
    return {int(i): (float(lr), float(loss)) for i, lr, loss in
            re.findall(r'iter:\s+(\d+), lr:\(([\d.e+-]+),\)\].*l_pix: ([\d.e+-]+)', log)}


# Under torchrun one (persistent, spawned) worker per rank: each spawned worker imports torch and
# BasicSR, the cost of this test; two workers in one process cover several workers interleaving.
@pytest.mark.parametrize('ranks, workers', [(1, 0), (1, 2), (2, 1)],
                         ids=['in-process', '2-workers', 'torchrun-2-ranks-1-worker-each'])
def test_sigkill_then_auto_resume_continues_from_the_last_state(tmp_path, ranks, workers):
    write_smooth_images(tmp_path / 'train', 4)
    write_smooth_images(tmp_path / 'val', 1, size=(30, 38), seed=1)
    # 4 iterations per epoch on each rank: the save at iteration 14 falls mid-epoch, and the job
    # is stopped and killed at the start of iteration 18 (17 complete and logged), which leaves the
    # resumed run an epoch boundary (16) to cross before it repeats the killed run's 15..17.
    opt = tiny_train_options('killed_run', str(tmp_path / 'train'), str(tmp_path / 'val'),
                             num_worker_per_gpu=workers, dataset_enlarge_ratio=2 * ranks)
    if ranks > 1:  # spawned workers start slowly: once per run, and kept across epochs
        opt['datasets']['train']['persistent_workers'] = True
    opt['train'].update(total_iter=30, scheduler=dict(type='MultiStepLR', milestones=[7], gamma=0.5))
    opt['logger'].update(save_checkpoint_freq=14)
    opt['val'].update(val_freq=1000, save_img=False)
    opt_path = write_yaml(tmp_path / 'train.yml', opt)
    out = tmp_path / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    args = ['train', '-opt', str(opt_path), '--root', str(out)]
    if ranks > 1:
        killed = torchrun(ranks, str(FAULT_LAUNCHER), *args, '--launcher', 'pytorch')
        command = torchrun(ranks, str(BIN / 'basicsr'), *args, '--launcher', 'pytorch')
    else:
        killed = [sys.executable, str(FAULT_LAUNCHER), *args]
        command = [str(BIN / 'basicsr'), *args]
    states = out / 'experiments' / 'killed_run' / 'training_states'
    proc = subprocess.Popen(killed, cwd=tmp_path, env=fault_env(tmp_path / 'fault', 'iter:18'),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_stopped(proc, tmp_path / 'fault', range(ranks))
    finally:
        kill_job(proc)
    saved = sorted(int(p.stem) for p in states.glob('*.state'))
    assert saved == [14]
    for path in states.glob('*.state'):  # every state under a final name is complete
        torch.load(path, map_location='cpu', weights_only=False)
    first_log = next((out / 'experiments' / 'killed_run').glob('train_killed_run_*.log')).read_text()

    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    run_job(command + ['--auto_resume'], elsewhere, env)
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
    assert max(before) == 17  # stopped at the start of 18, on every machine
    overlap = sorted(set(before) & set(after))
    assert overlap == [15, 16, 17]
    assert [after[i] for i in overlap] == [before[i] for i in overlap]
    assert not list(out.rglob('*.tmp*'))
    assert (out / 'experiments' / 'killed_run' / 'models' / 'net_g_latest.pth').is_file()
    if ranks > 1:
        assert 'DIFFER' not in resumed_log


def _stop_kill_resume_and_reference(tmp_path, opt, fault_at, saved):
    """Runs ``opt`` to its end (the reference), and again stopped at ``fault_at`` (tests/
    fault_launcher.py), killed, checked to hold the training states ``saved`` and resumed with
    ``--auto_resume``; asserts the resumed run's final weights (and EMA weights) equal the
    reference's, tensor for tensor. Returns the losses per iteration of the killed, resumed and
    reference runs and the resumed run's log."""
    name = opt['name']
    args = ['train', '-opt', str(write_yaml(tmp_path / 'train.yml', opt))]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    reference = tmp_path / 'reference'
    run_job([str(BIN / 'basicsr'), *args, '--root', str(reference)], tmp_path, env)
    out = tmp_path / 'out'
    proc = subprocess.Popen([sys.executable, str(FAULT_LAUNCHER), *args, '--root', str(out)], cwd=tmp_path,
                            env=fault_env(tmp_path / 'fault', fault_at), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_stopped(proc, tmp_path / 'fault', [0])
    finally:
        kill_job(proc)
    exp = out / 'experiments' / name
    assert sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state')) == saved
    run_job([str(BIN / 'basicsr'), *args, '--root', str(out), '--auto_resume'], tmp_path, env)

    killed_log, resumed_log = (p.read_text() for p in sorted(exp.glob(f'train_{name}_*.log')))
    reference_log = next((reference / 'experiments' / name).glob(f'train_{name}_*.log')).read_text()
    final, reference_final = (torch.load(root / 'experiments' / name / 'models' / 'net_g_latest.pth',
                                         map_location='cpu', weights_only=True) for root in (out, reference))
    for key in ('params', 'params_ema'):
        assert (key in final) == (key in reference_final), key
        if key in final:
            assert final[key].keys() == reference_final[key].keys()
            assert all(torch.equal(final[key][k], reference_final[key][k]) for k in final[key]), key
    return _losses(killed_log), _losses(resumed_log), _losses(reference_log), resumed_log


def test_sigkill_then_auto_resume_of_basicsr_edsr_ends_like_an_uninterrupted_run(tmp_path):
    data = tmp_path / 'paired'
    write_smooth_images(data / 'HR', 4, size=(48, 48))
    assert make_benchmark_lr.main(['-i', str(data / 'HR'), '--scales', '2']) == 0
    # options/train_edsr_x2.yml (BasicSR's EDSR, SRModel, PairedImageDataset) with a tiny EDSR, on
    # the CPU, without data workers: BasicSR's own datasets draw their crops from the process's
    # RNG, which a training state restores. (In data workers they draw from RNGs that BasicSR's
    # worker_init_fn reseeds alike every epoch: a run resumed mid-epoch finishes, with other crops.)
    # 4 iterations per epoch: the save at 6 falls mid-epoch, the stop at the start of 10 after a boundary.
    opt = host_options(data, 'EDSR', workers=0, total_iter=12)
    opt['name'] = 'edsr_killed'
    opt['datasets']['train']['dataset_enlarge_ratio'] = 2
    opt['logger']['save_checkpoint_freq'] = 6
    killed, resumed, expected, resumed_log = _stop_kill_resume_and_reference(tmp_path, opt, 'iter:10', [6])
    assert re.search(r'Resuming training from epoch: \d+, iter: 6\.', resumed_log)
    assert max(killed) == 9 and sorted(resumed) == list(range(7, 13))
    assert killed == {i: expected[i] for i in range(1, 10)}
    assert resumed == {i: expected[i] for i in range(7, 13)}  # 7..9 repeated exactly, then on to the end


# With data workers, the loader iterator BasicSR's prefetcher creates when built (and discards:
# the loop's set_epoch(0) and reset() follow) iterates the sampler at once, at its default epoch 0;
# without workers it never does. Before the fix, with 2 workers, the resumed run replayed epoch 0
# from its start: iterations 7.. had other losses than the uninterrupted run's.
@pytest.mark.parametrize('workers', [0, 2], ids=['in-process', '2-workers'])
def test_sigkill_in_the_first_epoch_then_auto_resume_ends_like_an_uninterrupted_run(tmp_path, workers):
    write_smooth_images(tmp_path / 'train', 4)
    # 10 iterations per epoch: the state of iteration 6 is in epoch 0; the run ends in epoch 1.
    opt = tiny_train_options('first_epoch', str(tmp_path / 'train'), str(tmp_path / 'train'),
                             num_worker_per_gpu=workers, dataset_enlarge_ratio=5)
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt.pop('val')
    opt['train']['total_iter'] = 12
    opt['logger']['save_checkpoint_freq'] = 6
    killed, resumed, expected, resumed_log = _stop_kill_resume_and_reference(tmp_path, opt, 'state:6', [6])
    assert re.search(r'Resuming training from epoch: 0, iter: 6\.', resumed_log)
    assert sorted(killed) == list(range(1, 7)) and sorted(resumed) == list(range(7, 13))
    assert {**killed, **resumed} == expected
