"""Tests for the dataset preparation tools (gaussiansr_plugin.tools) and training from their LMDB."""
import os

os.environ.setdefault('OMP_NUM_THREADS', '1')

import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

import gaussiansr_plugin  # noqa: E402,F401  (compat shim + registration)
from gaussiansr_plugin.data.arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset  # noqa: E402
from gaussiansr_plugin.tools import create_lmdb, extract_subimages, make_benchmark_lr  # noqa: E402
from gaussiansr_plugin.utils.image_io import decode_rgb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'
META_LINE = re.compile(r'^(?P<key>[^.\s]+)\.png \((?P<h>\d+),(?P<w>\d+),(?P<c>\d+)\) 1$')


def _random_images(folder: Path, sizes, seed: int = 0) -> dict:
    """Writes noisy RGB PNGs img00.png, img01.png, ... of the given (h, w); returns name -> array."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for i, (h, w) in enumerate(sizes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f'img{i:02d}.png'), img)
        images[f'img{i:02d}'] = img
    return images


def _lmdb_env(path: Path):
    import lmdb
    return lmdb.open(str(path), readonly=True, lock=False)


# ----------------------------------------------------------------------------- extract_subimages
def test_crop_starts_covers_border_only_past_threshold():
    starts = extract_subimages.crop_starts
    assert starts(100, 40, 20, 8) == [0, 20, 40, 60]  # exact fit: no extra crop
    assert starts(70, 40, 20, 8) == [0, 20, 30]  # 10 px left > 8: one more crop, flush with the border
    assert starts(68, 40, 20, 8) == [0, 20]  # 8 px left is not > 8: dropped, as BasicSR does


def test_extract_subimages_counts_borders_and_content(tmp_path):
    hr = tmp_path / 'hr'
    img = _random_images(hr, [(70, 100)])['img00']  # H=70, W=100
    out = tmp_path / 'sub'
    argv = ['-i', str(hr), '-o', str(out), '--crop-size', '40', '--step', '20', '--thresh-size', '8',
            '--workers', '2']
    assert extract_subimages.main(argv) == 0

    tops, lefts = [0, 20, 30], [0, 20, 40, 60]
    names = sorted(p.name for p in out.iterdir())
    assert names == [f'img00_s{i:03d}.png' for i in range(1, 13)]  # 3 rows x 4 columns, nothing else
    index = 0
    for top in tops:  # BasicSR's numbering: from 1, row-major
        for left in lefts:
            index += 1
            crop = cv2.imread(str(out / f'img00_s{index:03d}.png'), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(crop, img[top:top + 40, left:left + 40])
    # The last row and column touch the bottom and right borders.
    assert tops[-1] + 40 == 70 and lefts[-1] + 40 == 100


def test_extract_subimages_refuses_nonempty_output_and_overwrites(tmp_path, capsys):
    hr = tmp_path / 'hr'
    _random_images(hr, [(64, 64)])
    out = tmp_path / 'sub'
    out.mkdir()
    (out / 'img00_s999.png').write_bytes(b'stale')  # a sub-image of an earlier run
    argv = ['-i', str(hr), '-o', str(out), '--crop-size', '32', '--step', '32', '--workers', '1']
    assert extract_subimages.main(argv) == 1
    assert str(out) in capsys.readouterr().err
    assert extract_subimages.main(argv + ['--overwrite']) == 0
    assert sorted(p.name for p in out.iterdir()) == [f'img00_s{i:03d}.png' for i in range(1, 5)]


def test_extract_subimages_gray_to_rgb_small_images_and_transparency(tmp_path, capsys):
    hr = tmp_path / 'hr'
    hr.mkdir()
    gray = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    cv2.imwrite(str(hr / 'gray.png'), gray)
    cv2.imwrite(str(hr / 'small.png'), np.zeros((20, 60, 3), np.uint8))
    out = tmp_path / 'sub'
    base = ['-i', str(hr), '-o', str(out), '--crop-size', '32', '--step', '16', '--thresh-size', '0',
            '--workers', '1']
    assert extract_subimages.main(base) == 0
    crop = cv2.imread(str(out / 'gray_s001.png'), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (32, 32, 3)
    np.testing.assert_array_equal(crop, np.repeat(gray[:32, :32, None], 3, axis=2))
    assert not list(out.glob('small_*'))  # smaller than the crop: skipped by default, and said so
    assert 'small.png' in capsys.readouterr().out
    assert extract_subimages.main(base + ['--small', 'keep', '--overwrite']) == 0
    assert cv2.imread(str(out / 'small_s001.png')).shape == (20, 32, 3)

    rgba = np.full((40, 40, 4), 255, np.uint8)
    rgba[0, 0, 3] = 10
    cv2.imwrite(str(hr / 'ghost.png'), rgba)
    assert extract_subimages.main(base + ['--overwrite']) == 1
    err = capsys.readouterr().err
    assert 'ghost.png' in err and 'transparent' in err


# ----------------------------------------------------------------------------- create_lmdb
def test_create_lmdb_round_trip_is_bit_exact(tmp_path, capsys):
    src = tmp_path / 'src'
    images = _random_images(src, [(40, 52), (33, 17), (64, 64)])
    gray = np.random.default_rng(2).integers(0, 256, (24, 30), dtype=np.uint8)
    cv2.imwrite(str(src / 'gray.png'), gray)
    images['gray'] = gray
    deep = np.random.default_rng(3).integers(0, 65536, (20, 22, 3), dtype=np.uint16)
    cv2.imwrite(str(src / 'deep.png'), deep)
    images['deep'] = deep
    cv2.imwrite(str(src / 'photo.jpg'), images['img00'])  # JPEG input: stored as PNG of its decoded pixels
    images['photo'] = cv2.imread(str(src / 'photo.jpg'), cv2.IMREAD_UNCHANGED)
    (src / 'notes.txt').write_text('not an image')
    target = tmp_path / 'train.lmdb'

    assert create_lmdb.main(['-i', str(src), '-o', str(target), '--batch', '2', '--workers', '2']) == 0
    assert 'Created' in capsys.readouterr().out
    assert sorted(p.name for p in target.iterdir()) == ['data.mdb', 'lock.mdb', 'meta_info.txt']
    assert not list(tmp_path.glob('train.lmdb.tmp-*'))

    lines = (target / 'meta_info.txt').read_text().splitlines()
    assert [META_LINE.match(line)['key'] for line in lines] == sorted(images)  # one line per image, in order
    with _lmdb_env(target) as env, env.begin() as txn:
        assert env.stat()['entries'] == len(images)
        for line in lines:
            m = META_LINE.match(line)
            data = txn.get(m['key'].encode())
            assert data[:8] == b'\x89PNG\r\n\x1a\n'
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            source = images[m['key']]
            assert decoded.dtype == source.dtype
            np.testing.assert_array_equal(decoded, source)
            assert (int(m['h']), int(m['w']), int(m['c'])) == (source.shape + (1,))[:3]

    # The dataset reads the same pixels from it as from the source files.
    opt = dict(name='lmdb', phase='val', dataroot_gt=str(target), io_backend=dict(type='lmdb'), scale=1)
    dataset = ArbitraryScalePairedDataset(opt)
    assert len(dataset) == len(images)
    for i, key in enumerate(dataset.names):
        source_file = next(src.glob(f'{key}.*'))
        expected = decode_rgb(source_file.read_bytes(), str(source_file))
        assert dataset[i]['gt'].equal(expected)


def test_create_lmdb_refuses_existing_target_and_bad_keys(tmp_path, capsys):
    src = tmp_path / 'src'
    _random_images(src, [(16, 16), (16, 16), (16, 16)])
    target = tmp_path / 'x.lmdb'
    argv = ['-i', str(src), '-o', str(target), '--workers', '1']
    assert create_lmdb.main(argv) == 0
    before = (target / 'data.mdb').read_bytes()
    (src / 'img02.png').unlink()

    assert create_lmdb.main(argv) == 1  # refused, untouched
    assert str(target) in capsys.readouterr().err
    assert (target / 'data.mdb').read_bytes() == before
    assert create_lmdb.main(argv + ['--overwrite']) == 0
    assert len((target / 'meta_info.txt').read_text().splitlines()) == 2
    assert not [p for p in tmp_path.iterdir() if '.old-' in p.name or '.tmp-' in p.name]

    cv2.imwrite(str(src / 'a.b.png'), np.zeros((8, 8, 3), np.uint8))
    assert create_lmdb.main(['-i', str(src), '-o', str(tmp_path / 'y.lmdb')]) == 1
    assert 'a.b.png' in capsys.readouterr().err
    assert not (tmp_path / 'y.lmdb').exists()

    (src / 'a.b.png').unlink()
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., 3] = 0
    cv2.imwrite(str(src / 'ghost.png'), rgba)  # fails mid-build, in a worker
    assert create_lmdb.main(['-i', str(src), '-o', str(tmp_path / 'y.lmdb'), '--workers', '2']) == 1
    assert 'ghost.png' in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('y.lmdb')]  # no target, no leftovers


# create_lmdb's command line, SIGKILLed when it starts encoding image number KILL_AT (from 0): with
# --workers 1 the images are encoded lazily in this process, one at a time, as the writer asks for
# the next, so with --batch 1 images 0 .. KILL_AT-1 have each been put and committed by then.
KILLED_CREATE_LMDB = '''
import os
import signal
import sys

from gaussiansr_plugin.tools import create_lmdb

encode = create_lmdb._encode_star
started = []


def encode_or_die(args):
    if len(started) == int(os.environ['KILL_AT']):
        os.kill(os.getpid(), signal.SIGKILL)
    started.append(args)
    return encode(args)


create_lmdb._encode_star = encode_or_die
sys.exit(create_lmdb.main(sys.argv[1:]))
'''


def test_killed_create_lmdb_leaves_no_usable_target(tmp_path):
    src = tmp_path / 'src'
    _random_images(src, [(16, 16)] * 12)
    target = tmp_path / 'killed.lmdb'
    env = dict(os.environ, OMP_NUM_THREADS='1', KILL_AT='5')
    cmd = [sys.executable, '-c', KILLED_CREATE_LMDB, '-i', str(src), '-o', str(target), '--batch', '1', '--workers',
           '1']
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]  # killed mid-way, not finished

    # The kill came after 5 commits: the temporary database holds exactly those 5 images ...
    leftover = next(tmp_path.glob('killed.lmdb.tmp-*'))
    with _lmdb_env(leftover) as env_, env_.begin() as txn:
        assert [key.decode() for key, _ in txn.cursor()] == [f'img{i:02d}' for i in range(5)]
    assert not target.exists()
    opt = dict(name='killed', phase='train', dataroot_gt=str(target), io_backend=dict(type='lmdb'), lq_size=8,
               scale_max=2, sample_q=64)
    with pytest.raises(FileNotFoundError):
        ArbitraryScalePairedDataset(opt)
    # ... yet even it is not accepted (meta_info.txt comes last) ...
    assert not (leftover / 'meta_info.txt').exists()
    with pytest.raises(FileNotFoundError):
        ArbitraryScalePairedDataset(dict(opt, dataroot_gt=str(leftover)))
    # ... and the next run removes it and builds the target.
    assert create_lmdb.main(cmd[3:]) == 0
    assert not leftover.exists()
    assert len(ArbitraryScalePairedDataset(opt)) == 12


# ----------------------------------------------------------------------------- make_benchmark_lr
@pytest.mark.parametrize('benchmark_set', [
    REPO_ROOT / 'tests' / 'fixtures' / 'Set5_woman',  # committed: runs in every clone
    pytest.param(SHARED_DATA / 'benchmark' / 'Set5', id='Set5', marks=pytest.mark.skipif(
        not (SHARED_DATA / 'benchmark' / 'Set5').is_dir(), reason=f'shared data not found at {SHARED_DATA}'))],
    ids=['fixture', 'Set5'])
def test_make_benchmark_lr_reproduces_the_published_lr_exactly(benchmark_set, tmp_path):
    assert make_benchmark_lr.main(['-i', str(benchmark_set / 'HR'), '-o', str(tmp_path), '--scales', '2', '3', '4']) == 0
    hr_count = len(list((benchmark_set / 'HR').glob('*.png')))
    for scale in (2, 3, 4):
        references = sorted((benchmark_set / 'LR_bicubic' / f'X{scale}').glob('*.png'))
        assert len(references) == hr_count
        for reference in references:
            made = cv2.imread(str(tmp_path / 'LR_bicubic' / f'X{scale}' / reference.name), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(made, cv2.imread(str(reference), cv2.IMREAD_UNCHANGED), err_msg=reference.name)


def test_make_benchmark_lr_non_integer_scale_and_gray(tmp_path, capsys):
    hr = tmp_path / 'HR'
    hr.mkdir()
    gray = np.random.default_rng(4).integers(0, 256, (50, 37), dtype=np.uint8)
    cv2.imwrite(str(hr / 'bridge.png'), gray)
    assert make_benchmark_lr.main(['-i', str(hr), '--scales', '2.5', '3']) == 0  # output beside HR/
    lr = cv2.imread(str(tmp_path / 'LR_bicubic' / 'X2.5' / 'bridgex2.5.png'), cv2.IMREAD_UNCHANGED)
    assert lr.shape == (20, 14, 3)  # floor(50 / 2.5), floor(37 / 2.5); gray made RGB
    # From the HR cropped to round(20 * 2.5) x round(14 * 2.5) = 50 x 35, as the dataset crops it.
    import torch
    from gaussiansr_plugin.utils.resize import imresize_matlab
    expected = imresize_matlab(torch.from_numpy(gray[:50, :35].copy())[None], (20, 14))[0].numpy()
    for channel in range(3):
        np.testing.assert_array_equal(lr[:, :, channel], expected)
    assert cv2.imread(str(tmp_path / 'LR_bicubic' / 'X3' / 'bridgex3.png')).shape == (16, 12, 3)
    assert make_benchmark_lr.main(['-i', str(hr), '--scales', '3']) == 1  # X3 exists: refused
    assert 'X3' in capsys.readouterr().err


# ----------------------------------------------------------------------------- training from the LMDB
def test_basicsr_train_runs_from_created_lmdb(tmp_path):
    rng = np.random.default_rng(5)
    for folder, count in (('train_hr', 6), ('val_hr', 2)):
        (tmp_path / folder).mkdir()
        for i in range(count):  # smooth images: upsampled noise
            small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            img = cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(tmp_path / folder / f'{folder}{i}.png'), img)
    lmdb_path = tmp_path / 'train_hr.lmdb'
    assert create_lmdb.main(['-i', str(tmp_path / 'train_hr'), '-o', str(lmdb_path), '--workers', '1']) == 0

    opt = yaml.safe_load((REPO_ROOT / 'options' / 'train_gaussiansr_demo.yml').read_text())
    opt['name'] = 'lmdb_smoke'
    opt['num_gpu'] = 0
    opt['datasets'] = {
        'train': dict(name='lmdb_train', type='ArbitraryScalePairedDataset', dataroot_gt=str(lmdb_path),
                      io_backend=dict(type='lmdb'), lq_size=16, scale_min=1, scale_max=2, sample_q=64,
                      use_shuffle=True, num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1),
        'val': dict(name='val_x2', type='ArbitraryScalePairedDataset', dataroot_gt=str(tmp_path / 'val_hr'),
                    scale=2),
    }
    opt['network_g'] = dict(type='GaussianSR', num_block=2, num_feat=16, hidden_list=[32, 32], num_kernels=16)
    opt['train']['total_iter'] = 4
    opt['train']['scheduler']['milestones'] = [100]
    opt['val'].update(val_freq=4, metrics={'psnr': {'type': 'calculate_psnr_pt'}})
    opt['logger'].update(print_freq=1, save_checkpoint_freq=4, use_tb_logger=False)
    opt_file = tmp_path / 'lmdb_smoke.yml'
    opt_file.write_text(yaml.safe_dump(opt, sort_keys=False))

    basicsr = Path(sys.executable).parent / 'basicsr'
    result = subprocess.run([str(basicsr), 'train', '-opt', str(opt_file), '--root', str(tmp_path)],
                            env=dict(os.environ, OMP_NUM_THREADS='1'), cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / 'experiments' / 'lmdb_smoke' / 'models' / 'net_g_latest.pth').is_file()
