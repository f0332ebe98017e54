"""A non-finite loss on one rank of a 2-process torchrun (gloo) run: every rank skips that step
together (no hang in DDP's all-reduce), the log names the rank, iteration and files, and the
weights stay identical on both ranks."""
import os
import re
import subprocess
from pathlib import Path

from helpers import tiny_train_options, write_smooth_images, write_yaml
from job_control import torchrun

LAUNCHER = Path(__file__).with_name('nan_rank_launcher.py')


def test_nan_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    write_smooth_images(tmp_path / 'train', 4)
    opt = tiny_train_options('nan_rank', str(tmp_path / 'train'), str(tmp_path / 'train'),
                             type='NaNOnRankOneDataset')
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt.pop('val')
    opt['train']['total_iter'] = 6
    opt['logger']['save_checkpoint_freq'] = 6
    opt_path = write_yaml(tmp_path / 'train.yml', opt)
    out = tmp_path / 'out'
    # Sample 4 of rank 1 (0-based), batch 2: the batch of iteration 3.
    env = dict(os.environ, OMP_NUM_THREADS='1', POISONED_SAMPLE='4')
    console_path = tmp_path / 'console.txt'
    with open(console_path, 'w') as console_file:
        proc = subprocess.Popen(
            torchrun(2, str(LAUNCHER), 'train', '-opt', str(opt_path), '--launcher', 'pytorch', '--root', str(out)),
            cwd=tmp_path, env=env, stdout=console_file, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=120)  # takes ~20 s; a hang in the all-reduce fails here
        except subprocess.TimeoutExpired:
            proc.terminate()  # torchrun passes SIGTERM on to the ranks, then kills them
            proc.wait(timeout=60)
            raise AssertionError('the run hung: ' + console_path.read_text()[-3000:])
    console = console_path.read_text()
    assert proc.returncode == 0, console[-4000:]
    log = next((out / 'experiments' / 'nan_rank').glob('train_nan_rank_*.log')).read_text()

    # Rank 0 (log file) and rank 1 (stderr) each report skipping the same iteration, naming the
    # poisoned rank and its batch files; no other iteration is skipped.
    skips = re.compile(r'Non-finite loss at iter (\d+) on rank\(s\) \[1\] of 2 \(rank 1: loss nan, batch files: '
                       r'([^;)]+)\); step skipped on every rank \(rank (\d) skips it too\)')
    assert [(it, r) for it, _, r in skips.findall(log)] == [('3', '0')], log[-3000:]
    assert sorted(set((it, r) for it, _, r in skips.findall(console))) == [('3', '0'), ('3', '1')], console[-4000:]
    files = skips.findall(log)[0][1].split(', ')
    assert len(files) == 2 and all(Path(f).parent == tmp_path / 'train' and Path(f).is_file() for f in files)

    losses = {int(i): float(v) for i, v in re.findall(r'iter:\s+(\d+),.*l_pix: (\S+)', log)}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert [i for i, v in losses.items() if v != v] == [3]  # NaN only where skipped
    assert re.search(r'Weights identical on all 2 ranks at iter 6 ', log), log[-2000:]
    assert 'DIFFER' not in log
    assert (out / 'experiments' / 'nan_rank' / 'models' / 'net_g_6.pth').is_file()
