"""One image, one scale, one precision: the same pixels from ``basicsr test`` and ``basicsr upscale``.

``basicsr test`` renders through ``ArbitraryScaleSRModel.predict`` (the whole image, ``make_coord``),
``basicsr upscale`` through ``render/tiling.render`` (tiles, or one). At x2.5 every 5th output
row and column has its centre exactly on an LR pixel border, and at x2 every 2nd output pixel has
its corner (MetaSR's query point) on one: the arch's tie-break must decide those alike on every
path, or a tie row differs by a tenth of the range (GaussianSR's offset input jumps by one).
"""
from fractions import Fraction

import pytest
import torch

from basicsr.models import build_model
from gaussiansr_plugin.render.tiling import CPU_QUERY_CHUNK, QUERY_CHUNK, render

LR = (30, 34)  # x2.5 -> (75, 85) exactly, so the tie rows and columns are exact ties
SIZES = {'x2': (60, 68), 'x2.5': (75, 85), 'x2.5x3': (75, 102)}
SMALL = dict(num_feat=8, num_block=1, hidden_list=[16, 16])
ARCHS = {
    'GaussianSR': dict(SMALL, num_kernels=8, num_gs_feat=4),
    'LIIF': SMALL,
    'LIIF_single': dict(SMALL, local_ensemble=False),
    'MetaSR': dict(SMALL, hidden_list=[16]),
}


def _model(network_g, precision='fp32'):
    opt = dict(model_type='ArbitraryScaleSRModel', num_gpu=0, is_train=False, dist=False, name='m',
               network_g=network_g, path=dict(), val=dict(query_chunk=QUERY_CHUNK, mixed_precision=precision))
    torch.manual_seed(0)
    model = build_model(opt)
    for module in model.net_g.modules():  # every layer matters
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.2)
            torch.nn.init.normal_(module.bias, std=0.05)
    return model


def _render(net, lq, size, **kwargs):
    out = torch.full((*size, 3), float('nan'), dtype=torch.float64)

    def sink(k, r0, r1, c0, c1, rgb):
        out[r0:r1, c0:c1] = rgb.double()

    render(net.eval(), lq, [size], sink, **kwargs)
    assert not torch.isnan(out).any()
    return out.permute(2, 0, 1)


def _centre_ties(lr_n, hr_n):
    """Output indices whose centre lies exactly on an LR pixel border (exact arithmetic)."""
    return [i for i in range(hr_n) if (Fraction(2 * i + 1, 2) * Fraction(lr_n, hr_n)).denominator == 1]


@pytest.mark.parametrize('scale', list(SIZES))
@pytest.mark.parametrize('arch', list(ARCHS))
def test_test_and_upscale_give_the_same_pixels(arch, scale):
    size = SIZES[scale]
    model = _model(dict(type=arch.split('_')[0], **ARCHS[arch]))
    lq = torch.rand(1, 3, *LR, generator=torch.Generator().manual_seed(1))
    tested = model.predict(lq, size)[0].double()
    # One tile: the same coordinates, the same network calls, the same bits.
    assert torch.equal(_render(model.net_g, lq, size, tile=0), tested)
    # Tiles of 7 LR pixels: tile borders everywhere, tie rows among them.
    tiled = _render(model.net_g, lq, size, tile=7, chunk=500)
    assert (tiled - tested).abs().max() < 1e-5
    # float64 weights and coordinates make the same choices at the ties (a different choice moves
    # a tie row by ~0.1).
    in_float64 = _render(model.net_g.double(), lq.double(), size, tile=7)
    if arch == 'LIIF' and scale == 'x2.5x3':
        # Not a tie choice: at x3 the output column 100 is centred on the last LR column, whose
        # four ensemble latents are then that column twice over, all four areas ~0 (LIIF's
        # weights there are rounding noise, 1e-9 + ~1e-7 in float32, as in LIIF's own code).
        in_float64[..., 100], tested = tested[..., 100], tested.clone()
    assert (in_float64 - tested).abs().max() < 1e-5


def test_the_premise_x2_5_has_exact_ties():
    assert _centre_ties(LR[0], SIZES['x2.5'][0]) == list(range(2, 75, 5))
    assert _centre_ties(LR[1], SIZES['x2.5'][1]) == list(range(2, 85, 5))


@pytest.mark.parametrize('arch', ['GaussianSR', 'LIIF', 'MetaSR'])
def test_bf16_test_and_upscale_give_the_same_pixels(arch):
    size = SIZES['x2.5']
    model = _model(dict(type=arch, **ARCHS[arch]), precision='bf16')
    lq = torch.rand(1, 3, *LR, generator=torch.Generator().manual_seed(2))
    tested = model.predict(lq, size)[0].double()
    assert torch.equal(_render(model.net_g, lq, size, tile=0, precision='bf16'), tested)
    tiled = _render(model.net_g, lq, size, tile=7, chunk=500, precision='bf16')
    # bf16 layers on tiles: another summation order in the encoder, not another tie choice.
    assert (tiled - tested).abs().max() < 2e-2


def test_a_tie_row_would_differ_by_a_tenth():
    # What the tie-break prevents: GaussianSR's offset input at a tie row, one pixel apart.
    model = _model(dict(type='GaussianSR', **ARCHS['GaussianSR']))
    net = model.net_g
    lq = torch.rand(1, 3, *LR, generator=torch.Generator().manual_seed(1))
    size = SIZES['x2.5']
    tested = model.predict(lq, size)[0].double()
    row = _centre_ties(LR[0], size[0])[3]
    from gaussiansr_plugin.utils.coord import make_cell, make_coord
    coord = make_coord(size).view(*size, 2)[row:row + 1].reshape(1, -1, 2)
    moved = coord.clone()
    moved[..., 0] -= 2e-6  # just above the border: the upper pixel
    cell = make_cell(size, coord.shape[1])[None]
    with torch.no_grad():
        other = net(lq, moved, cell)[0].t().double()
    assert (other - tested[:, row]).abs().max() > 1e-2


def test_query_calls_on_the_cpu_hold_at_most_the_cpu_chunk(monkeypatch):
    # val.query_chunk's default (30,000) asked, but on the CPU each call holds at most
    # CPU_QUERY_CHUNK queries, in whole output rows: larger calls leave the caches (docs/COMPARE.md).
    model = _model(dict(type='LIIF', **SMALL))
    net = model.net_g.eval()
    calls, query = [], net.query
    monkeypatch.setattr(net, 'query',
                        lambda state, coord, cell: calls.append(coord.shape[1]) or query(state, coord, cell))
    lq = torch.rand(1, 3, *LR, generator=torch.Generator().manual_seed(2))
    size = (201, 233)  # 46,833 queries: one call of QUERY_CHUNK would not hold them, two would
    rendered = _render(net, lq, size, chunk=QUERY_CHUNK)
    assert QUERY_CHUNK > CPU_QUERY_CHUNK and sum(calls) == size[0] * size[1]
    assert max(calls) == CPU_QUERY_CHUNK // size[1] * size[1]
    assert torch.equal(rendered, model.predict(lq, size)[0].double())  # predict (val, test) goes the same way
