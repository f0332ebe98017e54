"""GaussianSR: arbitrary-scale SR by selective 2D Gaussian splatting of LR features."""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from basicsr.utils.registry import ARCH_REGISTRY
from .arch_util import (BICUBIC_REACH, POSITION_DIMS, MLP, EDSRBaselineEncoder, ImplicitSRNet, Placement,
                        at_least_float32, conv_reach, coord_to_lr_pixels, full_precision, nearest_centre,
                        position_encoding, sample_bicubic, size_tensor)
from .gaussian_splat import SplatTable, build_splat_table, splat_query, window_radius

# Bound on |rho|: keeps Σ well conditioned (det Σ = σx²σy²(1-ρ²) away from 0).
RHO_MAX = 0.9
# How an evaluated pixel picks its kernel: the paper's argmax, or (ours) the softmax mixture.
EVAL_KERNELS = ('argmax', 'soft')


@dataclass
class GaussianSRState:
    """What ``GaussianSR.encode`` computes once per image."""
    lq: torch.Tensor
    smooth_feat: torch.Tensor  # (B, C - C_gs, h, w): the bicubic stream
    splats: Optional[SplatTable]  # the Gaussian stream; None without one (num_gs_feat 0)
    placement: Placement = field(default_factory=Placement)  # where the map lies in the image (a tile's)


class GaussianBank(nn.Module):
    """K learnable Gaussian kernels (σx, σy, ρ, opacity), constrained to valid values.

    σ = σ_min + (σ_max - σ_min)·sigmoid(raw), ρ = RHO_MAX·tanh(raw) (correlation coefficient, so
    Σ is positive definite), opacity = sigmoid(raw). Initialized stepwise over a grid of shapes:
    σx and σy over evenly spaced values inside the range, ρ over {-0.6, -0.2, 0.2, 0.6}; the
    grid is filled in order and wraps around when K is not a multiple of its size.
    """

    def __init__(self, num_kernels: int, sigma_range: Sequence[float]) -> None:
        super().__init__()
        self.sigma_min, self.sigma_max = float(sigma_range[0]), float(sigma_range[1])
        rhos = torch.tensor([-0.6, -0.2, 0.2, 0.6])
        steps = max(1, math.ceil(math.sqrt(num_kernels / len(rhos))))
        # Interior points of the range, so that the sigmoid is not saturated at init.
        fractions = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
        grid = torch.stack(torch.meshgrid(fractions, fractions, rhos.double(), indexing='ij'), -1).reshape(-1, 3)
        grid = grid[torch.arange(num_kernels) % grid.shape[0]]
        raw = torch.stack([
            torch.logit(grid[:, 0]),
            torch.logit(grid[:, 1]),
            torch.atanh(grid[:, 2] / RHO_MAX),
            torch.zeros(num_kernels, dtype=torch.float64),  # opacity 0.5
        ], dim=1)
        self.raw = nn.Parameter(raw.float())

    def forward(self) -> torch.Tensor:
        """Returns the constrained (K, 4) table: σx, σy, ρ, opacity."""
        span = self.sigma_max - self.sigma_min
        return torch.stack([
            self.sigma_min + span * torch.sigmoid(self.raw[:, 0]),
            self.sigma_min + span * torch.sigmoid(self.raw[:, 1]),
            RHO_MAX * torch.tanh(self.raw[:, 2]),
            torch.sigmoid(self.raw[:, 3]),
        ], dim=1)


