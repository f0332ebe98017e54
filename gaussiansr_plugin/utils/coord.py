"""Query coordinates in LIIF's convention: HR pixel centres in [-1, 1], (row, col) order."""
from typing import Optional, Sequence

import torch


def make_coord(size: Sequence[int], device: Optional[torch.device] = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Centres of the pixels of an (H, W) grid, flattened row-major to (H * W, 2)."""
    axes = [(torch.arange(n, device=device, dtype=dtype) * 2 + 1) / n - 1 for n in size]
    return torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1).reshape(-1, 2)


def make_cell(size: Sequence[int], num_queries: int, device: Optional[torch.device] = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The HR pixel size (2 / H, 2 / W) repeated for ``num_queries`` queries, (Q, 2)."""
    cell = torch.tensor([2.0 / size[0], 2.0 / size[1]], device=device, dtype=dtype)
    return cell.expand(num_queries, 2)
