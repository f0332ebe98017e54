"""The archs' options: rgb_skip (all three), GaussianSR's ablation knobs and our fixes as options."""
from types import SimpleNamespace

import pytest
import torch

from basicsr.data import build_dataset
from basicsr.models import build_model
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.archs import GaussianSR, LIIF, MetaSR, gaussiansr_arch
from gaussiansr_plugin.archs.arch_util import POSITION_DIMS, coord_to_lr_pixels, nearest_centre, sample_bicubic
from gaussiansr_plugin.utils.coord import make_cell, make_coord
from helpers import write_smooth_images

# TINY_GAUSSIANSR without its rgb_skip: the options under test set their own.
TINY_GS = {k: v for k, v in TINY_GAUSSIANSR.items() if k != 'rgb_skip'}
TINY = {'GaussianSR': TINY_GS, 'LIIF': dict(num_feat=8, num_block=1, hidden_list=[16]),
        'MetaSR': dict(num_feat=8, num_block=1, hidden_list=[16])}
ARCHS = {'GaussianSR': GaussianSR, 'LIIF': LIIF, 'MetaSR': MetaSR}


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _queries(lr_size, scale, batch=1):
    out_size = tuple(round(n * scale) for n in lr_size)
    coord = make_coord(out_size)
    return coord.expand(batch, -1, -1), make_cell(out_size, coord.shape[0]).expand(batch, -1, -1)


def _randomize_decoder(net: GaussianSR, std: float = 0.3) -> None:
    for p in net.decoder.parameters():
        torch.nn.init.normal_(p, std=std)


@pytest.mark.parametrize('name', list(ARCHS))
def test_rgb_skip_starts_exactly_at_the_bicubic_sample(name):
    torch.manual_seed(0)
    net = ARCHS[name](**TINY[name], rgb_skip=True).eval()
    plain = ARCHS[name](**TINY[name])
    lq = torch.rand(2, 3, 7, 9)
    coord, cell = _queries((7, 9), 2.6, batch=2)
    with torch.no_grad():
        out, without = net(lq, coord, cell), plain.eval()(lq, coord, cell)
    assert torch.equal(out, sample_bicubic(lq, coord))
    # Off by default (as published), and then the output is not the bicubic sample.
    assert not plain.rgb_skip and not torch.allclose(without, sample_bicubic(lq, coord), atol=1e-3)
    # Same parameters either way: only the output map and the initialization differ.
    assert net.state_dict().keys() == plain.state_dict().keys() and _count(net) == _count(plain)


@pytest.mark.parametrize('name', ['LIIF', 'MetaSR'])
def test_peer_rgb_skip_is_a_residual_in_the_normalized_space(name):
    torch.manual_seed(0)
    skip = ARCHS[name](**TINY[name], rgb_skip=True).double().eval()
    plain = ARCHS[name](**TINY[name]).double().eval()
    plain.load_state_dict(skip.state_dict())
    for p in skip.imnet[-1].parameters():
        torch.nn.init.normal_(p, std=0.1)
    plain.imnet[-1].load_state_dict(skip.imnet[-1].state_dict())
    lq = torch.rand(1, 3, 7, 9, dtype=torch.float64)
    coord, cell = (t.double() for t in _queries((7, 9), 2.4))
    with torch.no_grad():
        # plain = pred * 0.5 + 0.5, skip = pred * 0.5 + bicubic.
        expected = plain(lq, coord, cell) - 0.5 + sample_bicubic(lq, coord)
        torch.testing.assert_close(skip(lq, coord, cell), expected, rtol=1e-12, atol=1e-12)


def test_ablation_parameter_counts():
    default = GaussianSR()
    feat, kernels = 64, 100
    classifier_and_bank = feat * kernels * 9 + kernels + 4 * kernels
    assert not default.rgb_skip and default.pos_encoding == 'offset' and default.eval_kernel == 'argmax'
    assert _count(GaussianSR(num_gs_feat=0)) == _count(default) - classifier_and_bank
    # The decoder sees all 64 channels whatever the split: 16 GS channels cost nothing more.
    assert _count(GaussianSR(num_gs_feat=16)) == _count(default)
    for k in (1, 400):
        assert _count(GaussianSR(num_kernels=k)) == _count(default) + (k - kernels) * (feat * 9 + 1 + 4)
    extra_inputs = POSITION_DIMS['fourier'] - POSITION_DIMS['offset']
    assert _count(GaussianSR(pos_encoding='fourier')) == _count(default) + extra_inputs * 256


