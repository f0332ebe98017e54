"""BasicSR's own models train under the plugin as they do without it (issue 17, item 1).

The plugin patches BasicSR's pipeline for every model (atomic checkpoints, exact resume, per-sample
keys from the train sampler); BasicSR's ``EDSR`` and ``MSRResNet`` with ``SRModel`` and
``PairedImageDataset`` must train through ``basicsr train`` exactly as BasicSR trains them alone.
"""
import csv
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from basicsr.data.data_sampler import EnlargedSampler
from gaussiansr_plugin.tools import make_benchmark_lr
from gaussiansr_plugin.utils import sample_keys
from gaussiansr_plugin.utils.sample_keys import SampleKey
from helpers import tiny_train_options, write_smooth_images, write_yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_HOST_NETS = {
    'EDSR': dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2),
    'MSRResNet': dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2),
}
# BasicSR's train_pipeline with only compat.py's stack fixes (needed to import basicsr at all on
# today's torchvision), loaded as a file: the plugin package, its features and classes, stay out.
BARE_BASICSR_TRAIN = '''
import importlib.util, sys
spec = importlib.util.spec_from_file_location('bare_compat', sys.argv[1])
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
compat.apply()
from basicsr.train import train_pipeline
opt_file, root = sys.argv[2:4]
sys.argv = ['train', '-opt', opt_file]
train_pipeline(root)
assert not any(name.startswith('gaussiansr_plugin') for name in sys.modules), 'the plugin was imported'
'''


