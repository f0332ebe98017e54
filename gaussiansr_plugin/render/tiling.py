"""The render loop of query-based networks, for every caller: encoder once per tile, queries in chunks.

``render`` is the one way from an LR image to output pixels: the model's validation and test
(``ArbitraryScaleSRModel.predict``: the one-tile case), ``basicsr upscale`` and ``explain``, the
benchmark's cost probe (through ``predict``) and the scripts. Queries go to the network in
chunks of whole output rows, about ``chunk`` queries (``QUERY_CHUNK`` unless ``val.query_chunk``
says otherwise; at most ``CPU_QUERY_CHUNK`` on the CPU), at least one row.

Tiles: exact tiles, bounded memory, several sizes per encoder pass.

The LR image is cut into tiles (``tile`` LR pixels a side, 0: one tile), each padded by
``tile_pad`` LR pixels of context. A tile is encoded once on the device; its queries are run in
chunks for every requested output size, and each chunk goes to a sink that stores it in the
output's final type. Output pixels are assigned to the tile whose LR core contains their LR
position, so each is rendered once. With ``tile_pad`` at least ``receptive_field(net)`` (the
default) every output pixel equals the whole-image result; a smaller pad is approximate and the
tiles are then blended linearly over a band of ``tile_pad`` LR pixels (``Blender``).

The network gets the whole image's coordinates and cells (``utils/coord.make_coord``'s values,
the same bits as ``ArbitraryScaleSRModel.predict``) and a tile's state placed in the image
(``ImplicitSRNet.place``): the arch picks nearest LR pixels in image coordinates, with its explicit
tie-break at exact LR pixel borders (``archs/arch_util.EPS_SHIFT``), and shifts the integer index
to the tile. So a tile, the whole image and ``basicsr test`` decide every border alike; only the
float64 LR position below decides which tile renders an output pixel, where any side would do.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils.coord import coord_axis
from ..utils.precision import autocast
from .receptive_field import receptive_field

# Tile side in LR pixels of the commands (upscale, explain) unless --tile says otherwise.
DEFAULT_TILE = 256
# Queries per network call unless ``val.query_chunk`` says otherwise (LIIF's eval batch size).
QUERY_CHUNK = 30000
# At most this many per call on the CPU, whatever the chunk asked: a 256-wide decoder layer then
# holds 4 MB, not 12 or 30, nearer the caches. Measured (docs/COMPARE.md, "Exported models", the
# speed tables): 64² -> 256² and 512² in 0.83-0.85x the time of 12,000-query calls for LIIF,
# 0.90-0.94x for GaussianSR, 0.32-0.53x for MetaSR, on 1 and 2 threads; 0.85-0.99x under
# onnxruntime. 2,000 is slower again for GaussianSR and LIIF, faster for MetaSR (0.75-0.95x).
CPU_QUERY_CHUNK = 4000
# sink(target index, row0, row1, col0, col1, rgb (row1 - row0, col1 - col0, 3) float in [0, 1] units)
Sink = Callable[[int, int, int, int, int, torch.Tensor], None]


def query_chunk_or_default(value: Any) -> int:
    """``value`` (an option file's ``val.query_chunk``, an export's ``query_chunk``) when it is a
    positive int, else ``QUERY_CHUNK``."""
    return value if isinstance(value, int) and value > 0 else QUERY_CHUNK


@dataclass(frozen=True)
class Span:
    """A tile along one axis: LR core [start, stop), LR context [lo, hi), and whether it touches an end."""
    start: int
    stop: int
    lo: int
    hi: int
    first: bool
    last: bool


def plan_spans(size: int, tile: int, pad: int) -> List[Span]:
    """Splits ``size`` LR pixels into cores of at most ``tile`` (0: one core), about equal, padded by ``pad``."""
    count = 1 if tile <= 0 else math.ceil(size / tile)
    bounds = [round(k * size / count) for k in range(count + 1)]
    return [Span(a, b, max(0, a - pad), min(size, b + pad), a == 0, b == size) for a, b in zip(bounds, bounds[1:])]


def lr_position(index: torch.Tensor, lr_size: int, hr_size: int) -> torch.Tensor:
    """LR position (pixel-centre units, float64) of output pixel centres ``index`` along one axis."""
    return (index.double() + 0.5) * (lr_size / hr_size) - 0.5


def output_range(span: Span, band: float, lr_size: int, hr_size: int) -> Tuple[int, int]:
    """Output indices [i0, i1) whose LR position lies in the span's core widened by ``band``
    (LR pixels) on each side that is not an image end."""

    def first_at_or_after(position: float) -> int:
        # smallest i with lr_position(i) >= position
        return max(0, min(hr_size, math.ceil((position + 0.5) * hr_size / lr_size - 0.5)))

    i0 = 0 if span.first else first_at_or_after(span.start - 0.5 - band)
    i1 = hr_size if span.last else first_at_or_after(span.stop - 0.5 + band)
    return i0, i1


def ramp(position: torch.Tensor, span: Span, band: float) -> torch.Tensor:
    """Blending weight of a tile along one axis: 1 inside, linear over the 2*band wide overlaps."""
    weight = torch.ones_like(position)
    if not span.first:
        weight = weight * ((position - (span.start - 0.5 - band)) / (2 * band)).clamp(0, 1)
    if not span.last:
        weight = weight * (((span.stop - 0.5 + band) - position) / (2 * band)).clamp(0, 1)
    return weight


class Blender:
    """Accumulates weighted tile outputs of one output image and passes on rows once complete.

    Tiles arrive row of tiles by row of tiles, so only the rows of the current tile row (plus
    the overlap with the next) are held, on the host in the network's precision.
    """

    def __init__(self, target: int, width: int, sink: Sink, dtype: torch.dtype = torch.float32) -> None:
        self.target, self.width, self.sink = target, width, sink
        self.start = 0
        self.acc = torch.zeros(0, width, 3, dtype=dtype)

    def add(self, i0: int, i1: int, j0: int, j1: int, weighted: torch.Tensor) -> None:
        missing = i1 - self.start - self.acc.shape[0]
        if missing > 0:
            self.acc = torch.cat([self.acc, self.acc.new_zeros(missing, self.width, 3)])
        self.acc[i0 - self.start:i1 - self.start, j0:j1] += weighted.cpu()

    def flush(self, upto: int) -> None:
        """Rows before ``upto`` are complete: hand them to the sink."""
        count = upto - self.start
        if count > 0:
            self.sink(self.target, self.start, upto, 0, self.width, self.acc[:count])
            self.acc, self.start = self.acc[count:].clone(), upto


def device_and_dtype(net: Any) -> Tuple[torch.device, torch.dtype]:
    """Where ``net`` takes its inputs, and in which type: its parameters', or for an exported
    model, which has none (``export/onnx_runtime.OnnxNet``), its own ``device`` and ``dtype``."""
    if isinstance(net, nn.Module):
        param = next(net.parameters())
        return param.device, param.dtype
    return net.device, net.dtype


@torch.no_grad()
def render(net: nn.Module, lq: torch.Tensor, sizes: Sequence[Tuple[int, int]], sink: Sink, tile: int = 0,
           tile_pad: Optional[int] = None, chunk: int = QUERY_CHUNK, precision: str = 'fp32',
           on_tile: Optional[Callable[[], None]] = None) -> int:
    """Renders ``lq`` (1, 3, h, w) in [0, 1] at every (H, W) of ``sizes``, one encoder pass per tile.

    Args:
        net: A GaussianSR, LIIF or MetaSR network in eval mode, on its device, or an exported
            one (``export/onnx_runtime.OnnxNet``: encode, place, query, reach).
        sink: Receives every output pixel once (see ``Sink``), rows in order within a tile.
        tile (int): Tile core side in LR pixels; 0: the whole image in one tile (no padding, no
            receptive field needed: any ``ImplicitSRNet``).
        tile_pad (int | None): LR context around each tile; None: the exact receptive field.
            Smaller is approximate and blends the tiles.
        chunk (int): Queries per network call, rounded down to whole output rows (at least one);
            on the CPU at most ``CPU_QUERY_CHUNK``.
        precision (str): 'fp32', or 'fp16' / 'bf16' autocast for the network's layers
            (``utils/precision.py``); the archs keep positions and sampling in float32 under it.
        on_tile: Called after each tile (progress).

    Returns:
        int: The tile padding used (0 for one tile).
    """
    device, dtype = device_and_dtype(net)  # coordinates in the network's precision (float32 or float64)
    if device.type == 'cpu':
        chunk = min(chunk, CPU_QUERY_CHUNK)
    h, w = lq.shape[-2:]
    if tile <= 0:  # one tile: the whole image is its own context
        exact_pad = pad = 0
    else:
        exact_pad = receptive_field(net, max(max(h / H, w / W) for H, W in sizes))
        pad = exact_pad if tile_pad is None else tile_pad
    row_spans, col_spans = plan_spans(h, tile, pad), plan_spans(w, tile, pad)
    # Blending bands of pad / 2 on each side of a border, but at most half a core: a position must
    # not lie in the bands of both sides of a tile, or the weights would not sum to 1.
    cores = [s.stop - s.start for s in row_spans + col_spans if not (s.first and s.last)]
    band = min([pad / 2] + [c / 2 for c in cores]) if pad < exact_pad else 0.0
    blenders = [Blender(k, size[1], sink, dtype) for k, size in enumerate(sizes)] if band else []
    for row_index, rows in enumerate(row_spans):
        for cols in col_spans:
            with autocast(device, precision):
                state = net.encode(lq[..., rows.lo:rows.hi, cols.lo:cols.hi].to(device, dtype))
            if (rows.lo, cols.lo, rows.hi, cols.hi) != (0, 0, h, w):  # a tile: placed in the image
                state = net.place(state, (rows.lo, cols.lo), (h, w))
            for k, (hr_h, hr_w) in enumerate(sizes):
                _render_tile(net, state, (rows, cols), (h, w), (hr_h, hr_w), band, chunk, precision,
                             blenders[k].add if band else lambda *a, k=k: sink(k, *a))
            del state
            if on_tile is not None:
                on_tile()
        for k, blender in enumerate(blenders):
            following = row_spans[row_index + 1] if row_index + 1 < len(row_spans) else None
            blender.flush(output_range(following, band, h, sizes[k][0])[0] if following else sizes[k][0])
    return pad


@torch.no_grad()
def render_image(net: nn.Module, lq: torch.Tensor, out_size: Sequence[int], chunk: int = QUERY_CHUNK,
                 precision: str = 'fp32') -> torch.Tensor:
    """``render`` of each image of ``lq`` (B, 3, h, w) in one tile at ``out_size`` (H, W); returns
    (B, 3, H, W) in ``lq``'s type, unclamped. ``ArbitraryScaleSRModel.predict`` and the scripts."""
    output = lq.new_empty(lq.shape[0], *out_size, 3)
    for index in range(lq.shape[0]):

        def sink(k: int, r0: int, r1: int, c0: int, c1: int, rgb: torch.Tensor, index: int = index) -> None:
            output[index, r0:r1, c0:c1] = rgb

        render(net, lq[index:index + 1], [tuple(out_size)], sink, chunk=chunk, precision=precision)
    return output.permute(0, 3, 1, 2)


