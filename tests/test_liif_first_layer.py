"""LIIF's first MLP layer split into a per-pixel term (``encode``) and a per-query term (``query``).

The reference below is LIIF's original formulation: the MLP applied to the concatenated
[unfolded latent, rel_coord, rel_cell] of every query and ensemble member. The split must give
the same outputs and gradients up to floating-point summation order.
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import gaussiansr_plugin  # noqa: E402,F401  (patches basicsr before the imports below)
from gaussiansr_plugin.archs.latent_util import (EPS_CLAMP, EPS_SHIFT, gather_latent, latent_centre,  # noqa: E402
                                                 make_latent_state, nearest_latent, project_latent)
from gaussiansr_plugin.archs.liif_arch import EPS_AREA, LIIF  # noqa: E402
from gaussiansr_plugin.utils.coord import make_cell, make_coord  # noqa: E402

LR_SIZE = (5, 8)  # non-square
BATCH = 3
CONFIGS = {
    'default': {},
    'no_unfold': dict(feat_unfold=False),
    'no_cell': dict(cell_decode=False),
    'no_ensemble': dict(local_ensemble=False),
    'all_off': dict(feat_unfold=False, cell_decode=False, local_ensemble=False),
    'rgb_skip': dict(rgb_skip=True),
    'deeper': dict(hidden_list=[16, 12]),
}


def _net(config: str, dtype: torch.dtype) -> LIIF:
    torch.manual_seed(0)
    kwargs = dict(num_feat=8, num_block=1, hidden_list=[16])
    kwargs.update(CONFIGS[config])
    net = LIIF(**kwargs).to(dtype)
    with torch.no_grad():
        # rgb_skip zeroes the last layer; random values keep the comparison meaningful. Non-zero
        # biases make sure the first layer's bias is counted exactly once.
        for layer in net.imnet:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 0.3)
                layer.bias.normal_(0, 0.3)
    return net


def _original_query(net: LIIF, lq: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """LIIF's formulation: the whole MLP on [latent (9C or C), rel_coord, rel_cell] per member."""
    state = make_latent_state(net.encoder(lq), lq)
    size = coord.new_tensor(state.lr_size)
    if net.local_ensemble:
        shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], EPS_SHIFT
    else:
        shifts, eps = [(0, 0)], 0.0
    preds, areas = [], []
    for shift in shifts:
        shifted = (coord + coord.new_tensor(shift) / size + eps).clamp(-1 + EPS_CLAMP, 1 - EPS_CLAMP)
        index = nearest_latent(shifted, state.lr_size)
        rel_coord = (coord - latent_centre(index, state.lr_size, coord.dtype)) * size
        inputs = [gather_latent(state, index, net.feat_unfold), rel_coord]
        if net.cell_decode:
            inputs.append(cell * size)
        preds.append(net.imnet(torch.cat(inputs, dim=-1)))
        areas.append(torch.abs(rel_coord[..., 0] * rel_coord[..., 1]) + EPS_AREA)
    total = torch.stack(areas).sum(dim=0)
    if net.local_ensemble:
        areas = areas[::-1]
    blended = sum(pred * (area / total).unsqueeze(-1) for pred, area in zip(preds, areas))
    return net.to_rgb(blended, lq, coord)


def _inputs(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(1)
    lq = torch.rand(BATCH, 3, *LR_SIZE, generator=gen, dtype=dtype)
    # A x2.6 / x3.1 grid (its outermost queries are the ones nearest the borders), queries right
    # at the corners and edges of [-1, 1], and random ones, each image with its own.
    hr_size = (13, 25)
    grid = make_coord(hr_size, dtype=dtype).expand(BATCH, -1, -1)
    edge = torch.tensor([[-1, -1], [-1, 1], [1, -1], [1, 1], [-1 + 1e-7, 0.3], [0.2, 1 - 1e-7], [0, 0]], dtype=dtype)
    rand = torch.rand(BATCH, 50, 2, generator=gen, dtype=dtype) * 2 - 1
    coord = torch.cat([grid, edge.expand(BATCH, -1, -1), rand], dim=1)
    cell = make_cell(hr_size, coord.shape[1], dtype=dtype).expand(BATCH, -1, -1).clone()
    cell[:, grid.shape[1]:] = torch.rand(BATCH, coord.shape[1] - grid.shape[1], 2, generator=gen, dtype=dtype) * 0.5
    return lq, coord, cell


@pytest.mark.parametrize('config', CONFIGS)
@pytest.mark.parametrize('dtype, atol', [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_eval_output_equals_original_formulation(config, dtype, atol):
    net = _net(config, dtype).eval()
    lq, coord, cell = _inputs(dtype)
    with torch.no_grad():
        expected = _original_query(net, lq, coord, cell)
        out = net(lq, coord, cell)
        # The way ArbitraryScaleSRModel.predict calls it: encode once, query in chunks.
        state = net.encode(lq)
        chunked = torch.cat([net.query(state, coord[:, s:s + 100], cell[:, s:s + 100])
                             for s in range(0, coord.shape[1], 100)], dim=1)
    assert (out - expected).abs().max() < atol
    assert (chunked - expected).abs().max() < atol
    # Not vacuous: the output varies over queries and images.
    assert expected.std(dim=1).min() > 1e-3 and (expected[0] - expected[1]).abs().max() > 1e-3


@pytest.mark.parametrize('config', CONFIGS)
@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_training_gradients_equal_original_formulation(config, dtype, tol):
    net = _net(config, dtype).train()
    lq, coord, cell = _inputs(dtype)
    lq.requires_grad_(True)
    gt = torch.rand(coord.shape[:2] + (3, ), generator=torch.Generator().manual_seed(2), dtype=dtype)

    def grads(forward):
        net.zero_grad()
        lq.grad = None
        out = forward()
        F.l1_loss(out, gt).backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()] + [lq.grad.clone()]

    out_ref, ref = grads(lambda: _original_query(net, lq, coord, cell))
    out_new, new = grads(lambda: net(lq, coord, cell))
    assert (out_new - out_ref).abs().max() < tol
    for got, want in zip(new, ref):
        # Relative to the gradient's scale: float32 sums of thousands of terms in a new order.
        assert (got - want).abs().max() <= tol * max(want.abs().max().item(), 1.0)
    first = net.imnet[0].weight.grad
    assert first.abs().sum() > 0 and ref[-1].abs().sum() > 0


@pytest.mark.parametrize('unfold', [True, False])
def test_project_latent_is_linear_on_gathered_latents(unfold):
    gen = torch.Generator().manual_seed(3)
    feat = torch.randn(2, 4, *LR_SIZE, generator=gen, dtype=torch.float64)
    weight = torch.randn(6, 4 * (9 if unfold else 1), generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64)
    projected = project_latent(feat, weight, bias, unfold)
    # Every pixel, border ones included (their outside neighbours are zero in F.unfold's layout).
    h, w = LR_SIZE
    index = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij'), dim=-1).view(1, -1, 2)
    latents = gather_latent(make_latent_state(feat, feat), index.expand(2, -1, -1), unfold)
    expected = F.linear(latents, weight, bias).transpose(1, 2).reshape(2, 6, h, w)
    torch.testing.assert_close(projected, expected, rtol=1e-12, atol=1e-12)


def test_project_latent_names_a_wrong_weight_width():
    with pytest.raises(ValueError, match='project_latent.*36.*4 channels'):
        project_latent(torch.zeros(1, 4, 3, 3), torch.zeros(6, 4), unfold=True)
