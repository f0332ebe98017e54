"""options/ablation/: one recipe and budget for every row, networks differing only in the ablated option."""
from pathlib import Path

import pytest
import yaml

from gaussiansr_plugin.utils.options import check_options, load_option_file
from helpers import write_smooth_images

OPTIONS = Path(__file__).resolve().parents[1] / 'options'
REFERENCE = 'gaussiansr'
# Row -> (the row it is compared with, the network_g keys that differ from it).
ROWS = {
    'gaussiansr': (None, set()),
    'gaussiansr_skip': ('gaussiansr', {'rgb_skip'}),
    'bicubic64': ('gaussiansr', {'num_gs_feat'}),
    'gaussiansr_fourier': ('gaussiansr', {'pos_encoding'}),
    'gaussiansr_hard': ('gaussiansr', {'gumbel_hard'}),
    'liif': ('gaussiansr', None),  # another network: only its type is checked
    'liif_skip': ('liif', {'rgb_skip'}),
    'metasr': ('gaussiansr', None),
}


def _load(row: str) -> dict:
    return yaml.safe_load((OPTIONS / 'ablation' / f'train_{row}.yml').read_text())


def test_every_row_has_a_file_and_nothing_else_is_there():
    assert sorted(p.stem[len('train_'):] for p in (OPTIONS / 'ablation').glob('*.yml')) == sorted(ROWS)


@pytest.mark.parametrize('row', list(ROWS))
def test_rows_differ_only_in_name_and_the_ablated_network_option(row):
    opt, reference = _load(row), _load(REFERENCE)
    for key in set(opt) | set(reference):
        if key not in ('name', 'network_g'):
            assert opt.get(key) == reference.get(key), key
    other, keys = ROWS[row]
    if other is None:
        return
    net, other_net = opt['network_g'], _load(other)['network_g']
    assert opt['name'] != _load(other)['name']
    if keys is None:
        assert net['type'] != other_net['type']
        return
    assert {k for k in set(net) | set(other_net) if net.get(k) != other_net.get(k)} == keys


def test_reference_is_the_paper_network_on_the_results291_recipe_with_1500_iterations_in_bf16():
    opt, recipe = _load(REFERENCE), yaml.safe_load((OPTIONS / 'results291' / 'train_gaussiansr_291.yml').read_text())
    assert opt['datasets'] == recipe['datasets'] and opt['manual_seed'] == recipe['manual_seed'] == 0
    assert opt['train']['total_iter'] == 1500 and opt['train']['scheduler']['milestones'] == [1200]
    assert opt['train']['mixed_precision'] == 'bf16'
    for key in ('optim_g', 'pixel_opt', 'ema_decay'):
        assert opt['train'][key] == recipe['train'][key], key
    net = opt['network_g']
    assert (net['rgb_skip'], net['pos_encoding'], net['gumbel_hard'], net['num_gs_feat']) == (False, 'offset', False, 8)


@pytest.mark.parametrize('row', list(ROWS))
def test_rows_pass_the_option_check(row, tmp_path):
    write_smooth_images(tmp_path / 'images', 1, size=(64, 64))
    opt = load_option_file(str(OPTIONS / 'ablation' / f'train_{row}.yml'))
    train = opt['datasets']['train']
    assert train['dataroot_gt'] == 'datasets/train291/train291_sub.lmdb'
    # The LMDB is not in the repository: the same check on a folder of images.
    train.update(dataroot_gt=str(tmp_path / 'images'), io_backend={'type': 'disk'})
    check_options(opt, is_train=True)


def test_soft_kernel_evaluation_is_the_reference_network_with_only_eval_kernel_changed():
    soft = yaml.safe_load((OPTIONS / 'ablation' / 'eval' / 'gaussiansr_soft_kernel.yml').read_text())['network_g']
    reference = _load(REFERENCE)['network_g']
    assert soft.pop('eval_kernel') == 'soft' and reference.get('eval_kernel', 'argmax') == 'argmax'
    reference.pop('eval_kernel', None)
    assert soft == reference


LONG_ROWS = ('gaussiansr', 'bicubic64', 'liif')
# What the 8x-budget runs (options/ablation/long/, issue 19) change, identically for every row.
LONG_CHANGES = {('train', 'total_iter'): 12000, ('train', 'scheduler', 'milestones'): [9600],
                ('logger', 'save_checkpoint_freq'): 1500}


def _flatten(tree: dict, prefix=()) -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = value
    return flat


def test_long_runs_are_exactly_the_central_rows_with_8x_the_budget():
    assert sorted(p.stem[len('train_'):] for p in (OPTIONS / 'ablation' / 'long').glob('*.yml')) == sorted(LONG_ROWS)
    names = set()
    for row in LONG_ROWS:
        short = _flatten(_load(row))
        long = _flatten(yaml.safe_load((OPTIONS / 'ablation' / 'long' / f'train_{row}.yml').read_text()))
        assert set(long) == set(short), row
        differing = {key for key in short if short[key] != long[key]}
        assert differing == set(LONG_CHANGES) | {('name',)}, row
        assert {key: long[key] for key in LONG_CHANGES} == LONG_CHANGES
        assert short[('train', 'total_iter')] * 8 == long[('train', 'total_iter')]
        names.add(long[('name',)])
    assert len(names) == len(LONG_ROWS)  # the runs do not share experiment folders