def _render_tile(net: nn.Module, state: Any, spans: Tuple[Span, Span], lr_size: Tuple[int, int],
                 hr_size: Tuple[int, int], band: float, chunk: int, precision: str,
                 put: Callable[..., None]) -> None:
    """Queries one tile's output pixels for one output size, in chunks of whole output rows."""
    device, dtype = device_and_dtype(net)
    axes = []
    for span, lr_n, hr_n in zip(spans, lr_size, hr_size):
        i0, i1 = output_range(span, band, lr_n, hr_n)
        coord = coord_axis(hr_n, dtype=dtype)[i0:i1]  # the image's coordinates (see the module docstring)
        cell = 2.0 / hr_n  # as make_cell
        weight = ramp(lr_position(torch.arange(i0, i1), lr_n, hr_n), span, band).to(dtype) if band else None
        axes.append((i0, i1, coord, cell, weight))
    (r0, r1, row_coord, row_cell, row_weight), (c0, c1, col_coord, col_cell, col_weight) = axes
    width = c1 - c0
    if r1 <= r0 or width <= 0:
        return
    col_coord = col_coord.to(device)
    step = max(1, chunk // width)
    for a in range(r0, r1, step):
        b = min(r1, a + step)
        grid = torch.stack(torch.meshgrid(row_coord[a - r0:b - r0].to(device), col_coord, indexing='ij'), -1)
        coord = grid.reshape(1, -1, 2)
        cell = torch.tensor([row_cell, col_cell], dtype=dtype, device=device).expand_as(coord)
        with autocast(device, precision):
            rgb = net.query(state, coord, cell)
        rgb = rgb.to(dtype).reshape(b - a, width, 3)
        if row_weight is not None:
            weight = row_weight[a - r0:b - r0, None] * col_weight[None, :]
            rgb = rgb * weight.to(device).unsqueeze(-1)
        put(a, b, c0, c1, rgb)


@torch.no_grad()
def tiled_lr_map(lq: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], pad: int, tile: int,
                 device: torch.device) -> torch.Tensor:
    """``fn`` (a per-LR-pixel map, (1, C, h, w) for a (1, 3, h, w) input) of the whole image, tile
    by tile; exact when ``pad`` covers ``fn``'s receptive field. Returns (1, C, h, w) on the host."""
    h, w = lq.shape[-2:]
    out = None
    for rows in plan_spans(h, tile, pad):
        for cols in plan_spans(w, tile, pad):
            part = fn(lq[..., rows.lo:rows.hi, cols.lo:cols.hi].to(device)).cpu()
            if out is None:
                out = part.new_empty(*part.shape[:2], h, w)
            out[..., rows.start:rows.stop, cols.start:cols.stop] = \
                part[..., rows.start - rows.lo:rows.stop - rows.lo, cols.start - cols.lo:cols.stop - cols.lo]
    return out
