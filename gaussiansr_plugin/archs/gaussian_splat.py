"""Rendering a field of 2D Gaussians, one centred on every LR pixel, at arbitrary query points.

Every LR pixel ``i`` carries a Gaussian with covariance
``Σ_i = [[σx², ρ σx σy], [ρ σx σy, σy²]]`` in LR-pixel units (x = column, y = row) and a
C-channel amplitude ``a_i``. The feature at a point ``p`` is

    C(p) = Σ_i a_i · exp(-½ (p - μ_i)ᵀ Σ_i⁻¹ (p - μ_i)) / (2π sqrt(det Σ_i))

(the paper's eq. 3-5; its eq. 3 prints ``|Σ|`` for the normalizer, we use the density's own
``sqrt(det Σ)`` so that a kernel's mass equals its amplitude whatever its shape).

``SplatTable`` + ``splat_query`` evaluate only the Gaussians of the (2r+1)² LR pixels nearest to
each query, never an image per Gaussian. The window radius comes from ``window_radius``: a
Gaussian centred outside the window sits more than r + ½ pixels away along one axis, so its
unnormalized weight is below ``exp(-(r + ½)² / (2 σ_max²))`` (``dᵀΣ⁻¹d >= d_x² / Σ_xx`` for
any d). ``render_dense`` is the paper's Algorithm 1 (every Gaussian at every query) and serves
as the reference in tests.

``splat_query`` works on blocks of queries: one gather fetches the conics of every window of a
block, a handful of batched operations compute all their weights, and one ``embedding_bag``
sums the weighted amplitude rows; not one small gather and a dozen small operations per window
offset (81 of each for r = 4), which cost more in dispatch and thread synchronization than in
arithmetic, above all on shared cores.
"""
import math
from dataclasses import dataclass, field, replace
from typing import Sequence, Tuple

import torch

from .arch_util import Placement, coord_to_lr_pixels, full_precision, nearest_centre

# Queries per block in ``splat_query``; see its docstring for the memory this bounds.
SPLAT_CHUNK = 2048
# Window weights below exp(EXP_FLOOR) ≈ 9e-14 are set to 0, as the Gaussians outside the window
# (which weigh up to ``window_tolerance``, 1e-4 by default) are. Why: exp(x) for x below about -87
# and products with results below ~1e-38 are denormal in float32, many times slower on x86; a
# weight of 0, or one of at least 9e-14, keeps every product (weight·amplitude, weight·gradient)
# in normal range in practice. The error is below 9e-14 · (2r+1)² · max|amplitude|.
EXP_FLOOR = -30.0


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

    Rows are the pixels of the padded maps, B * (h + 2r) * (w + 2r) of them: ``amplitude``
    (rows, C) holds the normalized amplitudes and ``exponent`` (rows, 3) the coefficients
    (-½A, -B, -½C) of the conic, so that ``-½ dᵀΣ⁻¹d = -½A dx² - B dx dy - ½C dy²``. Both are
    contiguous and at least float32, whatever the input precision. Padding rows are all zero, so
    a window that reaches past the border adds nothing. ``placement``: where the map lies in the
    image the query coordinates refer to (a tile's, see ``arch_util.Placement``). ``unfolded``:
    the exported graphs' layout (``unfold``), each row holding 2r+1 neighbouring pixels.
    """
    amplitude: torch.Tensor
    exponent: torch.Tensor
    batch: int
    lr_size: Sequence[int]
    radius: int
    placement: Placement = field(default_factory=Placement)
    unfolded: bool = False

    @property
    def side(self) -> int:
        return 2 * self.radius + 1

    @property
    def channels(self) -> int:
        return self.amplitude.shape[1] // (self.side if self.unfolded else 1)

    def unfold(self) -> 'SplatTable':
        """This table with row p holding rows p .. p + 2r of ``amplitude`` and ``exponent``
        ((rows, (2r+1)·C) and (rows, 3·(2r+1)), zeros past the end): the 2r+1 pixels of a padded
        map row that a window row covers. An exported graph then gathers 2r+1 rows of (2r+1)·C
        values per query instead of (2r+1)² rows of C: onnxruntime's Gather pays per row. The
        gathers of the two tables took 16.9 ms of an exported GaussianSR query call of 96.5 ms
        with (2r+1)² rows, 2.4 ms unfolded (``scripts/profile_onnx_query.py``: 12,000 queries,
        one CPU thread, r = 4)."""
        if self.unfolded:
            return self

        def unfold_rows(rows: torch.Tensor) -> torch.Tensor:
            padded = torch.nn.functional.pad(rows, (0, 0, 0, self.side - 1))
            return torch.cat([padded[k:k + rows.shape[0]] for k in range(self.side)], dim=1)

        # The conics planar, (rows, 3, 2r+1): each coefficient of a window row in one run.
        exponent = unfold_rows(self.exponent).view(-1, self.side, 3).transpose(1, 2).reshape(-1, 3 * self.side)
        return replace(self, amplitude=unfold_rows(self.amplitude), exponent=exponent, unfolded=True)


def _pixel_rows(maps: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, K, h, w) -> contiguous (B * (h + 2r) * (w + 2r), K), zero-padded by r."""
    padded = torch.nn.functional.pad(maps, (radius, radius, radius, radius))
    return padded.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).contiguous()


