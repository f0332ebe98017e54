"""Recovery without a person: under ``torchrun --max-restarts=1 ... --auto_resume``, one rank of
two dies (SIGKILL) right after the training state of iteration 20 is saved; torchrun restarts the
group, which resumes from that state and finishes; the final weights equal an uninterrupted
run's, tensor for tensor."""
import os
import re
import signal

import torch

from helpers import tiny_train_options, write_smooth_images, write_yaml
from job_control import BIN, FAULT_LAUNCHER, fault_env, run_job, torchrun


def _losses(log: str):
    return {int(i): float(v) for i, v in re.findall(r'iter:\s+(\d+),.*l_pix: (\S+)', log)}


def test_torchrun_restarts_a_lost_rank_and_the_run_ends_as_if_never_interrupted(tmp_path):
    write_smooth_images(tmp_path / 'train', 4)
    opt = tiny_train_options('elastic', str(tmp_path / 'train'), str(tmp_path / 'train'))
    opt['network_g'].update(num_feat=8, num_block=1)
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt.pop('val')
    opt['train']['total_iter'] = 40
    opt['logger']['save_checkpoint_freq'] = 10
    opt_path = write_yaml(tmp_path / 'train.yml', opt)
    args = ['train', '-opt', str(opt_path), '--launcher', 'pytorch']

    reference = tmp_path / 'reference'
    run_job(torchrun(2, str(BIN / 'basicsr'), *args, '--root', str(reference)), tmp_path,
            dict(os.environ, OMP_NUM_THREADS='1'))
    elastic = tmp_path / 'elastic'
    console = run_job(torchrun(2, '--max-restarts=1', str(FAULT_LAUNCHER), *args, '--root', str(elastic),
                               '--auto_resume'), tmp_path, fault_env(tmp_path / 'fault', 'state:20', 'kill', ranks='1'))

    # Rank 1 died of SIGKILL in the first attempt; torchrun restarted the group once.
    assert re.search(rf'failed \(exitcode: -{int(signal.SIGKILL)}\) local_rank: 1 ', console), console[-4000:]
    exp = elastic / 'experiments' / 'elastic'
    first_log, resumed_log = (p.read_text() for p in sorted(exp.glob('train_elastic_*.log')))
    first, resumed = _losses(first_log), _losses(resumed_log)
    assert max(first) == 20  # the first attempt ended with the state of iteration 20 saved ...
    assert re.search(r'Resuming training from epoch: \d+, iter: 20\.', resumed_log)  # ... and the second took it up
    assert min(resumed) == 21 and max(resumed) == 40
    assert sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state')) == [10, 20, 30, 40]

    # Exact resume: every iteration's loss and the final weights (and EMA weights) are the
    # uninterrupted run's.
    reference_log = next((reference / 'experiments' / 'elastic').glob('train_elastic_*.log')).read_text()
    assert {**first, **resumed} == _losses(reference_log)
    final = torch.load(exp / 'models' / 'net_g_40.pth', map_location='cpu', weights_only=True)
    expected = torch.load(reference / 'experiments' / 'elastic' / 'models' / 'net_g_40.pth', map_location='cpu',
                          weights_only=True)
    for key in ('params', 'params_ema'):
        assert final[key].keys() == expected[key].keys()
        assert all(torch.equal(final[key][name], expected[key][name]) for name in expected[key]), key
    assert 'DIFFER' not in resumed_log
