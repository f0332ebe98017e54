"""Rendering a field of 2D Gaussians, one centred on every LR pixel, at arbitrary query points.

Every LR pixel ``i`` carries a Gaussian with covariance
``Σ_i = [[σx², ρ σx σy], [ρ σx σy, σy²]]`` in LR-pixel units (x = column, y = row) and a
C-channel amplitude ``a_i``. The feature at a point ``p`` is

    C(p) = Σ_i a_i · exp(-½ (p - μ_i)ᵀ Σ_i⁻¹ (p - μ_i)) / (2π sqrt(det Σ_i))

(the paper's eq. 3-5; its eq. 3 prints ``|Σ|`` for the normalizer, we use the density's own
``sqrt(det Σ)`` so that a kernel's mass equals its amplitude whatever its shape).

``SplatTable`` + ``splat_query`` evaluate only the Gaussians of the (2r+1)² LR pixels nearest to
each query: memory O(queries · C) per window offset, never an image per Gaussian. The window
radius comes from ``window_radius``: a Gaussian centred outside the window sits more than
r + ½ pixels away along one axis, so its unnormalized weight is below
``exp(-(r + ½)² / (2 σ_max²))`` (``dᵀΣ⁻¹d >= d_x² / Σ_xx`` for any d). ``render_dense`` is the
paper's Algorithm 1 (every Gaussian at every query) and serves as the reference in tests.
"""
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .arch_util import coord_to_lr_pixels


def window_radius(sigma_max: float, tolerance: float = 1e-4) -> int:
    """Smallest r such that Gaussians outside the (2r+1)² window weigh below ``tolerance``.

    Args:
        sigma_max (float): Largest standard deviation (LR pixels) the Gaussian bank allows.
        tolerance (float): Bound on the unnormalized weight of an excluded Gaussian.
    """
    return max(1, math.ceil(sigma_max * math.sqrt(2 * math.log(1 / tolerance)) - 0.5))


def gaussian_normalizer(sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """1 / (2π sqrt(det Σ)) for Σ = [[σx², ρσxσy], [ρσxσy, σy²]]."""
    return 1.0 / (2 * math.pi * sigma_x * sigma_y * torch.sqrt(1 - rho * rho))


@dataclass
class SplatTable:
    """Per-LR-pixel Gaussian data, zero-padded by ``radius`` and flattened channels-last.

    ``data`` has shape (B * (h + 2r) * (w + 2r), C + 3): the normalized amplitude followed by the
    conic (A, B, C) with ``dᵀΣ⁻¹d = A dx² + 2B dx dy + C dy²``. Padding rows are all zero, so a
    window that reaches past the border adds nothing.
    """
    data: torch.Tensor
    batch: int
    lr_size: Sequence[int]
    radius: int
    channels: int


def build_splat_table(amplitude: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor,
                      radius: int) -> SplatTable:
    """Packs the Gaussians of an LR map for ``splat_query``.

    Args:
        amplitude (Tensor): (B, C, h, w) colour of each Gaussian.
        sigma_x, sigma_y, rho (Tensor): (B, h, w) shape of each Gaussian (LR pixels; |rho| < 1).
        radius (int): Window radius r; the window holds (2r+1)² LR pixels.
    """
    b, c, h, w = amplitude.shape
    inv_det = 1.0 / (1 - rho * rho)
    conic = torch.stack([inv_det / (sigma_x * sigma_x), -rho * inv_det / (sigma_x * sigma_y),
                         inv_det / (sigma_y * sigma_y)], dim=1)
    weighted = amplitude * gaussian_normalizer(sigma_x, sigma_y, rho).unsqueeze(1)
    packed = torch.cat([weighted, conic], dim=1)
    packed = torch.nn.functional.pad(packed, (radius, radius, radius, radius))
    data = packed.permute(0, 2, 3, 1).reshape(-1, c + 3)
    return SplatTable(data=data, batch=b, lr_size=(h, w), radius=radius, channels=c)


def splat_query(table: SplatTable, coord: torch.Tensor) -> torch.Tensor:
    """Sums the Gaussians of the (2r+1)² LR pixels nearest to each query.

    Args:
        table (SplatTable): From ``build_splat_table``.
        coord (Tensor): (B, Q, 2) query points, (row, col) in [-1, 1].

    Returns:
        Tensor: (B, Q, C) splatted feature.
    """
    h, w = table.lr_size
    r, c = table.radius, table.channels
    padded_w = w + 2 * r
    pos = coord_to_lr_pixels(coord, (h, w)).reshape(-1, 2)  # (B*Q, 2): (row, col) in LR pixels
    nearest_row = torch.round(pos[:, 0]).clamp_(0, h - 1)
    nearest_col = torch.round(pos[:, 1]).clamp_(0, w - 1)
    # Offsets of the query from its nearest LR pixel centre; the window offsets are added below.
    dy0, dx0 = pos[:, 0] - nearest_row, pos[:, 1] - nearest_col
    image_start = torch.arange(table.batch, device=coord.device).repeat_interleave(coord.shape[1])
    base = (image_start * (h + 2 * r) + nearest_row.long() + r) * padded_w + nearest_col.long() + r

    out = coord.new_zeros(pos.shape[0], c)
    for oy in range(-r, r + 1):
        dy = dy0 - oy
        for ox in range(-r, r + 1):
            rows = table.data.index_select(0, base + (oy * padded_w + ox))
            dx = dx0 - ox
            mahalanobis = rows[:, c] * dx * dx + 2 * rows[:, c + 1] * dx * dy + rows[:, c + 2] * dy * dy
            out = out + torch.exp(-0.5 * mahalanobis).unsqueeze(1) * rows[:, :c]
    return out.view(table.batch, -1, c)


def render_dense(amplitude: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor,
                 coord: torch.Tensor) -> torch.Tensor:
    """Reference renderer: every Gaussian evaluated at every query (memory O(Q · h · w)).

    Uses an explicit covariance matrix, its inverse and determinant, independently of the conic
    arithmetic of ``build_splat_table``. Arguments as there; returns (B, Q, C).
    """
    b, c, h, w = amplitude.shape
    cov_xy = rho * sigma_x * sigma_y
    cov = torch.stack([torch.stack([sigma_x**2, cov_xy], -1), torch.stack([cov_xy, sigma_y**2], -1)], -2)
    cov = cov.reshape(b, h * w, 2, 2)
    rows = torch.arange(h, dtype=coord.dtype, device=coord.device)
    cols = torch.arange(w, dtype=coord.dtype, device=coord.device)
    centres = torch.stack(torch.meshgrid(cols, rows, indexing='xy'), -1).reshape(h * w, 2)  # (x, y)
    pos = coord_to_lr_pixels(coord, (h, w)).flip(-1)  # (B, Q, 2) as (x, y)
    diff = pos[:, :, None, :] - centres[None, None]  # (B, Q, hw, 2)
    mahalanobis = torch.einsum('bqni,bnij,bqnj->bqn', diff, torch.linalg.inv(cov), diff)
    density = torch.exp(-0.5 * mahalanobis) / (2 * math.pi * torch.sqrt(torch.linalg.det(cov)))[:, None, :]
    return torch.einsum('bqn,bcn->bqc', density, amplitude.reshape(b, c, h * w))