@ARCH_REGISTRY.register()
class GaussianSR(ImplicitSRNet):
    """GaussianSR (Hu et al.) with a query-local renderer.

    Every LR feature pixel becomes a 2D Gaussian centred on the pixel centre, whose shape is
    picked per pixel from a learnable Gaussian bank by a classifier (Gumbel-softmax mixture in
    training, hard argmax without noise in eval) and whose colour is opacity times the first
    ``num_gs_feat`` feature channels. The splatted channels and the bicubically sampled
    remaining channels are fused with the query's position inside its LR pixel and its cell and
    decoded to RGB by an MLP. The defaults follow the paper; ``num_gs_feat: 0`` is its
    "Bicubic-64" ablation (no splatting stream, classifier or bank).

    Our options, off by default: ``rgb_skip`` (the MLP predicts a residual over the bicubic
    sample of the LR image; its last layer is zero-initialized, so training starts from
    bicubic interpolation), ``pos_encoding: fourier`` (a position input that does not jump at
    LR pixel borders, see ``arch_util.position_encoding``) and ``eval_kernel: soft`` (evaluate
    with the noise-free softmax mixture of the bank, closer to what training sees, instead of
    the argmax kernel).

    Args:
        num_feat (int): Encoder channels. Default: 64.
        num_block (int): Encoder residual blocks. Default: 16.
        res_scale (float): Encoder residual scale. Default: 1.
        num_kernels (int): Size K of the Gaussian bank. Default: 100.
        num_gs_feat (int): Channels rendered by Gaussian splatting (the rest are sampled
            bicubically); 0 for none. Default: 8.
        sigma_range (list[float]): Range of σx, σy in LR pixels. Default: [0.1, 1.0].
        tau (float): Gumbel-softmax temperature in training. Default: 1.
        gumbel_hard (bool): Straight-through one-hot labels in training (soft labels when
            False, as in the paper). Default: False.
        hidden_list (list[int]): Decoder MLP widths. Default: [256, 256, 256, 256].
        rgb_skip (bool): Ours: predict a residual over the bicubic sample of the LR image.
            Default: False (the authors' decoder outputs RGB directly).
        window_tolerance (float): Weight bound that sets the splat window radius. Default: 1e-4.
        pos_encoding (str): 'offset' (the paper's offset to the nearest LR pixel centre) or,
            ours, 'fourier'. Default: 'offset'.
        eval_kernel (str): 'argmax' (paper) or, ours, 'soft'. Default: 'argmax'.
    """

    def __init__(self,
                 num_feat: int = 64,
                 num_block: int = 16,
                 res_scale: float = 1.0,
                 num_kernels: int = 100,
                 num_gs_feat: int = 8,
                 sigma_range: Sequence[float] = (0.1, 1.0),
                 tau: float = 1.0,
                 gumbel_hard: bool = False,
                 hidden_list: Sequence[int] = (256, 256, 256, 256),
                 rgb_skip: bool = False,
                 window_tolerance: float = 1e-4,
                 pos_encoding: str = 'offset',
                 eval_kernel: str = 'argmax') -> None:
        super().__init__()
        if not 0 <= num_gs_feat <= num_feat:
            raise ValueError(f'network_g.num_gs_feat must be in [0, num_feat={num_feat}], got {num_gs_feat}')
        if len(sigma_range) != 2 or not 0 < sigma_range[0] < sigma_range[1]:
            raise ValueError(f'network_g.sigma_range must be [min, max] with 0 < min < max, got {sigma_range}')
        if num_kernels < 1:
            raise ValueError(f'network_g.num_kernels must be >= 1, got {num_kernels}')
        if tau <= 0:
            raise ValueError(f'network_g.tau must be > 0, got {tau}')
        if not 0 < window_tolerance < 1:
            raise ValueError(f'network_g.window_tolerance must be in (0, 1), got {window_tolerance}')
        if pos_encoding not in POSITION_DIMS:
            raise ValueError(f'network_g.pos_encoding must be one of {list(POSITION_DIMS)}, got {pos_encoding!r}')
        if eval_kernel not in EVAL_KERNELS:
            raise ValueError(f'network_g.eval_kernel must be one of {list(EVAL_KERNELS)}, got {eval_kernel!r}')
        self.num_gs_feat = num_gs_feat
        self.tau = tau
        self.gumbel_hard = gumbel_hard
        self.pos_encoding = pos_encoding
        self.eval_kernel = eval_kernel
        self._max_prob_sum, self._max_prob_count = 0.0, 0

        self.encoder = EDSRBaselineEncoder(num_feat, num_block, res_scale)
        if num_gs_feat:
            self.classifier = nn.Conv2d(num_feat, num_kernels, 3, 1, 1)
            self.bank = GaussianBank(num_kernels, sigma_range)
            self.radius = window_radius(sigma_range[1], window_tolerance)
        else:  # Bicubic-64: no splatting stream, so nothing to classify or render
            self.classifier = self.bank = self.radius = None
        # Fused feature + position in the LR pixel + cell in LR pixels (2).
        self.decoder = MLP(num_feat + POSITION_DIMS[pos_encoding] + 2, 3, hidden_list, float32_output=True)
        self.init_rgb_skip(rgb_skip, self.decoder[-1])
        # The bank's options mean nothing without a splatting stream (Bicubic-64): not recorded.
        bank_options = dict(num_kernels=num_kernels, sigma_range=sigma_range) if num_gs_feat else {}
        self.set_arch_options(num_feat=num_feat, num_block=num_block, res_scale=res_scale, num_gs_feat=num_gs_feat,
                              **bank_options, hidden_list=hidden_list, rgb_skip=self.rgb_skip,
                              pos_encoding=pos_encoding)

    def kernel_params(self, feat: torch.Tensor) -> torch.Tensor:
        """Per-pixel (σx, σy, ρ, opacity), (B, 4, h, w): a Gumbel-softmax mixture of the bank in
        training; in eval (deterministic) the argmax kernel, or the softmax mixture with
        ``eval_kernel: soft``."""
        logits = at_least_float32(self.classifier(feat))  # the labels weigh kernel shapes: float32
        bank = self.bank()
        if self.training:
            labels = F.gumbel_softmax(logits, tau=self.tau, hard=self.gumbel_hard, dim=1)
        else:
            labels = torch.softmax(logits, dim=1)
            if not torch.compiler.is_exporting():  # a tally of eager runs, no part of a graph
                self._record_max_prob(labels)
            if self.eval_kernel == 'argmax':
                return bank[logits.argmax(dim=1)].permute(0, 3, 1, 2)
        with full_precision(logits.device):  # kernel shapes stay float32 under autocast
            return torch.einsum('bkhw,kp->bphw', labels, bank)

    @torch.no_grad()
    def _record_max_prob(self, probs: torch.Tensor) -> None:
        # Kept on the device (no host sync per image); moved along if the net changed device.
        total = probs.amax(dim=1).sum()
        previous = self._max_prob_sum
        self._max_prob_sum = total + (previous.to(total.device) if torch.is_tensor(previous) else previous)
        self._max_prob_count += probs[:, 0].numel()

    def pop_kernel_max_prob(self) -> Optional[float]:
        """The classifier's confidence: the largest softmax probability (no noise) of every LR
        pixel encoded in eval mode since the previous call, averaged, and the tally reset.

        1 means every pixel is sure of its kernel (argmax and soft evaluation agree, and
        training's soft labels are nearly one-hot); 1/K means uniform labels. None when nothing
        was encoded in eval mode or the net has no classifier (``num_gs_feat: 0``).
        """
        if not self._max_prob_count:
            return None
        mean = float(self._max_prob_sum) / self._max_prob_count
        self._max_prob_sum, self._max_prob_count = 0.0, 0
        return mean

    def encode(self, lq: torch.Tensor) -> GaussianSRState:
        feat = self.encoder(lq)
        splats = None
        if self.num_gs_feat:
            sigma_x, sigma_y, rho, opacity = self.kernel_params(feat).unbind(1)
            amplitude = opacity.unsqueeze(1) * feat[:, :self.num_gs_feat]
            splats = build_splat_table(amplitude, sigma_x, sigma_y, rho, self.radius)
        return GaussianSRState(lq=lq, smooth_feat=feat[:, self.num_gs_feat:], splats=splats)

    def query_reach(self, max_lr_per_hr: float = 1.0) -> float:
        reach = BICUBIC_REACH  # the bicubically sampled feature channels
        if self.classifier is not None and self.radius:
            # Nearest centre within 1/2 of P, the (2r+1)^2 splat window around it, and each
            # Gaussian's shape from the classifier's kernel over the features around its pixel.
            reach = max(reach, 0.5 + self.radius + conv_reach(self.classifier))
        return reach

    def place(self, state: GaussianSRState, origin: Sequence[int], image_size: Sequence[int]) -> GaussianSRState:
        state = super().place(state, origin, image_size)
        if state.splats is not None:  # the splat table reads the image's coordinates too
            state.splats = dataclasses.replace(state.splats, placement=state.placement)
        return state

    def query(self, state: GaussianSRState, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        place = state.placement
        map_size = state.lq.shape[-2:]
        lr_size = place.size(map_size)  # coordinates are the image's, also for a tile
        map_coord = place.map_coord(coord, map_size)
        inputs = []
        if state.splats is not None:
            inputs.append(splat_query(state.splats, coord))
        if state.smooth_feat.shape[1]:
            inputs.append(sample_bicubic(state.smooth_feat, map_coord))
        pos = coord_to_lr_pixels(coord, lr_size)
        cell_lr = cell * size_tensor(lr_size, cell) / 2
        encoded = position_encoding(pos, nearest_centre(coord, lr_size), self.pos_encoding)
        pred = self.decoder(torch.cat(inputs + [encoded, cell_lr], dim=-1))
        return self.to_rgb(pred, state.lq, map_coord)
