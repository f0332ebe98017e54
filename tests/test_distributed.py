"""Two CPU processes under torchrun (gloo): identical weights and sharded validation that equals
a single-process evaluation of the same checkpoint."""
import os
import re
import subprocess

from helpers import tiny_test_options, tiny_train_options, write_smooth_images, write_yaml
from job_control import BIN, torchrun


def _psnr_lines(log: str, name: str):
    return [float(v) for v in re.findall(rf'Validation {re.escape(name)}\n\s+# psnr: ([\d.]+)', log)]


def test_torchrun_two_cpu_ranks_train_in_sync_and_validate_like_one_process(tmp_path):
    write_smooth_images(tmp_path / 'train', 4)
    write_smooth_images(tmp_path / 'val', 5, size=(30, 38), seed=1)  # odd count: uneven shards
    opt = tiny_train_options('dist_run', str(tmp_path / 'train'), str(tmp_path / 'val'))
    opt['train']['ema_decay'] = 0
    opt['val']['save_img'] = False
    opt_path = write_yaml(tmp_path / 'train.yml', opt)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = tmp_path / 'out'
    result = subprocess.run(
        torchrun(2, str(BIN / 'basicsr'), 'train', '-opt', str(opt_path), '--launcher', 'pytorch', '--root', str(out)),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exp = out / 'experiments' / 'dist_run'
    log = next(exp.glob('train_dist_run_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    assert re.search(r'Weights identical on all 2 ranks at iter 4 ', log), log[-2000:]
    assert 'DIFFER' not in log
    dist_psnr = _psnr_lines(log, 'tiny_x3.5')[-1]

    checkpoint = exp / 'models' / 'net_g_latest.pth'
    test_opt = tiny_test_options('single', str(checkpoint), str(tmp_path / 'val'), 3.5)
    test_opt['path']['param_key_g'] = 'params'
    test_opt['datasets']['test_1']['test_y_channel'] = False
    test_opt['datasets']['test_1']['name'] = 'tiny_x3.5'
    result = subprocess.run([str(BIN / 'basicsr'), 'test', '-opt', str(write_yaml(tmp_path / 't.yml', test_opt)),
                             '--root', str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    single_log = next((out / 'results' / 'single').glob('test_single_*.log')).read_text()
    assert _psnr_lines(single_log, 'tiny_x3.5') == [dist_psnr]