def test_bicubic64_has_no_splatting_stream(monkeypatch):
    torch.manual_seed(0)
    net = GaussianSR(**dict(TINY_GS, num_gs_feat=0)).eval()
    _randomize_decoder(net)
    assert net.classifier is None and net.bank is None
    assert not [k for k in net.state_dict() if k.startswith(('classifier', 'bank'))]

    def fail(*args, **kwargs):
        raise AssertionError('the splat path ran')

    monkeypatch.setattr(gaussiansr_arch, 'build_splat_table', fail)
    monkeypatch.setattr(gaussiansr_arch, 'splat_query', fail)
    lq = torch.rand(1, 3, 6, 8)
    coord, cell = _queries((6, 8), 3.2)
    with torch.no_grad():
        out = net(lq, coord, cell)
        # Reference: every channel sampled bicubically, then the offset and the cell. Row 9 of the
        # 19 lies on an LR pixel border (position 2.5): the tie goes to the next pixel (3, offset -0.5).
        pos = coord_to_lr_pixels(coord, (6, 8))
        offset = pos - nearest_centre(coord, (6, 8))
        assert abs(offset[0, 9 * 26, 0] + 0.5) < 1e-6
        inputs = [sample_bicubic(net.encoder(lq), coord), offset, cell * torch.tensor([6., 8.]) / 2]
        expected = net.decoder(torch.cat(inputs, dim=-1))
    torch.testing.assert_close(out, expected)
    assert net.pop_kernel_max_prob() is None


def test_all_channels_splatted_works():
    net = GaussianSR(**dict(TINY_GS, num_gs_feat=TINY_GS['num_feat'])).eval()
    coord, cell = _queries((5, 6), 2.5)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 5, 6), coord, cell)
    assert out.shape == (1, coord.shape[1], 3) and torch.isfinite(out).all()


@pytest.mark.parametrize('options', [dict(num_kernels=1), dict(gumbel_hard=True), dict(num_gs_feat=0)])
def test_ablation_variants_train(options):
    """A few Adam steps on one batch lower the loss, and the gradient reaches every part."""
    torch.manual_seed(0)
    net = GaussianSR(**dict(TINY_GS, **options)).train()
    _randomize_decoder(net, std=0.1)
    gen = torch.Generator().manual_seed(1)
    lq = torch.rand(2, 3, 8, 8, generator=gen)
    coord, cell = _queries((8, 8), 2, batch=2)
    target = sample_bicubic(lq, coord)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = (net(lq, coord, cell) - target).abs().mean()
        loss.backward()
        if not losses and net.bank is not None:
            assert net.bank.raw.grad.abs().sum() > 0
            if options.get('num_kernels') != 1:  # one kernel: the label is always 1, nothing to learn
                assert net.classifier.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_gumbel_hard_trains_on_bank_kernels():
    torch.manual_seed(0)
    net = GaussianSR(**dict(TINY_GS, gumbel_hard=True)).train()
    torch.nn.init.normal_(net.classifier.weight, std=1.0)
    params = net.kernel_params(net.encoder(torch.rand(1, 3, 6, 6)))
    per_pixel = params.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    bank = net.bank().detach()
    # Straight-through one-hot labels: each pixel's training kernel is one row of the bank.
    assert (per_pixel[:, None, :] - bank[None]).abs().amax(-1).amin(-1).max() < 1e-6


def _border_pairs(lr_size, row=2.3, delta=1e-5):
    """Queries just left and right of the column borders of a row (LR pixel units)."""
    h, w = lr_size
    borders = torch.arange(w - 1, dtype=torch.float64) + 0.5
    cols = torch.stack([borders - delta, borders + delta], dim=1).reshape(-1)
    pos = torch.stack([torch.full_like(cols, row), cols], dim=-1)
    coord = ((pos + 0.5) / torch.tensor(lr_size, dtype=torch.float64) * 2 - 1).float().unsqueeze(0)
    return coord, make_cell((h * 3, w * 3), coord.shape[1]).unsqueeze(0)


def test_fourier_position_is_continuous_across_pixel_borders():
    lq = torch.rand(1, 3, 6, 9, generator=torch.Generator().manual_seed(2))
    coord, cell = _border_pairs((6, 9))
    jumps = {}
    for encoding in ('offset', 'fourier'):
        torch.manual_seed(0)
        net = GaussianSR(**dict(TINY_GS, pos_encoding=encoding)).eval()
        _randomize_decoder(net)
        with torch.no_grad():
            out = net(lq, coord, cell).view(-1, 2, 3)
        jumps[encoding] = (out[:, 1] - out[:, 0]).abs().mean().item()
    # Offset: the input flips from +0.5 to -0.5 at the border, the output steps. Fourier: only
    # the change over the 2e-5 pixel move remains.
    assert jumps['offset'] > 1e-2
    assert jumps['fourier'] < jumps['offset'] / 1000


