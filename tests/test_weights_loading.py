"""Shipped weights by name (upscale, benchmark, test) and the arch options that checkpoints carry.

The shipped folder is a tmp folder holding a tiny GaussianSR (``WEIGHTS_DIR`` monkeypatched);
the test that the real shipped files load and reproduce their PSNR lives elsewhere.
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from basicsr.models import build_model
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin import cli, weights
from gaussiansr_plugin.archs import LIIF, GaussianSR
from gaussiansr_plugin.benchmark.methods import load_method, parse_model_arg
from gaussiansr_plugin.inference import upscale
from gaussiansr_plugin.utils import loading
from gaussiansr_plugin.utils.checkpoint import ARCH_KEY, load_weights
from gaussiansr_plugin.utils.command_line import resolve_model_arg
from gaussiansr_plugin.utils.options import check_options
from helpers import basicsr_records, build_tiny_train_model, tiny_test_options, write_smooth_images, write_yaml

NET_OPT = dict(type='GaussianSR', **TINY_GAUSSIANSR)
CPU = torch.device('cpu')


def _random_net(net_opt=NET_OPT) -> torch.nn.Module:
    """A net whose weights differ from a fresh one's (the skip's zero-initialized layer included)."""
    torch.manual_seed(1)
    net = GaussianSR(**{k: v for k, v in net_opt.items() if k != 'type'})
    for param in net.parameters():
        torch.nn.init.normal_(param, std=0.05)
    return net


def _same_weights(net: torch.nn.Module, state: dict) -> bool:
    return state.keys() == net.state_dict().keys() and all(torch.equal(v, state[k]) for k, v in
                                                           net.state_dict().items())


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A weights folder made the shipped one, holding 'tiny' (NAME.yml + NAME.pth) and two halves
    of pairs (a .pth without its .yml, a .yml without its .pth); returns (yml, pth, state)."""
    folder = tmp_path / 'weights'
    folder.mkdir()
    net = _random_net()
    yml = write_yaml(folder / 'tiny.yml', dict(name='tiny', model_type='ArbitraryScaleSRModel', num_gpu=0,
                                               network_g=NET_OPT, path={}, val=dict(query_chunk=500)))
    pth = folder / 'tiny.pth'
    torch.save({'params': net.state_dict()}, pth)
    torch.save({'params': net.state_dict()}, folder / 'no_options.pth')
    (folder / 'no_weights.yml').write_text(yml.read_text())
    monkeypatch.setattr(weights, 'WEIGHTS_DIR', str(folder))
    return str(yml), str(pth), net.state_dict()


# ----------------------------------------------------------------------------- names
def test_names_need_both_files_and_resolve_case_insensitively_unless_a_path_exists(shipped, tmp_path, monkeypatch):
    yml, pth, _ = shipped
    assert weights.shipped_names() == ['tiny']
    assert weights.resolve_weights_name('TINY') == weights.resolve_weights_name('tiny') == (yml, pth)
    assert weights.resolve_weights_name('no_options') is None and weights.resolve_weights_name('no_weights') is None
    assert resolve_model_arg('Tiny') == (yml, pth)
    assert resolve_model_arg('x.yml:y.pth') == ('x.yml', 'y.pth')
    # A file of that name in the current directory is what the user means.
    monkeypatch.chdir(tmp_path)
    Path('tiny').write_text('')
    assert weights.resolve_weights_name('tiny') is None and resolve_model_arg('tiny') == ('tiny', None)


def test_default_weights_prefer_a_name_starting_with_gaussiansr(shipped):
    folder = Path(weights.WEIGHTS_DIR)
    for name in ('aaa', 'GaussianSR_x'):
        (folder / f'{name}.yml').write_text('')
        (folder / f'{name}.pth').write_bytes(b'')
    assert loading.default_model_arg() == f'{folder / "GaussianSR_x"}.yml:{folder / "GaussianSR_x"}.pth'


