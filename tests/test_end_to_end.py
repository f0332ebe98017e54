"""`basicsr train` and `basicsr test` through the console script, on tiny data in a temp dir."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from helpers import tiny_test_options, tiny_train_options, write_smooth_images, write_yaml

BIN = Path(sys.executable).parent


def _run(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('e2e')
    write_smooth_images(root / 'train', 4)
    write_smooth_images(root / 'val', 2, size=(30, 38), seed=1)
    opt = write_yaml(root / 'train.yml', tiny_train_options('tiny_run', str(root / 'train'), str(root / 'val')))
    out = root / 'out'
    result = _run([str(BIN / 'basicsr'), 'train', '-opt', str(opt), '--root', str(out)], cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, out


def test_train_writes_checkpoints_logs_and_validates_every_val_set(trained):
    root, out = trained
    exp = out / 'experiments' / 'tiny_run'
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    assert (exp / 'models' / 'net_g_4.pth').is_file()
    assert (exp / 'training_states' / '4.state').is_file()
    log = next(exp.glob('train_tiny_run_*.log')).read_text()
    assert 'iter:       4' in log
    for val_name in ('tiny_x2', 'tiny_x3.5'):
        assert re.search(rf'Validation {re.escape(val_name)}\n\s+# psnr: \d+\.\d+', log), val_name
        assert re.search(rf'Validation {re.escape(val_name)} against bicubic: psnr [\d.]+ vs bicubic [\d.]+', log)
    # Saved validation images have the HR size of their own val set.
    img = cv2.imread(str(exp / 'visualization' / 'tiny_x3.5' / 'img00_4.png'))
    assert img.shape[:2] == (round(8 * 3.5), round(10 * 3.5))
    assert not list(exp.rglob('*.tmp*'))


def test_test_command_evaluates_a_checkpoint(trained):
    root, out = trained
    checkpoint = out / 'experiments' / 'tiny_run' / 'models' / 'net_g_latest.pth'
    opt = write_yaml(root / 'test.yml', tiny_test_options('tiny_test', str(checkpoint), str(root / 'val'), 2.5))
    result = _run([str(BIN / 'python'), '-m', 'gaussiansr_plugin', 'test', '-opt', str(opt), '--root', str(out)],
                  cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = out / 'results' / 'tiny_test'
    log = next(results.glob('test_tiny_test_*.log')).read_text()
    assert re.search(r'Validation tiny_x2.5\n\s+# psnr: \d+\.\d+', log)
    img = cv2.imread(str(results / 'visualization' / 'tiny_x2.5' / 'img01_tiny_test.png'))
    assert img.shape[:2] == (round(12 * 2.5), round(15 * 2.5))


@pytest.mark.parametrize('change, message', [
    (lambda o: o['datasets']['train'].update(scale_min=3, scale_max=2), 'scale_max'),
    (lambda o: o['network_g'].update(num_kernal=10), 'num_kernal'),
    (lambda o: o.update(scale=4), 'scale'),
    (lambda o: o['val']['metrics']['psnr'].update(type='calculate_psnr'), 'calculate_psnr'),
    (lambda o: o['datasets']['val'].update(dataroot_gt='/no/such/folder'), '/no/such/folder'),
])
def test_bad_options_fail_fast_with_one_line_naming_the_key(tmp_path, change, message):
    write_smooth_images(tmp_path / 'imgs', 1)
    opt = tiny_train_options('bad_run', str(tmp_path / 'imgs'), str(tmp_path / 'imgs'))
    change(opt)
    result = _run([str(BIN / 'basicsr'), 'train', '-opt', str(write_yaml(tmp_path / 'bad.yml', opt)),
                   '--root', str(tmp_path / 'out')], cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith('Option error:') and message in last_line
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'out' / 'experiments').exists()  # failed before any work or folder
