"""LIIF's latent look-up, shared by the LIIF and MetaSR archs.

* ``LatentState``: a per-image map of per-pixel vectors, zero-padded and flattened channels-last;
* ``nearest_latent`` (from ``arch_util``): index of the LR pixel that contains a point, as LIIF's
  ``grid_sample(mode='nearest')`` picks it after its ``EPS_SHIFT``;
* ``gather_latent``: the vector of that pixel, optionally with its 3x3 neighbourhood, as
  ``F.unfold(feat, 3, padding=1)`` lays it out;
* ``project_latent``: a linear map of every pixel's (optionally 3x3-unfolded) feature, computed
  for the whole map at once as a convolution.

LIIF's code unfolds the whole feature map (9C x h x w) on every ``query_rgb`` call; gathering
the nine neighbours of the queried pixels only keeps a call at O(Q * 9C) memory, which matters
because ``ArbitraryScaleSRModel.predict`` calls ``query`` once per chunk of queries.
"""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from .arch_util import EPS_SHIFT, Placement, nearest_latent, size_tensor

__all__ = ['EPS_CLAMP', 'EPS_SHIFT', 'LatentState', 'NUDGE_BOUND', 'gather_latent', 'latent_centre',
           'make_latent_state', 'nearest_latent', 'project_latent']

# LIIF's margin that keeps shifted points inside the map (its shift, ``EPS_SHIFT``, breaks ties
# on pixel borders: see ``arch_util``).
EPS_CLAMP = 1e-6
# Room for that shift in a query reach (LR pixels): EPS_SHIFT is 5e-7 x the image side in LR
# pixels, below this up to 2,000 pixels; beyond, the tile pad stays exact all the same (whole
# pixels: a shift below half a pixel moves no query past the next pixel's border).
NUDGE_BOUND = 1e-3


@dataclass
class LatentState:
    """What ``LIIF.encode`` / ``MetaSR.encode`` compute once per image.

    ``feat`` is a per-pixel map (B, C, h, w) zero-padded by one pixel (as
    ``F.unfold(..., padding=1)`` pads) and flattened channels-last, (B, (h + 2) * (w + 2), C),
    so that one ``index_select`` fetches the neighbourhoods of all queries. For LIIF it is the
    latent term of its MLP's first layer, for MetaSR its filter projected per pixel (both made by
    ``project_latent``).
    ``lq`` is the input image, kept for the optional RGB skip (a reference, not a copy).
    ``placement`` says where the map lies in the image the queries refer to (a tile's).
    """
    feat: torch.Tensor
    lr_size: Tuple[int, int]
    lq: torch.Tensor
    placement: Placement = field(default_factory=Placement)


def make_latent_state(feat: torch.Tensor, lq: torch.Tensor) -> LatentState:
    """Packs a per-pixel map (B, C, h, w) for ``gather_latent``, with the input image ``lq``."""
    h, w = feat.shape[-2:]
    padded = F.pad(feat, (1, 1, 1, 1))
    # Contiguous once here, so that each gather reads whole rows instead of re-copying the map.
    return LatentState(feat=padded.flatten(2).transpose(1, 2).contiguous(), lr_size=(h, w), lq=lq)


def latent_centre(index: torch.Tensor, lr_size: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """Normalized (row, col) centre of the LR pixels at ``index`` (B, Q, 2), like LIIF's ``feat_coord``."""
    index = index.to(dtype)
    return (2 * index + 1) / size_tensor(lr_size, index) - 1


def gather_latent(state: LatentState, index: torch.Tensor, unfold: bool = True) -> torch.Tensor:
    """Vectors of the LR pixels at ``index`` (B, Q, 2): (B, Q, 9C) with ``unfold``, else (B, Q, C).

    The 9C layout is ``F.unfold``'s: channel-major, then the 3x3 offsets in row-major order;
    neighbours outside the map are zero.
    """
    h, w = state.lr_size
    batch, num_q = index.shape[:2]
    channels = state.feat.shape[-1]
    # Linear index of each pixel in the padded (h + 2, w + 2) map.
    centre = (index[..., 0] + 1) * (w + 2) + index[..., 1] + 1
    if unfold:
        offsets = torch.tensor([dy * (w + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], device=index.device)
        flat = (centre.unsqueeze(-1) + offsets).reshape(batch, num_q * 9)
    else:
        flat = centre
    # index_select on the (B * pixels, C) rows copies whole rows (about twice as fast as a gather
    # with an index expanded over the channels); the same values either way.
    flat = flat + torch.arange(batch, device=index.device).unsqueeze(-1) * state.feat.shape[1]
    picked = state.feat.reshape(-1, channels).index_select(0, flat.reshape(-1)).view(batch, -1, channels)
    if not unfold:
        return picked
    return picked.view(batch, num_q, 9, channels).transpose(2, 3).reshape(batch, num_q, channels * 9)


def project_latent(feat: torch.Tensor,
                   weight: torch.Tensor,
                   bias: Optional[torch.Tensor] = None,
                   unfold: bool = True) -> torch.Tensor:
    """``F.linear(gather_latent(...), weight, bias)`` for every pixel of ``feat`` (B, C, h, w) -> (B, D, h, w).

    ``weight`` (D, 9C with ``unfold``, else D, C) reads the vectors in ``gather_latent``'s layout.
    That layout (channel-major, then the 3x3 offsets row-major, zero outside the map) is the
    order of a (D, C, 3, 3) convolution kernel over the zero-padded map, so a 3x3 convolution
    with padding 1 (a 1x1 one without ``unfold``) computes the same sums, only in another order:
    equal up to floating-point rounding.
    """
    channels = feat.shape[1]
    kernel = 3 if unfold else 1
    if weight.shape[1] != channels * kernel * kernel:
        raise ValueError(f'project_latent: weight has {weight.shape[1]} inputs, '
                         f'expected {channels * kernel * kernel} for {channels} channels (unfold={unfold})')
    return F.conv2d(feat, weight.reshape(weight.shape[0], channels, kernel, kernel), bias, padding=kernel // 2)