@pytest.mark.parametrize('mode', ['argmax', 'soft'])
def test_eval_kernels_are_deterministic(mode):
    torch.manual_seed(0)
    net = GaussianSR(**dict(TINY_GS, eval_kernel=mode)).eval()
    torch.nn.init.normal_(net.classifier.weight, std=0.5)
    lq = torch.rand(1, 3, 8, 8)
    coord, cell = _queries((8, 8), 2.5)
    with torch.no_grad():
        assert torch.equal(net(lq, coord, cell), net(lq, coord, cell))
        feat = net.encoder(lq)
        params = net.kernel_params(feat)
        probs = torch.softmax(net.classifier(feat), dim=1)
    bank = net.bank().detach()
    if mode == 'soft':
        expected = torch.einsum('bkhw,kp->bphw', probs, bank)
    else:
        expected = bank[probs.argmax(dim=1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(params, expected)


def test_soft_and_argmax_share_weights_and_differ_unless_confident():
    torch.manual_seed(0)
    argmax = GaussianSR(**TINY_GS).eval()
    soft = GaussianSR(**dict(TINY_GS, eval_kernel='soft')).eval()
    soft.load_state_dict(argmax.state_dict())
    _randomize_decoder(argmax)
    soft.decoder.load_state_dict(argmax.decoder.state_dict())
    lq = torch.rand(1, 3, 8, 8)
    coord, cell = _queries((8, 8), 3)
    with torch.no_grad():
        assert not torch.allclose(argmax(lq, coord, cell), soft(lq, coord, cell), atol=1e-4)
        for net in (argmax, soft):  # a classifier sure of its choice: both modes agree
            net.classifier.weight.mul_(1e4)
            net.classifier.bias.mul_(1e4)
        torch.testing.assert_close(argmax(lq, coord, cell), soft(lq, coord, cell))


def test_kernel_max_prob_is_the_mean_confidence_since_the_last_read():
    torch.manual_seed(0)
    net = GaussianSR(**TINY_GS)
    a, b = torch.rand(1, 3, 6, 6), torch.rand(2, 3, 5, 7)
    net.train().encode(a)  # training (noisy labels) is not counted
    assert net.pop_kernel_max_prob() is None
    net.eval()
    with torch.no_grad():
        net.encode(a)
        net.encode(b)
        maxima = [torch.softmax(net.classifier(net.encoder(x)), dim=1).amax(dim=1).flatten() for x in (a, b)]
    expected = torch.cat(maxima).mean().item()
    assert net.pop_kernel_max_prob() == pytest.approx(expected, rel=1e-6)
    assert 1 / 16 <= expected <= 1
    assert net.pop_kernel_max_prob() is None  # read resets the tally


def test_validation_logs_kernel_max_prob(tmp_path):
    write_smooth_images(tmp_path / 'val', 2, size=(24, 30))
    model = build_model(dict(model_type='ArbitraryScaleSRModel', num_gpu=0, is_train=False, dist=False, name='m',
                             network_g=dict(type='GaussianSR', **TINY_GS), path=dict(),
                             val=dict(metrics=dict(psnr=dict(type='calculate_psnr_pt')))))
    dataset = build_dataset(dict(name='tiny_x2', type='ArbitraryScalePairedDataset', phase='val',
                                 dataroot_gt=str(tmp_path / 'val'), scale=2))
    scalars = {}
    tb_logger = SimpleNamespace(add_scalar=lambda tag, value, step: scalars.__setitem__(tag, (value, step)))
    model.nondist_validation(SimpleNamespace(dataset=dataset), 7, tb_logger, save_img=False)
    value, step = scalars['kernel_max_prob/tiny_x2']
    assert step == 7 and 1 / 16 <= value <= 1
    assert model.net_g.pop_kernel_max_prob() is None  # consumed by the validation


def test_bad_option_values_name_the_key():
    with pytest.raises(ValueError, match='pos_encoding'):
        GaussianSR(pos_encoding='sine')
    with pytest.raises(ValueError, match='eval_kernel'):
        GaussianSR(eval_kernel='mean')
    with pytest.raises(ValueError, match='num_gs_feat'):
        GaussianSR(num_gs_feat=-1)
