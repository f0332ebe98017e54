"""ArbitraryScalePairedDataset: sample shapes, scales, LR protocols and bad images."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gaussiansr_plugin.data.arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset
from gaussiansr_plugin.utils.image_io import ImageError
from gaussiansr_plugin.utils.resize import imresize_matlab
from gaussiansr_plugin.utils.sample_keys import keys_for_epoch, set_run_seed


def _write(path, height, width, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    cv2.imwrite(str(path), img if channels > 1 else img[:, :, 0])
    return img


def _train_opt(root, **extra):
    opt = dict(name='train', type='ArbitraryScalePairedDataset', phase='train', dataroot_gt=str(root),
               lq_size=8, scale_min=1, scale_max=4, sample_q=50)
    opt.update(extra)
    return opt


def test_train_samples_have_query_format_and_scales_in_range(tmp_path):
    _write(tmp_path / 'a.png', 40, 50)
    _write(tmp_path / 'b.png', 64, 33, channels=1)  # grayscale: repeated to RGB
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path))
    torch.manual_seed(0)
    scales = []
    for i in range(20):
        sample = dataset[i % 2]
        assert sample['lq'].shape == (3, 8, 8)
        assert sample['gt'].shape == (50, 3) and sample['coord'].shape == (50, 2) and sample['cell'].shape == (50, 2)
        assert sample['coord'].abs().max() < 1
        side = round(sample['scale'].item() * 8)
        assert torch.allclose(sample['cell'], torch.full((50, 2), 2 / side))
        scales.append(sample['scale'].item())
    assert 1 <= min(scales) and max(scales) <= 4 and len(set(scales)) > 5


def test_train_gt_queries_are_the_hr_pixels_at_their_coordinates(tmp_path):
    _write(tmp_path / 'a.png', 30, 30)
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path, sample_q=None, augment=False, scale_min=2,
                                                     scale_max=2))
    sample = dataset[0]
    side = 16
    # All 16x16 queries, in raster order: reassembled they form an image whose MATLAB downscale
    # is the LR (through 8-bit, as the dataset quantizes it).
    hr = sample['gt'].t().reshape(3, side, side)
    expected = imresize_matlab(torch.round(hr * 255).to(torch.uint8), (8, 8)).float() / 255
    assert torch.equal(sample['lq'], expected)


def test_scale_draws_use_torch_rng_not_numpy_or_random(tmp_path):
    _write(tmp_path / 'a.png', 40, 40)
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path))
    np.random.seed(0)
    torch.manual_seed(1)
    first = dataset[0]['scale']
    np.random.seed(0)  # BasicSR reseeds numpy/random like this every epoch
    torch.manual_seed(2)
    assert dataset[0]['scale'] != first


def test_val_with_lr_on_the_fly_follows_liif_protocol(tmp_path):
    _write(tmp_path / 'a.png', 37, 50)
    opt = dict(name='val', type='ArbitraryScalePairedDataset', phase='val', dataroot_gt=str(tmp_path), scale=2.4)
    sample = ArbitraryScalePairedDataset(opt)[0]
    h_lr, w_lr = math.floor(37 / 2.4), math.floor(50 / 2.4)
    assert sample['lq'].shape == (3, h_lr, w_lr)
    assert sample['gt'].shape == (3, round(h_lr * 2.4), round(w_lr * 2.4))
    assert ArbitraryScalePairedDataset(opt).shave == 3


def test_val_with_lr_folder_uses_benchmark_naming(tmp_path):
    (tmp_path / 'HR').mkdir()
    (tmp_path / 'X3').mkdir()
    _write(tmp_path / 'HR' / 'baby.png', 31, 20)
    _write(tmp_path / 'X3' / 'babyx3.png', 10, 6)
    opt = dict(name='val', type='ArbitraryScalePairedDataset', phase='val', dataroot_gt=str(tmp_path / 'HR'),
               dataroot_lq=str(tmp_path / 'X3'), scale=3)
    sample = ArbitraryScalePairedDataset(opt)[0]
    assert sample['lq'].shape == (3, 10, 6) and sample['gt'].shape == (3, 30, 18)


@pytest.mark.parametrize('scale', [2, 3, 4])  # x3 crops the HR (344 rows) to 342 first
def test_benchmark_lr_made_on_the_fly_equals_the_standard_lr(scale):
    fixture = Path(__file__).resolve().parent / 'fixtures' / 'Set5_woman'  # a Set5 image and its published LR
    opt = dict(name='set5', type='ArbitraryScalePairedDataset', phase='val', dataroot_gt=str(fixture / 'HR'),
               scale=scale)
    made = ArbitraryScalePairedDataset(opt)[0]['lq']
    standard = cv2.imread(str(fixture / 'LR_bicubic' / f'X{scale}' / f'womanx{scale}.png'))
    standard = torch.from_numpy(standard[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(made, standard)


def test_transparent_rgba_is_rejected_naming_the_file(tmp_path):
    img = np.full((40, 40, 4), 200, np.uint8)
    img[0, 0, 3] = 10
    cv2.imwrite(str(tmp_path / 'ghost.png'), img)
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path))
    with pytest.raises(ImageError, match='ghost.png'):
        dataset[0]


def test_opaque_rgba_is_used_as_rgb(tmp_path):
    img = np.full((40, 40, 4), 255, np.uint8)
    img[:, :, 0] = 7
    cv2.imwrite(str(tmp_path / 'opaque.png'), img)
    sample = ArbitraryScalePairedDataset(_train_opt(tmp_path))[0]
    assert sample['gt'][:, 2].max() == pytest.approx(7 / 255)  # BGR blue -> RGB channel 2


def test_corrupt_image_is_rejected_naming_the_file(tmp_path):
    _write(tmp_path / 'good.png', 40, 40)
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 20)
    with pytest.raises(ImageError, match='broken.png'):
        ArbitraryScalePairedDataset(_train_opt(tmp_path))


def test_image_smaller_than_the_patch_is_rejected_when_built(tmp_path):
    _write(tmp_path / 'tiny.png', 12, 40)
    with pytest.raises(ImageError, match=r'tiny\.png.*12x40'):
        ArbitraryScalePairedDataset(_train_opt(tmp_path, lq_size=8, scale_min=2))


def test_image_smaller_than_a_large_scale_patch_lowers_the_scale(tmp_path):
    _write(tmp_path / 'small.png', 20, 20)
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path, scale_min=2.5, scale_max=4, sample_q=None))
    sample = dataset[0]
    assert sample['scale'].item() == pytest.approx(20 / 8)
    assert sample['gt'].shape == (400, 3)


@pytest.mark.parametrize('extra, key', [
    (dict(scale_min=3, scale_max=2), 'scale_max'),
    (dict(lq_sizee=8), 'lq_sizee'),
    (dict(sample_q=10_000), 'sample_q'),
    (dict(downsampler='lanczos'), 'lanczos'),
])
def test_bad_train_options_name_the_key(tmp_path, extra, key):
    _write(tmp_path / 'a.png', 40, 40)
    with pytest.raises((KeyError, ValueError), match=key):
        ArbitraryScalePairedDataset(_train_opt(tmp_path, **extra))


def test_empty_or_missing_folder_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match='no images'):
        ArbitraryScalePairedDataset(_train_opt(tmp_path))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ArbitraryScalePairedDataset(_train_opt(tmp_path / 'nope'))


def test_skip_bad_images_replaces_a_corrupt_image_and_counts_it(tmp_path):
    _write(tmp_path / 'a_good.png', 40, 40)
    _write(tmp_path / 'b_broken.png', 40, 40)
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path, skip_bad_images=True))
    (tmp_path / 'b_broken.png').write_bytes(b'not a png at all')  # broken after the run started
    sample = dataset[1]
    assert sample['gt_path'].endswith('a_good.png')
    assert dataset.skipped == 1
    dataset.skip_bad_images = False
    with pytest.raises(ImageError, match='b_broken.png'):
        dataset[1]


def test_sample_keys_make_a_train_sample_a_function_of_seed_epoch_and_position(tmp_path):
    _write(tmp_path / 'a.png', 40, 50)
    dataset = ArbitraryScalePairedDataset(_train_opt(tmp_path))
    assert keys_for_epoch([0, 0], epoch=3, rank=0, num_replicas=1) == [0, 0]  # no run seed: plain indices
    set_run_seed(7)
    try:
        keys = keys_for_epoch([0] * 8, epoch=3, rank=1, num_replicas=2)
        other_rank = keys_for_epoch([0] * 8, epoch=3, rank=0, num_replicas=2)
        next_epoch = keys_for_epoch([0] * 8, epoch=4, rank=1, num_replicas=2)
        again = keys_for_epoch([0] * 8, epoch=3, rank=1, num_replicas=2)
        assert [(int(k), k.seed) for k in again] == [(int(k), k.seed) for k in keys]  # keys equal as ints
    finally:
        set_run_seed(None)
    torch.manual_seed(0)
    first = dataset[keys[0]]
    torch.manual_seed(1)  # the global RNG (reseeded per data worker) plays no part
    again = dataset[keys[0]]
    assert all(torch.equal(first[k], again[k]) for k in ('lq', 'gt', 'coord', 'cell', 'scale'))
    # Every sample of an epoch, on every rank, and of the next epoch has its own draws, even
    # when the image repeats (dataset_enlarge_ratio).
    assert len({key.seed for key in keys + other_rank + next_epoch}) == 24
    samples = [dataset[key]['gt'] for key in keys]
    assert not any(torch.equal(a, b) for i, a in enumerate(samples) for b in samples[i + 1:])
