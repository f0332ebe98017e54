"""Bad checkpoints, non-finite losses and option mistakes fail (or are contained) with clear messages."""
import logging

import pytest
import torch

from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.utils.checkpoint import load_weights
from gaussiansr_plugin.utils.options import check_options
from helpers import build_tiny_train_model, tiny_train_options, write_smooth_images


def test_checkpoint_of_another_network_names_the_file_and_first_mismatched_key(tmp_path):
    other = GaussianSR(**dict(TINY_GAUSSIANSR, num_feat=24))
    path = tmp_path / 'other.pth'
    torch.save({'params': other.state_dict()}, path)
    with pytest.raises(ValueError, match=r"other\.pth does not fit GaussianSR: first mismatched key '\w"):
        load_weights(GaussianSR(**TINY_GAUSSIANSR), str(path))


def test_checkpoint_that_is_not_weights_is_refused_without_running_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ('pickled code ran',))

    path = tmp_path / 'evil.pth'
    torch.save({'params': Payload()}, path)
    with pytest.raises(ValueError, match=r'evil\.pth cannot be loaded as weights only'):
        load_weights(GaussianSR(**TINY_GAUSSIANSR), str(path))
    (tmp_path / 'cut.pth').write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=r'cut\.pth'):
        load_weights(GaussianSR(**TINY_GAUSSIANSR), str(tmp_path / 'cut.pth'))


def test_own_checkpoint_loads_including_ema_fallback_and_module_prefix(tmp_path):
    source = GaussianSR(**TINY_GAUSSIANSR)
    torch.save({'params': {f'module.{k}': v for k, v in source.state_dict().items()}}, tmp_path / 'ok.pth')
    target = GaussianSR(**TINY_GAUSSIANSR)
    load_weights(target, str(tmp_path / 'ok.pth'), param_key='params_ema')
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_non_finite_loss_skips_the_step_and_names_the_batch(tmp_path):
    model = build_tiny_train_model(tmp_path, 'nan_run', images=2)
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    batch = {'lq': torch.rand(1, 3, 8, 8), 'coord': torch.rand(1, 5, 2) * 2 - 1, 'cell': torch.full((1, 5, 2), 0.1),
             'gt': torch.full((1, 5, 3), float('nan')), 'gt_path': ['/data/poisoned.png']}
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger('basicsr').addHandler(handler)
    try:
        model.feed_data(batch)
        model.optimize_parameters(current_iter=17)
    finally:
        logging.getLogger('basicsr').removeHandler(handler)
    after = model.net_g.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(model.net_g_ema.state_dict()[k], before[k]) for k in before)
    messages = ' '.join(r.getMessage() for r in records)
    assert 'iter 17' in messages and '/data/poisoned.png' in messages


@pytest.mark.parametrize('change, message', [
    (lambda o: o['val'].update(val_frq=10), 'val_frq'),
    (lambda o: o['datasets']['val'].update(scale=0), 'datasets.val.scale'),
    (lambda o: o['datasets']['train'].pop('dataroot_gt'), 'dataroot_gt'),
    (lambda o: o['train'].pop('total_iter'), 'train.total_iter'),
    (lambda o: o['network_g'].update(type='GausianSR'), 'GausianSR'),
])
def test_option_mistakes_name_the_key(tmp_path, change, message):
    write_smooth_images(tmp_path / 'imgs', 1)
    opt = tiny_train_options('bad', str(tmp_path / 'imgs'), str(tmp_path / 'imgs'))
    change(opt)
    with pytest.raises((KeyError, ValueError, FileNotFoundError), match=message):
        check_options(opt, is_train=True)


def test_empty_val_folder_and_bad_pretrained_checkpoint_are_option_errors(tmp_path):
    write_smooth_images(tmp_path / 'imgs', 1)
    (tmp_path / 'empty').mkdir()
    opt = tiny_train_options('bad', str(tmp_path / 'imgs'), str(tmp_path / 'empty'))
    with pytest.raises(FileNotFoundError, match='holds no images'):
        check_options(opt, is_train=True)
    opt = tiny_train_options('bad', str(tmp_path / 'imgs'), str(tmp_path / 'imgs'))
    (tmp_path / 'junk.pth').write_bytes(b'junk')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'junk.pth')
    with pytest.raises(ValueError, match=r'path.pretrain_network_g: Checkpoint .*junk\.pth'):
        check_options(opt, is_train=True)


def test_force_yml_overrides_are_checked_like_the_file(tmp_path):
    from gaussiansr_plugin.utils.options import apply_force_yml
    write_smooth_images(tmp_path / 'imgs', 1)
    opt = tiny_train_options('forced', str(tmp_path / 'imgs'), str(tmp_path / 'imgs'))
    apply_force_yml(opt, ['datasets:train:scale_max=0.5', 'train:total_iter=7'])
    assert opt['train']['total_iter'] == 7
    with pytest.raises(ValueError, match='scale_max'):
        check_options(opt, is_train=True)
    with pytest.raises(KeyError, match='nope'):
        apply_force_yml(opt, ['train:nope=1'])
