"""LIIF (Chen et al., CVPR 2021): local implicit image function on an EDSR-baseline encoder.

Besides the registered ``LIIF``, this module holds the latent look-up that MetaSR shares:
``LatentState`` (the per-image feature map, zero-padded and flattened channels-last),
``nearest_latent`` (index of the LR pixel that contains a point, as LIIF's
``grid_sample(mode='nearest')`` picks it) and ``gather_latent`` (the feature of that pixel,
optionally with its 3x3 neighbourhood, as ``F.unfold(feat, 3, padding=1)`` lays it out).

LIIF's code unfolds the whole feature map (9C x h x w) on every ``query_rgb`` call; gathering
the nine neighbours of the queried pixels only keeps a call at O(Q * 9C) memory, which matters
because ``ArbitraryScaleSRModel.predict`` calls ``query`` once per chunk of queries.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch.nn import functional as F

from basicsr.utils.registry import ARCH_REGISTRY
from .arch_util import MLP, EDSRBaselineEncoder, ImplicitSRNet

# LIIF's nudges: the ensemble shift that breaks ties on pixel borders, and the margin that keeps
# shifted points inside the map.
EPS_SHIFT = 1e-6
EPS_CLAMP = 1e-6
# Added to each ensemble area so that a query exactly on a latent centre does not divide 0 by 0.
EPS_AREA = 1e-9


@dataclass
class LatentState:
    """What ``LIIF.encode`` / ``MetaSR.encode`` compute once per image.

    ``feat`` is the encoder output zero-padded by one pixel (as ``F.unfold(..., padding=1)``
    pads) and flattened channels-last, (B, (h + 2) * (w + 2), C), so that one ``torch.gather``
    fetches the neighbourhoods of all queries.
    """
    feat: torch.Tensor
    lr_size: Tuple[int, int]


def make_latent_state(feat: torch.Tensor) -> LatentState:
    """Packs an encoder output (B, C, h, w) for ``gather_latent``."""
    h, w = feat.shape[-2:]
    padded = F.pad(feat, (1, 1, 1, 1))
    return LatentState(feat=padded.flatten(2).transpose(1, 2), lr_size=(h, w))


def nearest_latent(coord: torch.Tensor, lr_size: Sequence[int]) -> torch.Tensor:
    """(row, col) index (B, Q, 2, int64) of the LR pixel containing ``coord`` (B, Q, 2 in [-1, 1]).

    Equals ``grid_sample(mode='nearest', align_corners=False)``'s choice except exactly on a
    pixel border, which LIIF's ``EPS_SHIFT`` keeps the queries off.
    """
    size = coord.new_tensor(lr_size)
    index = torch.floor((coord + 1) / 2 * size).long()
    return torch.minimum(index.clamp(min=0), (size.long() - 1))


def latent_centre(index: torch.Tensor, lr_size: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """Normalized (row, col) centre of the LR pixels at ``index`` (B, Q, 2), like LIIF's ``feat_coord``."""
    size = torch.tensor(lr_size, dtype=dtype, device=index.device)
    return (2 * index.to(dtype) + 1) / size - 1


def gather_latent(state: LatentState, index: torch.Tensor, unfold: bool = True) -> torch.Tensor:
    """Features of the LR pixels at ``index`` (B, Q, 2): (B, Q, 9C) with ``unfold``, else (B, Q, C).

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
    picked = torch.gather(state.feat, 1, flat.unsqueeze(-1).expand(-1, -1, channels))
    if not unfold:
        return picked
    return picked.view(batch, num_q, 9, channels).transpose(2, 3).reshape(batch, num_q, channels * 9)


@ARCH_REGISTRY.register()
class LIIF(ImplicitSRNet):
    """LIIF: an MLP decodes the latent nearest to a query, its relative coordinate and the cell.

    Follows the LIIF repository's design: 3x3 feature unfolding, relative coordinates and cell
    scaled by the LR size (h, w), four-way local ensemble whose predictions are weighted by the
    area of the diagonally opposite rectangle, nearest latent picked after a 1e-6 shift and a
    clamp to (-1 + 1e-6, 1 - 1e-6). The defaults are EDSR-baseline-LIIF (1,567,299 parameters:
    the published 1,567,323 less EDSR's 24 frozen mean-shift parameters, which LIIF never uses).

    LIIF trains on images normalized to (x - 0.5) / 0.5 and its MLP predicts in that space; the
    encoder does the input normalization and ``query`` maps the output back with ``* 0.5 + 0.5``,
    so that the network returns [0, 1] units like every arch of this plugin.

    Args:
        num_feat (int): Encoder channels. Default: 64.
        num_block (int): Encoder residual blocks. Default: 16.
        res_scale (float): Encoder residual scale. Default: 1.
        hidden_list (list[int]): MLP widths. Default: [256, 256, 256, 256].
        local_ensemble (bool): Blend the four nearest latents. Default: True.
        feat_unfold (bool): Feed the 3x3 neighbourhood of the latent. Default: True.
        cell_decode (bool): Feed the cell size to the MLP. Default: True.
    """

    def __init__(self,
                 num_feat: int = 64,
                 num_block: int = 16,
                 res_scale: float = 1.0,
                 hidden_list: Sequence[int] = (256, 256, 256, 256),
                 local_ensemble: bool = True,
                 feat_unfold: bool = True,
                 cell_decode: bool = True) -> None:
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = EDSRBaselineEncoder(num_feat, num_block, res_scale)
        in_dim = num_feat * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = MLP(in_dim, 3, hidden_list)

    def encode(self, lq: torch.Tensor) -> LatentState:
        return make_latent_state(self.encoder(lq))

    def query(self, state: LatentState, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        size = coord.new_tensor(state.lr_size)
        if self.local_ensemble:
            # Order matters: the area swap below pairs (-1, -1) with (1, 1) and (-1, 1) with (1, -1).
            shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], EPS_SHIFT
        else:
            shifts, eps = [(0, 0)], 0.0

        preds, areas = [], []
        for shift in shifts:
            # A (row, col) shift of half an LR pixel (the pixel is 2 / size wide) reaches a neighbour.
            shifted = (coord + coord.new_tensor(shift) / size + eps).clamp(-1 + EPS_CLAMP, 1 - EPS_CLAMP)
            index = nearest_latent(shifted, state.lr_size)
            rel_coord = (coord - latent_centre(index, state.lr_size, coord.dtype)) * size
            inputs = [gather_latent(state, index, self.feat_unfold), rel_coord]
            if self.cell_decode:
                inputs.append(cell * size)
            preds.append(self.imnet(torch.cat(inputs, dim=-1)))
            areas.append(torch.abs(rel_coord[..., 0] * rel_coord[..., 1]) + EPS_AREA)

        total = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            # Bilinear-style weights: a latent weighs the area of the rectangle opposite to it.
            areas = areas[::-1]
        rgb = sum(pred * (area / total).unsqueeze(-1) for pred, area in zip(preds, areas))
        return rgb * 0.5 + 0.5
