"""LIIF (Chen et al., CVPR 2021): local implicit image function on an EDSR-baseline encoder."""
from typing import Sequence, Tuple

import torch

from basicsr.utils.registry import ARCH_REGISTRY
from .arch_util import MLP, EDSRBaselineEncoder, ImplicitSRNet, at_least_float32, full_precision, size_tensor
from .latent_util import (EPS_CLAMP, EPS_SHIFT, NUDGE_BOUND, LatentState, gather_latent, latent_centre,
                          make_latent_state, nearest_latent, project_latent)

# Added to each ensemble area so that a query exactly on a latent centre does not divide 0 by 0.
EPS_AREA = 1e-9


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

    The MLP's first layer is evaluated in two parts, an exact reformulation of LIIF's
    ``imnet(cat([unfolded latent, rel_coord, rel_cell]))`` (same parameters, same state_dict, same
    math up to floating-point summation order, in training and evaluation): its input is the
    latent vector (9C or C) followed by 2 or 4 query values, so ``W @ input + b`` is
    ``(W_latent @ latent + b) + W_query @ [rel_coord, rel_cell]``. The first term depends on the
    LR pixel only: ``encode`` computes it once per pixel for the whole map (a 3x3 convolution of
    the encoder output, ``project_latent``), and ``query`` gathers those D values per query and
    ensemble member (instead of 9C) and adds the query term. A pixel serves about 4 * scale^2
    query-ensemble rows, so the layer's cost (some 43% of the MLP's multiply-adds with the
    defaults) almost vanishes.

    ``rgb_skip`` is OUR extension, off by default (LIIF as published): the MLP predicts a
    residual over the bicubic sample of the LR image (in the same (x - 0.5) / 0.5 space, so the
    output is ``pred * 0.5 + bicubic``), with its last layer zero-initialized so that the
    untrained network returns exactly the bicubic sample, as our GaussianSR option does.

    Args:
        num_feat (int): Encoder channels. Default: 64.
        num_block (int): Encoder residual blocks. Default: 16.
        res_scale (float): Encoder residual scale. Default: 1.
        hidden_list (list[int]): MLP widths. Default: [256, 256, 256, 256].
        local_ensemble (bool): Blend the four nearest latents. Default: True.
        feat_unfold (bool): Feed the 3x3 neighbourhood of the latent. Default: True.
        cell_decode (bool): Feed the cell size to the MLP. Default: True.
        rgb_skip (bool): Ours: predict a residual over the bicubic sample of the LR image.
            Default: False.
    """

    pred_scale = pred_shift = 0.5  # the MLP predicts in (x - 0.5) / 0.5 space

    def __init__(self,
                 num_feat: int = 64,
                 num_block: int = 16,
                 res_scale: float = 1.0,
                 hidden_list: Sequence[int] = (256, 256, 256, 256),
                 local_ensemble: bool = True,
                 feat_unfold: bool = True,
                 cell_decode: bool = True,
                 rgb_skip: bool = False) -> None:
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = EDSRBaselineEncoder(num_feat, num_block, res_scale)
        in_dim = num_feat * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = MLP(in_dim, 3, hidden_list, float32_output=True)
        self.init_rgb_skip(rgb_skip, self.imnet[-1])
        self.set_arch_options(num_feat=num_feat, num_block=num_block, res_scale=res_scale, hidden_list=hidden_list,
                              local_ensemble=local_ensemble, feat_unfold=feat_unfold, cell_decode=cell_decode,
                              rgb_skip=self.rgb_skip)

    def _first_layer_weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The first MLP layer's weight split into its latent (D, 9C or C) and query (D, 2 or 4) columns."""
        weight = self.imnet[0].weight
        num_query = 4 if self.cell_decode else 2
        return weight[:, :-num_query], weight[:, -num_query:]

    def encode(self, lq: torch.Tensor) -> LatentState:
        """Encoder output -> the first MLP layer's latent term plus bias at every LR pixel, (D, h, w) per image."""
        latent_weight = self._first_layer_weights()[0]
        latent_term = project_latent(self.encoder(lq), latent_weight, self.imnet[0].bias, self.feat_unfold)
        return make_latent_state(latent_term, lq)

    def query_reach(self, max_lr_per_hr: float = 1.0) -> float:
        # The latent containing P (within 1/2), or with the local ensemble those containing
        # P +- 1/2 (within 1); then its 3x3 neighbourhood when unfolded.
        latent = 1.0 if self.local_ensemble else 0.5
        return latent + NUDGE_BOUND + (1 if self.feat_unfold else 0)

    def query(self, state: LatentState, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        place = state.placement
        lr_size = place.size(state.lr_size)  # coordinates are the image's, also for a tile
        size = size_tensor(lr_size, coord)
        if self.local_ensemble:
            # Order matters: the area swap below pairs (-1, -1) with (1, 1) and (-1, 1) with (1, -1).
            shifts = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
        else:
            shifts = [(0, 0)]
        # LIIF shifts by EPS_SHIFT with the ensemble only, so without it a query on an LR pixel
        # border went to whichever side float rounding favoured; here it goes to the lower-right
        # one in both cases (the same pixel wherever LIIF's choice was not a rounding accident).
        eps = EPS_SHIFT

        query_weight = self._first_layer_weights()[1].t()
        preds, areas = [], []
        for shift in shifts:
            # A (row, col) shift of half an LR pixel (the pixel is 2 / size wide) reaches a neighbour.
            shifted = (coord + coord.new_tensor(shift) / size + eps).clamp(-1 + EPS_CLAMP, 1 - EPS_CLAMP)
            index = nearest_latent(shifted, lr_size)
            rel_coord = (coord - latent_centre(index, lr_size, coord.dtype)) * size
            query_input = torch.cat([rel_coord, cell * size], dim=-1) if self.cell_decode else rel_coord
            # First layer = the pixel's latent term (from ``encode``, bias included) + the query term.
            # addmm adds the thin (2 or 4 wide) product onto the gathered rows in one pass; F.linear
            # followed by an add was about 5x slower on the CPU.
            # The query term is thin: float32 under autocast too, so the relative position and
            # cell are never rounded to half precision (see ``full_precision``).
            latent_term = gather_latent(state, place.to_map(index), unfold=False)
            with full_precision(coord.device):
                hidden = torch.addmm(at_least_float32(latent_term).flatten(0, 1), query_input.flatten(0, 1),
                                     query_weight)
            preds.append(self.imnet(hidden.view(latent_term.shape), start=1))  # the ReLU after it, then the rest
            areas.append(torch.abs(rel_coord[..., 0] * rel_coord[..., 1]) + EPS_AREA)

        total = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            # Bilinear-style weights: a latent weighs the area of the rectangle opposite to it.
            areas = areas[::-1]
        blended = sum(pred * (area / total).unsqueeze(-1) for pred, area in zip(preds, areas))
        return self.to_rgb(blended, state.lq, place.map_coord(coord, state.lr_size))
