"""Meta-SR (Hu et al., CVPR 2019) as re-implemented in the LIIF repository, on EDSR-baseline."""
from typing import Sequence

import torch

from basicsr.utils.registry import ARCH_REGISTRY
from .arch_util import MLP, EDSRBaselineEncoder, ImplicitSRNet, size_tensor
from .latent_util import (EPS_CLAMP, EPS_SHIFT, NUDGE_BOUND, LatentState, gather_latent, make_latent_state,
                          nearest_latent)


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

    def encode(self, lq: torch.Tensor) -> LatentState:
        return make_latent_state(self.encoder(lq), lq)

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
        q_feat = gather_latent(state, place.to_map(index), unfold=True)
        # The meta-MLP on 2D input (queries, 3): exported, each layer is one Gemm with its bias,
        # where on (B, N, 3) onnxruntime added the last layer's bias to the (N, 1728) filters apart.
        weight = self.imnet(torch.cat([offset, inv_scale], dim=-1).flatten(0, -2))
        weight = weight.view(*q_feat.shape, 3)
        # Heavy work like the meta-MLP, so at the autocast's precision (unlike GaussianSR's and LIIF's
        # 3-wide output layers): widening the per-query 9C x 3 filters to float32 took 3x the bf16
        # product (243 vs 72 ms per 30,000 queries on one CPU core, ~30% of a query) and changed the
        # bf16 PSNR of tests/test_mixed_precision.py's image by less than 0.0001 dB.
        rgb = torch.matmul(q_feat.unsqueeze(-2), weight).squeeze(-2)
        return self.to_rgb(rgb, state.lq, place.map_coord(coord, state.lr_size))