def test_upscale_loads_shipped_weights_by_name(shipped, tmp_path, capsys):
    yml, pth, state = shipped
    loaded = loading.load_net('Tiny', CPU)
    assert (loaded.option_file, loaded.checkpoint) == (yml, pth) and _same_weights(loaded.net, state)
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((6, 5, 3), 90, np.uint8))
    status = upscale.main(['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'out'), '--model', 'tiny', '-s', '2'])
    out, err = capsys.readouterr()
    assert status == 0 and 'Error' not in err and pth in out
    assert cv2.imread(str(tmp_path / 'out' / 'a_out.png')).shape == (12, 10, 3)


def test_benchmark_loads_shipped_weights_by_name(shipped, tmp_path):
    yml, pth, state = shipped
    spec = parse_model_arg('T=tiny')
    assert (spec.name, spec.option_file, spec.checkpoint) == ('T', yml, pth)
    method = load_method(spec, CPU)
    assert method.checkpoint == pth and _same_weights(method.net, state)
    # An option file of one's own whose pretrain_network_g is the name.
    own = write_yaml(tmp_path / 'own.yml', dict(model_type='ArbitraryScaleSRModel', network_g=NET_OPT,
                                                path=dict(pretrain_network_g='tiny')))
    method = load_method(parse_model_arg(f'U={own}'), CPU)
    assert method.checkpoint == pth and _same_weights(method.net, state)


def test_test_command_loads_pretrain_network_g_by_name(shipped, tmp_path, monkeypatch):
    _, pth, state = shipped
    write_smooth_images(tmp_path / 'hr', 1, size=(12, 16))
    opt = write_yaml(tmp_path / 'test.yml', tiny_test_options('by_name', 'tiny', str(tmp_path / 'hr'), 2))
    check_options(tiny_test_options('by_name', 'tiny', str(tmp_path / 'hr'), 2), is_train=False)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))  # cli.main sets it for BasicSR's parse_options
    with basicsr_records() as records:
        cli.main(['test', '-opt', str(opt), '--root', str(tmp_path / 'run')])
    assert f'Loaded GaussianSR from {pth} [params_ema].' in [r.getMessage() for r in records]
    assert (tmp_path / 'run' / 'results' / 'by_name' / 'visualization' / 'tiny_x2' / 'img00_by_name.png').is_file()
    # The model BasicSR builds from such options holds the shipped weights.
    model = build_model(dict(tiny_test_options('by_name', 'tiny', str(tmp_path / 'hr'), 2), is_train=False,
                             dist=False))
    assert _same_weights(model.net_g, state)