def build_splat_table(amplitude: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor,
                      radius: int) -> SplatTable:
    """Packs the Gaussians of an LR map for ``splat_query`` (in float32 or wider, also under autocast).

    Args:
        amplitude (Tensor): (B, C, h, w) colour of each Gaussian.
        sigma_x, sigma_y, rho (Tensor): (B, h, w) shape of each Gaussian (LR pixels; |rho| < 1).
        radius (int): Window radius r; the window holds (2r+1)² LR pixels.
    """
    b, _, h, w = amplitude.shape
    dtype = torch.promote_types(amplitude.dtype, torch.float32)
    with full_precision(amplitude.device):
        amplitude, sigma_x, sigma_y, rho = (t.to(dtype) for t in (amplitude, sigma_x, sigma_y, rho))
        inv_det = 1.0 / (1 - rho * rho)
        exponent = torch.stack([-0.5 * inv_det / (sigma_x * sigma_x), rho * inv_det / (sigma_x * sigma_y),
                                -0.5 * inv_det / (sigma_y * sigma_y)], dim=1)
        weighted = amplitude * gaussian_normalizer(sigma_x, sigma_y, rho).unsqueeze(1)
        return SplatTable(amplitude=_pixel_rows(weighted, radius), exponent=_pixel_rows(exponent, radius), batch=b,
                          lr_size=(h, w), radius=radius)


class _Windows:
    """Where the (2r+1)² window of every query lies in a ``SplatTable``, and the query's offsets."""

    def __init__(self, table: SplatTable, coord: torch.Tensor) -> None:
        h, w = table.lr_size
        r = table.radius
        padded_w = w + 2 * r
        coord = coord.detach().to(table.amplitude.dtype)
        # In the image's pixels (the same numbers for a tile and the whole image), then the window
        # is moved to the map by an exact integer shift.
        placement = table.placement
        lr_size = placement.size(table.lr_size)
        pos = coord_to_lr_pixels(coord, lr_size).reshape(-1, 2)
        nearest = nearest_centre(coord, lr_size).reshape(-1, 2)
        self.offset = pos - nearest  # (row, col) from the nearest LR pixel centre, at (+r, +r) in the window
        image = torch.arange(table.batch, device=coord.device).repeat_interleave(coord.shape[1])
        nearest = placement.to_map(nearest.long())
        self.corner = (image * (h + 2 * r) + nearest[:, 0]) * padded_w + nearest[:, 1]  # top-left table row
        steps = torch.arange(2 * r + 1, device=coord.device)
        self.shifts = steps.to(pos.dtype) - r
        self.row_steps = steps * padded_w  # first pixel of each window row
        self.steps = (self.row_steps[:, None] + steps[None, :]).reshape(-1)  # row-major window

    def __len__(self) -> int:
        return self.corner.shape[0]

    def weights(self, exponent: torch.Tensor, start: int,
                stop: int) -> Tuple[torch.Tensor, torch.Tensor, Tuple[torch.Tensor, ...]]:
        """For queries ``start:stop``: table rows (n, side²) of their windows, the Gaussians'
        weights there (n, side²) and dx², dx·dy, dy² (broadcastable to (n, side, side))."""
        n, side = stop - start, self.shifts.shape[0]
        index = self.corner[start:stop, None] + self.steps
        coef = exponent.index_select(0, index.view(-1)).view(n, side, side, 3)
        dx = (self.offset[start:stop, 1:2] - self.shifts).unsqueeze(1)  # (n, 1, side): window columns
        dy = (self.offset[start:stop, 0:1] - self.shifts).unsqueeze(2)  # (n, side, 1): window rows
        terms = (dx * dx, dx * dy, dy * dy)
        power = torch.addcmul(torch.addcmul(coef[..., 0] * terms[0], coef[..., 1], terms[1]), coef[..., 2], terms[2])
        return index, _weight_of(power).view(n, side * side), terms


def _weight_of(power: torch.Tensor) -> torch.Tensor:
    """exp of a clamped exponent (never denormal), then 0 below the floor (see EXP_FLOOR); in place."""
    return torch.threshold_(power.clamp_(min=EXP_FLOOR - 1).exp_(), math.exp(EXP_FLOOR), 0.0)


