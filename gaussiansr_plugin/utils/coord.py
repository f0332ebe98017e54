"""Query coordinates in LIIF's convention: HR pixel centres in [-1, 1], (row, col) order."""
from typing import Optional, Sequence

import torch


def make_coord(size: Sequence[int], device: Optional[torch.device] = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Centres of the pixels of an (H, W) grid, flattened row-major to (H * W, 2).

    Computed as LIIF's ``make_coord`` computes them, ``(2 / n) * i + (-1 + 1 / n)``, so that the
    float32 values are the same bits: the former ``(2 * i + 1) / n - 1`` differed by an ulp at
    some pixels, which moved the outputs of official LIIF / MetaSR checkpoints away from the
    official code's by up to 4.5e-3 (LIIF, last row at x3, where its four ensemble areas are all
    near zero) and 2.5e-5 (MetaSR, x2.5); see tests/test_official_checkpoints.py.
    """
    axes = [coord_axis(n, device, dtype) for n in size]
    return torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1).reshape(-1, 2)


def coord_axis(n: int, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The centres of ``n`` pixels along one axis, (n,): ``make_coord``'s values (the same bits).

    Tiled rendering (``render/tiling.py``) takes its coordinates from here too, so that every
    way to the pixels queries the network at the same numbers.
    """
    return torch.arange(n, device=device, dtype=dtype) * (2 / n) + (-1 + 1 / n)


def make_cell(size: Sequence[int], num_queries: int, device: Optional[torch.device] = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The HR pixel size (2 / H, 2 / W) repeated for ``num_queries`` queries, (Q, 2)."""
    cell = torch.tensor([2.0 / size[0], 2.0 / size[1]], device=device, dtype=dtype)
    return cell.expand(num_queries, 2)