def test_an_unknown_name_fails_in_one_line_listing_the_shipped_names(shipped, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((4, 4, 3), np.uint8))
    assert upscale.main(['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--model', 'tinny']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'tinny' in err and 'shipped weights: tiny' in err
    with pytest.raises(ValueError, match='--model tinny: .*shipped weights: tiny'):
        parse_model_arg('T=tinny')
    opt = tiny_test_options('x', 'tinny', str(tmp_path), 2)
    with pytest.raises(ValueError, match=r'path.pretrain_network_g: Checkpoint tinny does not exist.*shipped weights: '
                                         r'tiny\)$'):
        check_options(opt, is_train=False)


# ----------------------------------------------------------------------------- arch options
@pytest.fixture
def saved(tmp_path):
    """A checkpoint written by the model's own save (net_g and EMA) of a tiny rgb_skip GaussianSR."""
    model = build_tiny_train_model(tmp_path, 'arch')
    model.save(epoch=0, current_iter=3)
    return tmp_path / 'net_g_3.pth', model


def test_saved_checkpoints_carry_the_arch_options_and_load_weights_only(saved):
    path, model = saved
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    assert set(checkpoint) == {'params', 'params_ema', ARCH_KEY}
    assert checkpoint[ARCH_KEY] == model.net_g.arch_options() and checkpoint[ARCH_KEY]['rgb_skip'] is True
    assert ARCH_KEY not in torch.load(path.parent / '3.state', map_location='cpu', weights_only=False)
    # The same options load, net_g and EMA alike (as a resumed run or a test loads them).
    for key in ('params', 'params_ema'):
        net = GaussianSR(**TINY_GAUSSIANSR)
        load_weights(net, str(path), param_key=key)
        assert _same_weights(net, checkpoint[key])


def test_a_checkpoint_trained_with_other_arch_options_is_refused(saved, tmp_path):
    path, _ = saved
    skip_off = dict(TINY_GAUSSIANSR, rgb_skip=False)
    with pytest.raises(ValueError, match=rf'^Checkpoint {path} was trained with rgb_skip=True, the network has '
                                         r'rgb_skip=False$'):
        load_weights(GaussianSR(**skip_off), str(path))
    with pytest.raises(ValueError, match=r"res_scale=1\.0, sigma_range=\[0\.1, 1\.0\], .*res_scale=0\.5, "
                                         r"sigma_range=\[0\.2, 2\.0\]"):
        load_weights(GaussianSR(**dict(TINY_GAUSSIANSR, res_scale=0.5, sigma_range=[0.2, 2.0])), str(path))
    with pytest.raises(ValueError, match=r'was trained as GaussianSR, the network is LIIF'):
        load_weights(LIIF(num_feat=16, num_block=2, hidden_list=[32, 32]), str(path))
    # The option check, upscale and the benchmark all say so before any work.
    opt = tiny_test_options('x', str(path), str(tmp_path / 'imgs'), 2)
    opt['network_g'].update(rgb_skip=False)
    with pytest.raises(ValueError, match=r'path.pretrain_network_g: .*rgb_skip=True, the network has rgb_skip=False'):
        check_options(opt, is_train=False)
    option_file = write_yaml(tmp_path / 'skip_off.yml', dict(model_type='ArbitraryScaleSRModel',
                                                             network_g=dict(type='GaussianSR', **skip_off)))
    with pytest.raises(ValueError, match='rgb_skip=True, the network has rgb_skip=False'):
        loading.load_net(f'{option_file}:{path}', CPU)
    with pytest.raises(ValueError, match='rgb_skip=True, the network has rgb_skip=False'):
        load_method(parse_model_arg(f'S={option_file}:{path}'), CPU)


def test_evaluation_and_training_switches_may_differ(saved):
    path, model = saved
    for change in (dict(eval_kernel='soft'), dict(window_tolerance=1e-3), dict(tau=0.5), dict(gumbel_hard=True)):
        net = GaussianSR(**dict(TINY_GAUSSIANSR, **change))
        load_weights(net, str(path), param_key='params')
        assert _same_weights(net, model.net_g.state_dict())


def test_checkpoints_without_arch_options_load_as_before(tmp_path):
    skip_on = _random_net()
    torch.save({'params': skip_on.state_dict()}, tmp_path / 'old.pth')
    skip_off = GaussianSR(**dict(TINY_GAUSSIANSR, rgb_skip=False))
    load_weights(skip_off, str(tmp_path / 'old.pth'))
    assert _same_weights(skip_off, skip_on.state_dict())


def test_non_strict_loading_logs_differing_arch_options_and_loads(saved):
    path, model = saved
    net = GaussianSR(**dict(TINY_GAUSSIANSR, rgb_skip=False))
    with basicsr_records() as records:
        load_weights(net, str(path), strict=False, param_key='params')
    assert _same_weights(net, model.net_g.state_dict())
    assert any('rgb_skip=True, the network has rgb_skip=False' in r.getMessage() for r in records)


@pytest.mark.parametrize('param_key_g', [None, 'params', 'params_ema'])
def test_every_command_loads_the_key_basicsr_test_loads(tmp_path, param_key_g):
    """One param_key rule (``utils/checkpoint.param_key_of``): upscale/explain (``load_net``) and the
    benchmark (``load_method``) read the tensors ``basicsr test`` reads with the same option file:
    ``path.param_key_g``, else ``params`` (BasicSR's SRModel), even when the file has EMA weights."""
    states = {key: _random_net().state_dict() for key in ('params', 'params_ema')}
    states['params_ema'] = {k: v + 1 for k, v in states['params_ema'].items()}
    checkpoint = tmp_path / 'both.pth'
    torch.save(states, checkpoint)
    path_opt = dict(pretrain_network_g=str(checkpoint)) if param_key_g is None else \
        dict(pretrain_network_g=str(checkpoint), param_key_g=param_key_g)
    option_file = write_yaml(tmp_path / 'both.yml', dict(model_type='ArbitraryScaleSRModel', network_g=NET_OPT,
                                                         path=path_opt))
    tested = build_model(dict(model_type='ArbitraryScaleSRModel', num_gpu=0, is_train=False, dist=False, name='t',
                              network_g=dict(NET_OPT), path=dict(path_opt), val=dict()))  # basicsr test's way
    expected = states[param_key_g or 'params']
    assert _same_weights(tested.net_g, expected)
    assert _same_weights(loading.load_net(str(option_file), CPU).net, expected)
    assert _same_weights(load_method(parse_model_arg(f'M={option_file}'), CPU).net, expected)