def _run(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def paired(tmp_path_factory) -> Path:
    """A benchmark-style set: ``HR/`` and ``LR_bicubic/X2/{stem}x2.png`` (MATLAB bicubic)."""
    root = tmp_path_factory.mktemp('paired')
    write_smooth_images(root / 'HR', 4, size=(48, 48))
    assert make_benchmark_lr.main(['-i', str(root / 'HR'), '--scales', '2']) == 0
    return root


def host_options(data: Path, net: str, workers: int = 0, total_iter: int = 4):
    """``options/train_edsr_x2.yml`` (SRModel, PairedImageDataset, its recipe) on tiny data and a tiny
    ``net``, on the CPU."""
    opt = yaml.safe_load((REPO / 'options' / 'train_edsr_x2.yml').read_text())
    opt.update(name=f'{net}_host', num_gpu=0)
    paths = dict(dataroot_gt=str(data / 'HR'), dataroot_lq=str(data / 'LR_bicubic' / 'X2'))
    opt['datasets']['train'].update(paths, gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=workers)
    opt['datasets']['val'].update(paths)
    opt['network_g'] = dict(opt['network_g'], **TINY_HOST_NETS[net]) if net == 'EDSR' else TINY_HOST_NETS[net]
    opt['train']['total_iter'] = total_iter
    opt['val']['val_freq'] = 1000  # validated once, at the end of training
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def _final_weights(root: Path, name: str):
    return torch.load(root / 'experiments' / name / 'models' / 'net_g_latest.pth', weights_only=True)['params']


def _losses(root: Path, name: str):
    log = next((root / 'experiments' / name).glob(f'train_{name}_*.log')).read_text()
    return [(int(i), float(loss)) for i, loss in re.findall(r'iter:\s+(\d+), lr:.*l_pix: ([\d.e+-]+)', log)], log


def test_sample_keys_are_the_plain_indices_to_every_other_dataset():
    key = SampleKey(3, seed=12345)
    items = list(range(10, 20))
    assert items[key] == 13 and torch.arange(10, 20)[key].item() == 13
    assert key == 3 and hash(key) == hash(3) and {3: 'x'}[key] == 'x'
    assert (str(key), repr(key), f'{key:03d}', '%d' % key) == ('3', '3', '003', '3')
    assert key + 1 == 4 and type(key + 1) is int and key % 2 == 1
    # Through a data worker's queue (pickled) and copies, the seed travels with the index.
    for copy in (pickle.loads(pickle.dumps(key)), pickle.loads(pickle.dumps([key]))[0]):
        assert type(copy) is SampleKey and copy == 3 and copy.seed == 12345


def test_sampler_yields_the_same_indices_as_basicsr_with_a_run_seed():
    dataset = list(range(7))
    sampler = EnlargedSampler(dataset, num_replicas=2, rank=1, ratio=3)
    sampler.set_epoch(5)
    sample_keys.set_run_seed(0)
    try:
        keys = list(sampler)
    finally:
        sample_keys.set_run_seed(None)
    plain = list(sampler)
    assert all(type(k) is SampleKey for k in keys) and all(type(i) is int for i in plain)
    assert keys == plain and len({k.seed for k in keys}) == len(keys)


@pytest.fixture(scope='module')
def plugin_train(paired, tmp_path_factory):
    """``basicsr train`` of a tiny host net (run once per net and worker count in this module):
    returns the option file and the run's root."""
    runs = {}

    def train(net: str, workers: int):
        if (net, workers) not in runs:
            root = tmp_path_factory.mktemp(f'{net}_{workers}')
            opt_file = write_yaml(root / f'{net}.yml', host_options(paired, net, workers))
            _run([str(BIN / 'basicsr'), 'train', '-opt', str(opt_file), '--root', str(root / 'plugin')], cwd=root)
            runs[net, workers] = opt_file, root
        return runs[net, workers]
    return train


@pytest.mark.parametrize('workers', [0, 2])
@pytest.mark.parametrize('net', list(TINY_HOST_NETS))
def test_basicsr_train_of_a_host_model_matches_basicsr_alone(plugin_train, net, workers):
    """``basicsr train`` of BasicSR's SRModel + PairedImageDataset gives the very weights BasicSR's
    own train_pipeline gives without the plugin (same seed; with data workers too)."""
    opt_file, root = plugin_train(net, workers)
    _run([sys.executable, '-c', BARE_BASICSR_TRAIN, str(REPO / 'gaussiansr_plugin' / 'compat.py'), str(opt_file),
          str(root / 'bare')], cwd=root)
    name = f'{net}_host'
    (losses, log), (bare_losses, bare_log) = _losses(root / 'plugin', name), _losses(root / 'bare', name)
    assert [i for i, _ in losses] == [1, 2, 3, 4] and losses == bare_losses
    validated = re.findall(r'Validation Set5\n\s+# psnr: ([\d.]+)', log)
    assert validated and validated == re.findall(r'Validation Set5\n\s+# psnr: ([\d.]+)', bare_log)
    ours, theirs = _final_weights(root / 'plugin', name), _final_weights(root / 'bare', name)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    exp = root / 'plugin' / 'experiments' / name
    at_2 = torch.load(exp / 'models' / 'net_g_2.pth', weights_only=True)['params']
    assert not all(torch.equal(ours[k], at_2[k]) for k in ours)  # iterations 3 and 4 did train
    state = torch.load(exp / 'training_states' / '4.state', weights_only=False)
    assert state['iter'] == 4 and 'rng_states' in state  # our exact-resume record, for host models too
    # BasicSR's keys, and beside them only that record (EDSR has no arch options to save).
    bare_exp = root / 'bare' / 'experiments' / name
    assert set(torch.load(exp / 'models' / 'net_g_4.pth', weights_only=True)) == set(
        torch.load(bare_exp / 'models' / 'net_g_4.pth', weights_only=True))
    assert set(state) == set(torch.load(bare_exp / 'training_states' / '4.state', weights_only=False)) | {'rng_states'}


def test_benchmark_evaluates_the_trained_edsr_as_its_own_validation(paired, plugin_train, tmp_path):
    """The harness's EDSR row: the EDSR just trained, on the set it validated on, at x2 only; its
    PSNR (float outputs, Y, shave 2) agrees with BasicSR's validation (8-bit outputs, Y, crop 2)."""
    opt_file, root = plugin_train('EDSR', 0)
    exp = root / 'plugin' / 'experiments' / 'EDSR_host'
    out = tmp_path / 'bench'
    _run([str(BIN / 'basicsr'), 'benchmark', '--model', f'EDSRx2={opt_file}:{exp / "models" / "net_g_latest.pth"}',
          '--sets', f'tiny={paired}', '--scales', '2', '3', '--out', str(out), '--quick', '--no-memory',
          '--threads', '1', '--no-figure'], cwd=tmp_path)
    with open(out / 'metrics.csv', newline='') as f:
        rows = [r for r in csv.DictReader(f) if r['method'] == 'EDSRx2']
    assert [r['scale'] for r in rows] == ['2']
    validated = re.findall(r'Validation Set5\n\s+# psnr: ([\d.]+)', next(exp.glob('train_*.log')).read_text())
    assert float(rows[0]['psnr']) == pytest.approx(float(validated[-1]), abs=0.01)
    assert '| | Bicubic | EDSRx2 |' in (out / 'compare.md').read_text()


def _option_model_types():
    """{model_type: the first option file under options/ that uses it}."""
    types = {}
    for path in sorted((REPO / 'options').rglob('*.yml')):
        model_type = (yaml.safe_load(path.read_text()) or {}).get('model_type')
        types.setdefault(str(model_type), str(path.relative_to(REPO)))
    return types


def _tiny_pipeline_options(model_type: str, tmp_path: Path, paired: Path):
    if model_type == 'SRModel':
        opt = host_options(paired, 'EDSR', total_iter=2)
    elif model_type == 'ArbitraryScaleSRModel':
        write_smooth_images(tmp_path / 'images', 2)
        opt = tiny_train_options('arbitrary', str(tmp_path / 'images'), str(tmp_path / 'images'))
        opt['train']['total_iter'] = 2
        opt['val'].update(val_freq=2, save_img=False)
        opt['logger']['save_checkpoint_freq'] = 2
    else:
        pytest.fail(f'model_type {model_type} (used in {_option_model_types()[model_type]}) has no tiny options '
                    'in this test: add them')
    opt['name'] = f'pipeline_{model_type}'
    return opt


@pytest.mark.parametrize('model_type', sorted(_option_model_types()))
def test_basicsr_train_pipeline_runs_every_model_type_of_the_options(model_type, paired, tmp_path, monkeypatch):
    """BasicSR's own ``basicsr.train.train_pipeline``, in this process (the plugin imported), for
    each model_type the shipped option files use."""
    from basicsr.train import train_pipeline
    opt = _tiny_pipeline_options(model_type, tmp_path, paired)
    monkeypatch.setattr(sys, 'argv', ['train', '-opt', str(write_yaml(tmp_path / 'opt.yml', opt))])
    try:
        train_pipeline(str(tmp_path / 'out'))
    finally:
        sample_keys.set_run_seed(None)  # set by the pipeline for the run; later tests start without
    exp = tmp_path / 'out' / 'experiments' / opt['name']
    state = torch.load(exp / 'training_states' / '2.state', weights_only=False)
    assert state['iter'] == 2 and 'rng_states' in state
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
