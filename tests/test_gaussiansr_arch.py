"""GaussianSR: the windowed renderer, gradients, determinism, per-pixel kernels, output sizes."""
import math
import re
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.archs import gaussian_splat
from gaussiansr_plugin.archs.gaussian_splat import build_splat_table, render_dense, splat_query, window_radius
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.utils.coord import make_cell, make_coord
from helpers import load_script


def _random_gaussians(sigma_max, b=2, c=5, h=9, w=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    amp = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    sigma_x = 0.1 + (sigma_max - 0.1) * torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    sigma_y = 0.1 + (sigma_max - 0.1) * torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    rho = 0.9 * (2 * torch.rand(b, h, w, generator=gen, dtype=torch.float64) - 1)
    coord = 2 * torch.rand(b, 400, 2, generator=gen, dtype=torch.float64) - 1
    return amp, sigma_x, sigma_y, rho, coord


def test_windowed_renderer_matches_dense_reference_when_kernels_fit(device):
    amp, sx, sy, rho, coord = (t.to(device) for t in _random_gaussians(sigma_max=0.5))
    radius = window_radius(0.5)
    windowed = splat_query(build_splat_table(amp, sx, sy, rho, radius), coord)
    dense = render_dense(amp, sx, sy, rho, coord)
    assert windowed.shape == dense.shape == (2, 400, 5)
    assert torch.allclose(windowed, dense, atol=1e-5, rtol=0)


def test_renderer_gradients_match_the_dense_reference():
    # The windowed renderer's backward is written by hand; autograd through the dense reference checks it.
    inputs = [t.requires_grad_() for t in _random_gaussians(sigma_max=0.5, b=1, c=3, h=6, w=7)[:4]]
    coord = _random_gaussians(sigma_max=0.5, b=1, c=3, h=6, w=7)[4][:, :150]
    grad_out = torch.randn(1, 150, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    windowed = torch.autograd.grad(splat_query(build_splat_table(*inputs, window_radius(0.5)), coord, chunk=64),
                                   inputs, grad_out)
    dense = torch.autograd.grad(render_dense(*inputs, coord), inputs, grad_out)
    for name, w, d in zip(['amplitude', 'sigma_x', 'sigma_y', 'rho'], windowed, dense):
        # Up to the window's own truncation (1e-4 weights), relative to the gradient's scale.
        assert (w - d).abs().max() < 1e-5 * d.abs().max(), name


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize('train', [False, True])
def test_renderer_memory_is_bounded_by_the_query_chunk(train):
    # However many queries, no intermediate is larger than a block of `chunk` windows (C
    # amplitudes or 3 conic coefficients per window pixel), the per-query output or the table.
    amp, sx, sy, rho, _ = _random_gaussians(sigma_max=1.0, b=2, c=5, h=20, w=20)
    amp.requires_grad_(train)
    table = build_splat_table(amp, sx, sy, rho, 4)
    chunk, num_q = 64, 3000
    coord = 2 * torch.rand(2, num_q, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 1
    with torch.set_grad_enabled(train), _LargestTensor() as probe:
        out = splat_query(table, coord, chunk=chunk)
        if train:
            out.sum().backward()
    bound = max(chunk * 81 * 5, 2 * num_q * 5, table.amplitude.numel())
    assert probe.largest <= bound
    assert 2 * num_q * 81 > 10 * bound  # a renderer holding every window at once would fail


def test_renderer_result_does_not_depend_on_the_chunk():
    amp, sx, sy, rho, coord = _random_gaussians(sigma_max=1.0)
    table = build_splat_table(amp, sx, sy, rho, 4)
    whole = splat_query(table, coord, chunk=10**6)
    # 37 does not divide the 2 x 400 queries: blocks straddle the two images of the batch.
    assert torch.allclose(splat_query(table, coord, chunk=37), whole, atol=1e-12, rtol=0)


def test_unfolded_table_of_the_exported_graphs_renders_the_same():
    # The exported graphs gather whole window rows from an unfolded table; queries in the four
    # corners reach its first and last rows (the latter's unfolded tails are zero padding).
    amp, sx, sy, rho, _ = _random_gaussians(sigma_max=1.0)
    table = build_splat_table(amp, sx, sy, rho, 4)
    unfolded = table.unfold()
    assert unfolded.amplitude.shape == (table.amplitude.shape[0], 9 * 5)
    assert unfolded.channels == table.channels == 5
    corners = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    coord = torch.cat([corners, 2 * torch.rand(396, 2, generator=torch.Generator().manual_seed(4),
                                               dtype=torch.float64) - 1]).expand(2, 400, 2)
    assert torch.allclose(splat_query(unfolded, coord), splat_query(table, coord), atol=1e-12, rtol=0)


def test_renderer_keeps_float32_under_autocast():
    # Under bfloat16 autocast (an encoder giving bfloat16 features), the exponents, normalizers and
    # sums are float32: the same numbers as a float32 run on the same (rounded) amplitudes.
    amp, sx, sy, rho, coord = (t.float() for t in _random_gaussians(sigma_max=1.0))
    amp = amp.bfloat16()
    reference = splat_query(build_splat_table(amp.float(), sx, sy, rho, 4), coord)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        table = build_splat_table(amp, sx, sy, rho, 4)
        mixed = splat_query(table, coord)
    assert table.amplitude.dtype == table.exponent.dtype == mixed.dtype == torch.float32
    assert torch.equal(mixed, reference)


def test_renderer_benchmark_script_compares_two_renderers(capsys, tmp_path):
    # "Old" renderer: the dense reference (every Gaussian at every query) behind the windowed
    # renderer's interface. The script must time both and report how far their outputs differ:
    # not 0 (it really ran the other renderer), and within the window tolerance's reach.
    dense = tmp_path / 'dense_splat.py'
    dense.write_text('from gaussiansr_plugin.archs.gaussian_splat import render_dense\n\n\n'
                     'def build_splat_table(amplitude, sigma_x, sigma_y, rho, radius):\n'
                     '    return amplitude, sigma_x, sigma_y, rho\n\n\n'
                     'def splat_query(table, coord):\n'
                     '    return render_dense(*table, coord)\n')
    module = load_script('benchmark_renderer')
    threads = torch.get_num_threads()
    try:
        module.main(['--old', str(dense), '--sizes', '16', '--lq-size', '8', '--repeats', '1',
                     '--threads', '1', '--train', '--train-batch', '1', '--train-lq', '8', '--channels-last'])
    finally:
        torch.set_num_threads(threads)
        module.use_renderer(gaussian_splat)  # the arch module's renderer, as before
    out = capsys.readouterr().out
    for row in ('splat old', 'splat new', 'GaussianSR old', 'GaussianSR new', 'LIIF', 'encoder NHWC'):
        assert f'| {row} |' in out
    difference = float(re.search(r'16²: max \|new - old\| output (\S+)', out).group(1))
    assert 0 < difference < 1e-5, out


def test_window_chosen_for_the_bank_sigma_range_is_wide_enough():
    # The default bank allows sigma up to 1 LR pixel: its window must keep the error at the
    # tolerance level even for the widest, most elongated kernels.
    net = GaussianSR()
    sigma_max = net.bank.sigma_max
    amp, sx, sy, rho, coord = _random_gaussians(sigma_max=sigma_max, seed=1)
    windowed = splat_query(build_splat_table(amp, sx, sy, rho, net.radius), coord)
    dense = render_dense(amp, sx, sy, rho, coord)
    assert (windowed - dense).abs().max() < 1e-4
    # ... and one step narrower would not be enough: the radius is not wider than needed.
    narrower = splat_query(build_splat_table(amp, sx, sy, rho, net.radius - 1), coord)
    assert (narrower - dense).abs().max() > (windowed - dense).abs().max() * 10


def test_renderer_is_exact_at_pixel_centres_for_a_lone_gaussian():
    amp = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    amp[0, 0, 2, 3] = 1.0
    sigma = torch.full((1, 5, 5), 0.4, dtype=torch.float64)
    rho = torch.zeros(1, 5, 5, dtype=torch.float64)
    coord = make_coord((5, 5), dtype=torch.float64).unsqueeze(0)
    out = splat_query(build_splat_table(amp, sigma, sigma, rho, 3), coord).view(5, 5)
    peak = 1 / (2 * math.pi * 0.4 * 0.4)
    assert out[2, 3].item() == pytest.approx(peak)
    assert out[2, 4].item() == pytest.approx(peak * math.exp(-0.5 / 0.16))
    assert out.argmax().item() == 2 * 5 + 3


def test_gradients_reach_encoder_classifier_and_bank_in_training(device):
    torch.manual_seed(0)
    net = GaussianSR(**TINY_GAUSSIANSR).to(device).train()
    for p in net.decoder.parameters():  # the zero-initialized last layer would block the gradient
        torch.nn.init.normal_(p, std=0.1)
    lq = torch.rand(2, 3, 8, 8, device=device)
    coord = make_coord((16, 16), device=device).expand(2, -1, -1)
    net(lq, coord, make_cell((16, 16), 256, device=device).expand(2, -1, -1)).square().mean().backward()
    for name, param in [('encoder', net.encoder.conv_first.weight), ('classifier', net.classifier.weight),
                        ('bank', net.bank.raw)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_uses_hard_kernels(device):
    torch.manual_seed(0)
    net = GaussianSR(**TINY_GAUSSIANSR).to(device).eval()
    lq = torch.rand(1, 3, 10, 10, device=device)
    coord = make_coord((25, 25), device=device).unsqueeze(0)
    cell = make_cell((25, 25), coord.shape[1], device=device).unsqueeze(0)
    with torch.no_grad():
        first, second = net(lq, coord, cell), net(lq, coord, cell)
        params = net.kernel_params(net.encoder(lq))
    assert torch.equal(first, second)
    bank = net.bank()
    # Every pixel's (sigma_x, sigma_y, rho, opacity) is exactly one row of the bank.
    per_pixel = params.permute(0, 2, 3, 1).reshape(-1, 4)
    assert ((per_pixel[:, None, :] == bank[None]).all(-1)).any(-1).all()


def test_each_pixel_has_its_own_kernel_independent_of_the_batch():
    # The released code averaged kernels over the batch; here an image's kernels do not depend
    # on the other images of its batch, and differ between pixels.
    torch.manual_seed(0)
    net = GaussianSR(**TINY_GAUSSIANSR).eval()
    torch.nn.init.normal_(net.classifier.weight, std=1.0)
    a, b = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        alone = net.kernel_params(net.encoder(a))
        batched = net.kernel_params(net.encoder(torch.cat([a, b])))
    assert torch.allclose(alone[0], batched[0], atol=1e-6)
    assert alone[0, 0].unique().numel() > 1


@pytest.mark.parametrize('out_size', [(20, 24), (25, 30), (23, 29), (84, 96)])
def test_any_scale_gives_the_right_output_size(out_size, device):
    net = GaussianSR(**TINY_GAUSSIANSR).to(device).eval()
    lq = torch.rand(2, 3, 10, 12, device=device)
    coord = make_coord(out_size, device=device).expand(2, -1, -1)
    cell = make_cell(out_size, coord.shape[1], device=device).expand(2, -1, -1)
    with torch.no_grad():
        out = net(lq, coord, cell)
    assert out.shape == (2, out_size[0] * out_size[1], 3)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('options, count', [({}, 1_494_327), ({'num_gs_feat': 16}, 1_494_327),
                                            ({'num_gs_feat': 0}, 1_436_227)])
def test_parameter_counts_are_the_ones_the_readme_states(options, count):
    # README "The model", items 8 and 9: the default (below EDSR-baseline-LIIF's 1,567,323),
    # 16 splatted channels (no more than 8) and Bicubic-64.
    assert sum(p.numel() for p in GaussianSR(**options).parameters()) == count
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text(encoding='utf-8')
    assert f'{count:,}' in readme


def test_bad_arch_options_name_the_key():
    with pytest.raises(ValueError, match='sigma_range'):
        GaussianSR(sigma_range=[1.0, 0.5])
    with pytest.raises(ValueError, match='num_gs_feat'):
        GaussianSR(num_feat=16, num_gs_feat=32)


def test_classes_are_registered_in_basicsr_registries():
    assert ARCH_REGISTRY.get('GaussianSR') is GaussianSR
    assert DATASET_REGISTRY.get('ArbitraryScalePairedDataset').__name__ == 'ArbitraryScalePairedDataset'
    assert MODEL_REGISTRY.get('ArbitraryScaleSRModel').__name__ == 'ArbitraryScaleSRModel'
