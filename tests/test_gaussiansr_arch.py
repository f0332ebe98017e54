"""GaussianSR: the windowed renderer, gradients, determinism, per-pixel kernels, output sizes."""
import math

import pytest
import torch

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.archs.gaussian_splat import build_splat_table, render_dense, splat_query, window_radius
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.utils.coord import make_cell, make_coord


def _random_gaussians(sigma_max, b=2, c=5, h=9, w=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    amp = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    sigma_x = 0.1 + (sigma_max - 0.1) * torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    sigma_y = 0.1 + (sigma_max - 0.1) * torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    rho = 0.9 * (2 * torch.rand(b, h, w, generator=gen, dtype=torch.float64) - 1)
    coord = 2 * torch.rand(b, 400, 2, generator=gen, dtype=torch.float64) - 1
    return amp, sigma_x, sigma_y, rho, coord


def test_windowed_renderer_matches_dense_reference_when_kernels_fit():
    amp, sx, sy, rho, coord = _random_gaussians(sigma_max=0.5)
    radius = window_radius(0.5)
    windowed = splat_query(build_splat_table(amp, sx, sy, rho, radius), coord)
    dense = render_dense(amp, sx, sy, rho, coord)
    assert windowed.shape == dense.shape == (2, 400, 5)
    assert torch.allclose(windowed, dense, atol=1e-5, rtol=0)


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


def test_gradients_reach_encoder_classifier_and_bank_in_training():
    torch.manual_seed(0)
    net = GaussianSR(**TINY_GAUSSIANSR).train()
    for p in net.decoder.parameters():  # the zero-initialized last layer would block the gradient
        torch.nn.init.normal_(p, std=0.1)
    lq = torch.rand(2, 3, 8, 8)
    coord = make_coord((16, 16)).expand(2, -1, -1)
    net(lq, coord, make_cell((16, 16), 256).expand(2, -1, -1)).square().mean().backward()
    for name, param in [('encoder', net.encoder.conv_first.weight), ('classifier', net.classifier.weight),
                        ('bank', net.bank.raw)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_uses_hard_kernels():
    torch.manual_seed(0)
    net = GaussianSR(**TINY_GAUSSIANSR).eval()
    lq = torch.rand(1, 3, 10, 10)
    coord = make_coord((25, 25)).unsqueeze(0)
    cell = make_cell((25, 25), coord.shape[1]).unsqueeze(0)
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
def test_any_scale_gives_the_right_output_size(out_size):
    net = GaussianSR(**TINY_GAUSSIANSR).eval()
    lq = torch.rand(2, 3, 10, 12)
    coord = make_coord(out_size).expand(2, -1, -1)
    cell = make_cell(out_size, coord.shape[1]).expand(2, -1, -1)
    with torch.no_grad():
        out = net(lq, coord, cell)
    assert out.shape == (2, out_size[0] * out_size[1], 3)
    assert torch.isfinite(out).all()


def test_starts_as_bicubic_interpolation():
    # rgb_skip with a zero-initialized last layer: before training, the output is the bicubic
    # sample of the LR image, so a constant image is reproduced exactly.
    net = GaussianSR(**TINY_GAUSSIANSR).eval()
    lq = torch.full((1, 3, 6, 6), 0.3)
    coord = make_coord((15, 15)).unsqueeze(0)
    with torch.no_grad():
        out = net(lq, coord, make_cell((15, 15), 225).unsqueeze(0))
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)


def test_default_model_is_within_edsr_liif_parameter_budget():
    net = GaussianSR()
    assert sum(p.numel() for p in net.parameters()) <= 1_567_323


def test_bad_arch_options_name_the_key():
    with pytest.raises(ValueError, match='sigma_range'):
        GaussianSR(sigma_range=[1.0, 0.5])
    with pytest.raises(ValueError, match='num_gs_feat'):
        GaussianSR(num_feat=16, num_gs_feat=32)


def test_classes_are_registered_in_basicsr_registries():
    assert ARCH_REGISTRY.get('GaussianSR') is GaussianSR
    assert DATASET_REGISTRY.get('ArbitraryScalePairedDataset').__name__ == 'ArbitraryScalePairedDataset'
    assert MODEL_REGISTRY.get('ArbitraryScaleSRModel').__name__ == 'ArbitraryScaleSRModel'
