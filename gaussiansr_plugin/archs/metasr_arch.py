"""Meta-SR (Hu et al., CVPR 2019) as re-implemented in the LIIF repository, on EDSR-baseline."""
from typing import Sequence

import torch

from basicsr.utils.registry import ARCH_REGISTRY
from .arch_util import MLP, EDSRBaselineEncoder, ImplicitSRNet, at_least_float32, full_precision, size_tensor
from .latent_util import (EPS_CLAMP, EPS_SHIFT, NUDGE_BOUND, LatentState, gather_latent, make_latent_state,
                          nearest_latent, project_latent)


@ARCH_REGISTRY.register()
class MetaSR(ImplicitSRNet):
    """Meta-SR: a meta-MLP predicts, per query, the 3x3xC -> 3 filter applied to the nearest latent.

    As in the LIIF repository: the query's HR pixel is represented by its top-left corner, the
    LR pixel containing that corner (after a 1e-6 shift) is its latent, and the meta-MLP takes
    3 inputs: the corner's offset from that LR pixel's top-left corner in LR pixels (row, col,
    in [0, 1), Meta-SR's ``i/r - floor(i/r)``) and 1/scale read from the cell's *row* size
    only (so a non-square scale is seen through its vertical factor). Its output, reshaped to
    (9C, 3), multiplies the 3x3-unfolded feature of the latent. The defaults give 1,665,536
    parameters: the LIIF repository's EDSR-baseline-MetaSR 1,665,560 (the published 1.666M)
    less EDSR's 24 frozen mean-shift parameters.

    Like LIIF it predicts in the (x - 0.5) / 0.5 space it was trained in; ``query`` returns
    ``rgb * 0.5 + 0.5``, i.e. [0, 1] units.

    The filter is applied in two parts, an exact reformulation of Meta-SR's
    ``unfolded latent @ (W @ h + b)`` (same parameters, same state_dict, same math up to
    floating-point summation order, in training and evaluation), where ``h`` is the meta-MLP's
    last hidden layer (D wide) and ``W``, ``b`` its output layer: colour ``c`` is
    ``sum_j h_j (latent @ W_c)_j + latent @ b_c``. The products ``latent @ W_c`` and
    ``latent @ b_c`` (3 (D + 1) values) depend on the LR pixel only: ``encode`` computes them once
    per pixel for the whole map (a 3x3 convolution of the encoder output, ``project_latent``, as
    LIIF's first layer), and ``query`` gathers them and takes 3 dot products with ``(h, 1)``,
    instead of predicting a 9C x 3 filter per query (9C x 3 x D multiply-adds). A pixel serves
    about scale^2 queries, so at x4 the filter costs 1/16 of what it did; the state holds 3 (D + 1)
    values a pixel instead of C (771 instead of 64 with the defaults: 0.8 MB per 256 LR pixels).
    Measured against the per-query filter (the class of 690701f; 2 CPU threads, fp32): 64² ->
    128², 256², 512² in 0.56-0.70x, 0.28-0.30x and 0.12-0.20x the time; a training step of the
    recipe (16 x 2,304 queries on 48² LR patches, one query per LR pixel, so the same
    multiply-adds) in 1.05-1.10x.

    ``rgb_skip`` is OUR extension, off by default (Meta-SR as published): the filtered feature is
    a residual over the bicubic sample of the LR image (output ``rgb * 0.5 + bicubic``); the
    meta-MLP's last layer is zero-initialized, so the predicted filters are zero and the
    untrained network returns exactly the bicubic sample.

    Args:
        num_feat (int): Encoder channels. Default: 64.
        num_block (int): Encoder residual blocks. Default: 16.
        res_scale (float): Encoder residual scale. Default: 1.
        hidden_list (list[int]): Meta-MLP widths. Default: [256].
        rgb_skip (bool): Ours: predict a residual over the bicubic sample of the LR image.
            Default: False.
    """

    pred_scale = pred_shift = 0.5  # predicts in (x - 0.5) / 0.5 space

    def __init__(self,
                 num_feat: int = 64,
                 num_block: int = 16,
                 res_scale: float = 1.0,
                 hidden_list: Sequence[int] = (256, ),
                 rgb_skip: bool = False) -> None:
        super().__init__()
        self.encoder = EDSRBaselineEncoder(num_feat, num_block, res_scale)
        # Output laid out as (9C, 3), 3 fastest, matching the weight layout of the LIIF repository.
        self.imnet = MLP(3, num_feat * 9 * 3, hidden_list)
        self.init_rgb_skip(rgb_skip, self.imnet[-1])
        self.set_arch_options(num_feat=num_feat, num_block=num_block, res_scale=res_scale, hidden_list=hidden_list,
                              rgb_skip=self.rgb_skip)

    def _filter_projection(self) -> torch.Tensor:
        """The meta-MLP's output layer as a (3 (D + 1), 9C) weight on the unfolded latent: row
        ``c * (D + 1) + j`` gives ``latent @ W_c`` for hidden unit ``j`` < D (colour ``c``'s filter
        per unit), ``j`` = D ``latent @ b_c``; columns in ``gather_latent``'s 9C layout."""
        last = self.imnet[-1]
        # The output is laid out (9C, 3), colour fastest (see ``__init__``); the bias joins as unit D.
        per_unit = torch.cat([last.weight, last.bias.unsqueeze(-1)], dim=-1)  # (9C * 3, D + 1)
        return per_unit.view(-1, 3, last.in_features + 1).permute(1, 2, 0).flatten(0, 1)

    def encode(self, lq: torch.Tensor) -> LatentState:
        """Encoder output -> ``_filter_projection`` at every LR pixel, (3 (D + 1), h, w) per image."""
        projected = project_latent(self.encoder(lq), self._filter_projection())
        # In float32 once per pixel, not once per query: under bf16 autocast, gathering bf16 rows
        # and widening them in every query call took 2.7x the time of a float32 query (CPU).
        return make_latent_state(at_least_float32(projected), lq)

    def query_reach(self, max_lr_per_hr: float = 1.0) -> float:
        # The latent containing the output pixel's top-left corner, P - cell/2, and its 3x3 neighbourhood.
        return 0.5 + max_lr_per_hr / 2 + NUDGE_BOUND + 1

    def query(self, state: LatentState, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        place = state.placement
        lr_size = place.size(state.lr_size)  # coordinates are the image's, also for a tile
        size = size_tensor(lr_size, coord)
        corner = coord - cell / 2
        index = nearest_latent((corner + EPS_SHIFT).clamp(-1 + EPS_CLAMP, 1 - EPS_CLAMP), lr_size)
        latent_corner = 2 * index.to(coord.dtype) / size - 1
        offset = (corner - latent_corner) * size / 2
        inv_scale = cell[..., :1] * size[0] / 2
        # The meta-MLP up to its last hidden layer, on 2D input (queries, 3): exported, each layer is
        # one Gemm with its bias. Its first layer is thin (3 inputs): float32 under autocast too, so
        # the offset and scale are never rounded to half precision (see ``full_precision``).
        hidden = torch.cat([offset, inv_scale], dim=-1).flatten(0, -2)
        layers = list(self.imnet)[:-1]  # the output layer is in the state (``encode``)
        if layers:
            with full_precision(coord.device):
                hidden = layers[0](hidden)
        for layer in layers[1:]:
            hidden = layer(hidden)
        # With a constant 1 as unit D, the bias term is one more product (no split of the gathered rows).
        hidden = torch.cat([at_least_float32(hidden), hidden.new_ones(hidden.shape[0], 1, dtype=torch.float32)], -1)
        projected = gather_latent(state, place.to_map(index), unfold=False)  # (B, Q, 3 (D + 1))
        # 3 dot products of D + 1 per query: float32 under autocast too, as LIIF's thin query term.
        per_unit = projected.unflatten(-1, (3, hidden.shape[-1]))
        rgb = (per_unit * hidden.view(*per_unit.shape[:2], 1, -1)).sum(-1)
        return self.to_rgb(rgb, state.lq, place.map_coord(coord, state.lr_size))