class _WindowSum(torch.autograd.Function):
    """Σ over each query's window of weight · amplitude row, block by block, forward and backward.

    The backward pass is written out: it recomputes each block's weights instead of keeping them
    (training memory stays bounded by the block) and adds every block's gradients into one
    table-sized gradient (autograd's would sort the indices and make a table-sized gradient per
    block). Differentiable with respect to the table, not the query coordinates.
    """

    @staticmethod
    def forward(ctx, amplitude: torch.Tensor, exponent: torch.Tensor, windows: _Windows, chunk: int) -> torch.Tensor:
        blocks = []
        for start in range(0, max(len(windows), 1), chunk):  # one (empty) block when there is no query
            index, weight, _ = windows.weights(exponent, start, min(start + chunk, len(windows)))
            # One weighted sum of table rows per query, without copying the rows out.
            blocks.append(torch.nn.functional.embedding_bag(index, amplitude, per_sample_weights=weight, mode='sum'))
        ctx.save_for_backward(amplitude, exponent)
        ctx.windows, ctx.chunk = windows, chunk
        return torch.cat(blocks) if len(blocks) > 1 else blocks[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        amplitude, exponent = ctx.saved_tensors
        windows, chunk = ctx.windows, ctx.chunk
        grad_amplitude = torch.zeros_like(amplitude) if ctx.needs_input_grad[0] else None
        grad_exponent = torch.zeros_like(exponent) if ctx.needs_input_grad[1] else None
        with full_precision(amplitude.device):
            grad_out = grad_out.to(amplitude.dtype)
            for start in range(0, len(windows), chunk):
                stop = min(start + chunk, len(windows))
                index, weight, terms = windows.weights(exponent, start, stop)
                grad, flat = grad_out[start:stop], index.view(-1)
                if grad_amplitude is not None:  # d out / d amplitude row = weight
                    grad_amplitude.index_add_(0, flat, (weight.unsqueeze(2) * grad.unsqueeze(1)).flatten(0, 1))
                if grad_exponent is not None:
                    # d out / d power = weight · amplitude row; the weights set to 0 get none.
                    rows = amplitude.index_select(0, flat).view(*weight.shape, -1)
                    grad_power = torch.bmm(rows, grad.unsqueeze(2)).view_as(weight) * weight
                    grad_power = grad_power.view(terms[1].shape)  # (n, side, side), as the terms broadcast
                    grad_exponent.index_add_(0, flat, torch.stack([grad_power * t for t in terms], dim=-1).view(-1, 3))
        return grad_amplitude, grad_exponent, None, None


def splat_query(table: SplatTable, coord: torch.Tensor, chunk: int = SPLAT_CHUNK) -> torch.Tensor:
    """Sums the Gaussians of the (2r+1)² LR pixels nearest to each query.

    Works on blocks of ``chunk`` queries (flattened over the batch); a block is one gather of
    its windows' conics, a few batched operations on the (2r+1)² weights of every query and one
    weighted sum of table rows (``embedding_bag``). Besides the output and O(queries) indices, a
    block holds at most about ``chunk · (2r+1)² · 12`` values at once (window indices, conics,
    powers, weights), and in backward, which recomputes each block, ``chunk · (2r+1)² · (2C + 15)``
    (also the window's amplitude rows and their gradients): for r = 4, C = 8 and the default
    chunk about 8 MB and 21 MB in float32, whatever the number of queries, in inference and in
    training. Backward adds one gradient of the table's size.

    Args:
        table (SplatTable): From ``build_splat_table``.
        coord (Tensor): (B, Q, 2) query points, (row, col) in [-1, 1] of the image
            (``table.placement``); not differentiated.
        chunk (int): Queries per block.

    Returns:
        Tensor: (B, Q, C) splatted feature, in the table's precision (float32 under autocast).
    """
    with full_precision(coord.device):
        windows = _Windows(table, coord)
        if torch.compiler.is_exporting() or table.unfolded:
            out = _window_sum_graph(table, windows)
        else:
            out = _WindowSum.apply(table.amplitude, table.exponent, windows, chunk)
    return out.view(table.batch, -1, table.channels)


def _window_sum_graph(table: SplatTable, windows: _Windows) -> torch.Tensor:
    """``_WindowSum``'s forward as one block of ops every graph format has, for an exported graph
    (``export/onnx_export.py``): its query count is symbolic, so no Python loop over blocks, and
    ONNX has no ``embedding_bag``. A weighted sum of the same rows, taken in another order: equal
    up to float rounding. Memory grows with the queries of a call (the caller chunks them). On
    the unfolded table (``SplatTable.unfold``): one gathered row per window row."""
    table = table.unfold()
    n, side = windows.corner.shape[0], table.side  # not len(): it would fix an exported query count
    index = (windows.corner[:, None] + windows.row_steps).reshape(-1)
    rows = table.amplitude.index_select(0, index).view(n, side * side, table.channels)
    planes = table.exponent.index_select(0, index).view(n, side, 3, side)
    # ``_Windows.weights``'s exponent with every operand of full shape (n, side²): onnxruntime's
    # products that broadcast along an axis of ``side`` values took 8x a full-shape product
    # (1.3 vs 0.17 ms for 12,000 windows of 81, one thread).
    dx = windows.offset[:, 1:2] - windows.shifts.repeat(side)  # window columns, row-major
    dy = windows.offset[:, 0:1] - windows.shifts.repeat_interleave(side)  # window rows
    c0, c1, c2 = (planes[:, :, k].reshape(n, side * side) for k in range(3))
    power = c0 * (dx * dx) + c1 * (dx * dy) + c2 * (dy * dy)
    return torch.matmul(_weight_of(power).unsqueeze(1), rows).squeeze(1)


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
