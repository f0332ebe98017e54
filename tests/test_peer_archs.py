"""Tests for the peer archs LIIF and MetaSR (gaussiansr_plugin.archs.liif_arch / metasr_arch)."""

import os

os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest
import torch
from torch.nn import functional as F

import gaussiansr_plugin  # noqa: F401  (patches basicsr before the imports below)
from basicsr.utils.registry import ARCH_REGISTRY
from gaussiansr_plugin.archs import liif_arch, metasr_arch
from gaussiansr_plugin.utils.coord import make_cell, make_coord

LR_SIZE = (7, 9)
# x2, a non-integer x2.43 / x2.44 and x3 from a 7x9 LR.
HR_SIZES = [(14, 18), (17, 22), (21, 27)]
TINY = dict(num_feat=8, num_block=1)


def _tiny(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == 'LIIF':
        return liif_arch.LIIF(**TINY, hidden_list=[16], **kwargs)
    return metasr_arch.MetaSR(**TINY, hidden_list=[16], **kwargs)


def _queries(hr_size, batch=2, dtype=torch.float32):
    coord = make_coord(hr_size, dtype=dtype)
    cell = make_cell(hr_size, coord.shape[0], dtype=dtype)
    return coord.expand(batch, -1, -1), cell.expand(batch, -1, -1)


def _lq(batch=2, dtype=torch.float32):
    return torch.rand(batch, 3, *LR_SIZE, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _sample_nearest(feat: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """LIIF's latent look-up: (B, C, h, w) at (B, Q, 2) -> (B, Q, C)."""
    grid = coord.flip(-1).unsqueeze(1)
    return F.grid_sample(feat, grid, mode='nearest', align_corners=False)[:, :, 0, :].permute(0, 2, 1)


def _unfolded(net: torch.nn.Module, lq: torch.Tensor) -> torch.Tensor:
    feat = net.encoder(lq)
    b, c, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)


@pytest.mark.parametrize('name', ['LIIF', 'MetaSR'])
@pytest.mark.parametrize('hr_size', HR_SIZES)
def test_output_size_and_chunked_query(name, hr_size, device):
    net = _tiny(name).to(device).eval()
    lq = _lq().to(device)
    coord, cell = (t.to(device) for t in _queries(hr_size))
    with torch.no_grad():
        out = net(lq, coord, cell)
        state = net.encode(lq)
        split = coord.shape[1] // 3
        chunks = [net.query(state, coord[:, s], cell[:, s]) for s in (slice(0, split), slice(split, None))]
    assert out.shape == (2, hr_size[0] * hr_size[1], 3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(torch.cat(chunks, dim=1), out)


def test_liif_local_ensemble_is_swapped_area_average():
    net = _tiny('LIIF').double().eval()
    lq = _lq(dtype=torch.float64)
    coord, cell = _queries((17, 22), dtype=torch.float64)
    h, w = LR_SIZE
    size = torch.tensor([h, w], dtype=torch.float64)
    with torch.no_grad():
        feat = _unfolded(net, lq)
        centres = make_coord(LR_SIZE, dtype=torch.float64).view(h, w, 2).permute(2, 0, 1)
        centres = centres.unsqueeze(0).expand(lq.shape[0], -1, -1, -1)
        preds, areas = {}, {}
        for v_row in (-1, 1):
            for v_col in (-1, 1):
                shifted = coord + torch.tensor([v_row / h, v_col / w], dtype=torch.float64) + 1e-6
                shifted = shifted.clamp(-1 + 1e-6, 1 - 1e-6)
                rel = (coord - _sample_nearest(centres, shifted)) * size
                inp = torch.cat([_sample_nearest(feat, shifted), rel, cell * size], dim=-1)
                preds[v_row, v_col] = net.imnet(inp)
                areas[v_row, v_col] = (rel[..., 0] * rel[..., 1]).abs() + 1e-9
        total = sum(areas.values())
        # Each latent is weighted by the area of the diagonally opposite one.
        expected = sum(preds[v] * (areas[-v[0], -v[1]] / total).unsqueeze(-1) for v in preds)
        out = net(lq, coord, cell)
    torch.testing.assert_close(out, expected * 0.5 + 0.5, rtol=1e-10, atol=1e-10)
    # The four latents really differ, so the check above is not vacuous.
    assert not torch.allclose(preds[-1, -1], preds[1, 1])


def test_liif_without_ensemble_uses_the_nearest_latent_only():
    net = _tiny('LIIF', local_ensemble=False).double().eval()
    lq = _lq(dtype=torch.float64)
    coord, cell = _queries((21, 27), dtype=torch.float64)
    size = torch.tensor(LR_SIZE, dtype=torch.float64)
    with torch.no_grad():
        feat = _unfolded(net, lq)
        centres = make_coord(LR_SIZE, dtype=torch.float64).view(*LR_SIZE, 2).permute(2, 0, 1).expand(2, -1, -1, -1)
        near = coord.clamp(-1 + 1e-6, 1 - 1e-6)
        rel = (coord - _sample_nearest(centres, near)) * size
        expected = net.imnet(torch.cat([_sample_nearest(feat, near), rel, cell * size], dim=-1)) * 0.5 + 0.5
        torch.testing.assert_close(net(lq, coord, cell), expected, rtol=1e-10, atol=1e-10)


def test_metasr_applies_predicted_filter_to_unfolded_latent():
    net = _tiny('MetaSR').double().eval()
    lq = _lq(dtype=torch.float64)
    coord, cell = _queries((17, 22), dtype=torch.float64)
    h, w = LR_SIZE
    with torch.no_grad():
        feat = _unfolded(net, lq)
        corner = coord - cell / 2
        near = (corner + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
        q_feat = _sample_nearest(feat, near)
        # Independent route to the LR pixel: floor of the corner position in LR pixels.
        lr_pos = (corner + 1) / 2 * torch.tensor([h, w], dtype=torch.float64)
        offset = lr_pos - torch.floor(lr_pos + 1e-9)
        assert (offset >= 0).all() and (offset < 1).all()
        inv_scale = torch.full_like(offset[..., :1], h / 17)
        weight = net.imnet(torch.cat([offset, inv_scale], dim=-1)).view(2, -1, 8 * 9, 3)
        expected = torch.einsum('bqk,bqkc->bqc', q_feat, weight) * 0.5 + 0.5
        torch.testing.assert_close(net(lq, coord, cell), expected, rtol=1e-9, atol=1e-9)


def test_default_parameter_counts():
    # EDSR-baseline-LIIF / -MetaSR of the LIIF repository (1,567,323 / 1,665,560) less the 24
    # parameters of EDSR's two frozen 1x1 mean-shift convs, which our encoder does not keep.
    assert sum(p.numel() for p in liif_arch.LIIF().parameters()) == 1_567_323 - 24 == 1_567_299
    assert sum(p.numel() for p in metasr_arch.MetaSR().parameters()) == 1_665_560 - 24 == 1_665_536


def test_registered_in_basicsr():
    assert ARCH_REGISTRY.get('LIIF') is liif_arch.LIIF
    assert ARCH_REGISTRY.get('MetaSR') is metasr_arch.MetaSR


@pytest.mark.parametrize('name', ['LIIF', 'MetaSR'])
def test_gradients_reach_encoder(name, device):
    net = _tiny(name).to(device).train()
    coord, cell = (t.to(device) for t in _queries((17, 22)))
    net(_lq().to(device), coord, cell).abs().mean().backward()
    for module in (net.encoder.conv_first, net.encoder.body, net.imnet):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
