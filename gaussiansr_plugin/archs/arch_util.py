"""Building blocks shared by the arbitrary-scale archs (GaussianSR, LIIF, MetaSR).

All of them follow LIIF's query interface: ``net(lq, coord, cell) -> rgb`` with

* ``lq``: (B, 3, h, w) low-resolution image in [0, 1];
* ``coord``: (B, Q, 2) HR pixel centres in [-1, 1], (row, col) order;
* ``cell``: (B, Q, 2) HR pixel size in the same units, (2 / H_hr, 2 / W_hr);
* returns (B, Q, 3) RGB in [0, 1] units (not clamped).

They also split the forward pass into ``encode`` (once per image) and ``query`` (any number of
times, e.g. per chunk of query points), which ``ArbitraryScaleSRModel.test`` relies on to bound
memory on large outputs without re-running the encoder. ``arch_options`` names what a
checkpoint must have been trained with (checked on loading, ``utils/checkpoint.py``).
"""
import dataclasses
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer


# The tie-break at exact LR pixel borders (LIIF's ``eps_shift``): a point is moved by this much
# (normalized units of the LR image, +row +col) before the LR pixel containing it is picked, so a
# point exactly on the border of two pixels goes to the lower-right one, whatever the float
# rounding of its coordinate (a float32 coordinate is off by ~1e-7 at most, 1/10 of the shift).
EPS_SHIFT = 1e-6


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where an encoded LR map lies in the LR image that the query coordinates refer to.

    Query coordinates are always those of the whole image (``utils/coord.make_coord``'s), so
    that the nearest-LR-pixel choice, relative positions and cells are computed from the same
    numbers whether the map is the whole image or a tile of it; only the integer pixel index is
    shifted to the tile (exact), and the continuous samples (bicubic) read the tile through
    ``map_coord``.

    Attributes:
        origin: (row, col) of the map's first pixel in the image.
        image_size: (h, w) of the image; None: the map is the whole image.

    In an exported query graph (``export/onnx_export.py``) both are int64 tensors, the graph's
    ``placement`` input, so that one graph serves every tile.
    """
    origin: Tuple[int, int] = (0, 0)
    image_size: Optional[Tuple[int, int]] = None

    def size(self, map_size: Sequence[int]) -> Sequence[int]:
        """The LR size the query coordinates are normalized by."""
        if self.image_size is None:
            return tuple(map_size)
        return self.image_size if torch.is_tensor(self.image_size) else tuple(self.image_size)

    def to_map(self, index: torch.Tensor) -> torch.Tensor:
        """Image pixel indices (..., 2) -> indices in the map."""
        if self.image_size is None:
            return index
        return index - size_tensor(self.origin, index)

    def map_coord(self, coord: torch.Tensor, map_size: Sequence[int]) -> torch.Tensor:
        """Image-normalized coordinates -> the map's normalized coordinates (for ``grid_sample``)."""
        if self.image_size is None:
            return coord
        traced = torch.is_tensor(self.image_size)  # an exported graph's input (export/onnx_export.py)
        if not traced and tuple(self.origin) == (0, 0) and tuple(self.image_size) == tuple(map_size):
            return coord  # the map is the image: the same numbers, not a round trip
        image, origin = size_tensor(self.image_size, coord), size_tensor(self.origin, coord)
        size = size_tensor(map_size, coord)
        mapped = ((coord + 1) / 2 * image - origin) * 2 / size - 1
        if traced:  # the same decision as above, taken in the graph
            return torch.where((origin == 0).all() & (image == size).all(), coord, mapped)
        return mapped


def size_tensor(values: Any, like: torch.Tensor) -> torch.Tensor:
    """An LR size or position, (row, col), as a tensor of ``like``'s dtype and device.

    ``values``: Python ints, the symbolic sizes of a graph being exported (``torch.tensor``
    keeps them symbolic, ``Tensor.new_tensor`` would fix them at the example's values) or a
    tensor (an exported graph's input, ``Placement`` of a tile). The same numbers either way.
    """
    if torch.is_tensor(values):
        return values.to(device=like.device, dtype=like.dtype)
    return torch.tensor(tuple(values), dtype=like.dtype, device=like.device)


def nearest_latent(coord: torch.Tensor, lr_size: Sequence[int]) -> torch.Tensor:
    """(row, col) index (B, Q, 2, int64) of the LR pixel containing ``coord`` (B, Q, 2 in [-1, 1]).

    A point on a border goes to the upper pixel (floor); LIIF's ``grid_sample(mode='nearest')``
    rounds half to even instead, which is why its callers shift the point by ``EPS_SHIFT`` first:
    then no query lies on a border, and both pick the same pixel.
    """
    size = size_tensor(lr_size, coord)
    index = torch.floor((coord + 1) / 2 * size).long()
    return torch.minimum(index.clamp(min=0), (size.long() - 1))


def nearest_centre(coord: torch.Tensor, lr_size: Sequence[int]) -> torch.Tensor:
    """Index (B, Q, 2, in ``coord``'s dtype) of the LR pixel whose centre is nearest to ``coord``.

    Ties (a point exactly on the border between two pixels: every 5th output row and column at
    x2.5) go to the lower-right pixel by the ``EPS_SHIFT`` rule, so that the choice does not
    depend on how the coordinate was rounded (float32 or float64, whole image or tile).
    """
    return nearest_latent(coord + EPS_SHIFT, lr_size).to(coord.dtype)


def full_precision(device: torch.device) -> torch.autocast:
    """Turns autocast off on ``device``'s type, for the position arithmetic inside an autocast region.

    Coordinates, cells, positions and sampling weights stay float32 under any autocast; only the
    heavy matrix work (convolutions, the decoders' linear layers) may run in half precision.
    Why: bfloat16 spaces normalized coordinates near 1 by 2^-8, one LR pixel of a 512-pixel-wide
    map (float16 by 2^-11, a quarter pixel at 1,024 pixels); and it spaces Gaussian exponents near
    -40 by 0.25, so a weight e^-40 could come out 13% off.
    """
    return torch.autocast(device_type=device.type, enabled=False)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 when it is in a half-precision type (an autocast output), else as is."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class EDSRBaselineEncoder(nn.Module):
    """EDSR without its upsampler: the LR feature extractor of EDSR-baseline-LIIF.

    Built from BasicSR's own ``ResidualBlockNoBN``. The input normalization ``(x - 0.5) / 0.5``
    is LIIF's; it is a fixed affine map, so no (frozen) mean-shift parameters are kept.

    Args:
        num_feat (int): Channel number of the feature map. Default: 64.
        num_block (int): Number of residual blocks. Default: 16.
        res_scale (float): Residual scale inside the blocks. Default: 1.
    """

    def __init__(self, num_feat: int = 64, num_block: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.num_feat = num_feat
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat, res_scale=res_scale, pytorch_init=True)
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        x = self.conv_first((lq - 0.5) / 0.5)
        return self.conv_after_body(self.body(x)) + x


class MLP(nn.Sequential):
    """Fully connected layers with ReLU between them, applied to the last dimension.

    Args:
        in_dim (int): Input dimension.
        out_dim (int): Output dimension.
        hidden_list (list[int]): Widths of the hidden layers.
        float32_output (bool): Run the output layer in float32 under autocast too (see
            ``full_precision``). For a decoder whose output is the colour: a half-precision output
            would round it to 8 (bfloat16) or 11 (float16) significant bits, while a layer of
            ``out_dim`` = 3 costs next to nothing. Outside autocast nothing changes. Default: False.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int], float32_output: bool = False) -> None:
        layers = []
        for hidden in hidden_list:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(inplace=True)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)
        self.float32_output = float32_output

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Applies the layers from index ``start`` on (0: all) to ``x``."""
        layers = list(self)[start:]
        for layer in layers[:-1]:
            x = layer(x)
        if not self.float32_output:
            return layers[-1](x)
        with full_precision(x.device):
            return layers[-1](at_least_float32(x))


class ImplicitSRNet(nn.Module):
    """Base class of the query-based archs: ``forward = query(encode(lq), coord, cell)``.

    Also holds the optional RGB skip (``rgb_skip``, our extension for LIIF and MetaSR): the
    decoder's prediction ``pred`` becomes ``pred * pred_scale + base``, where ``base`` is the
    bicubic sample of the LR image with the skip and ``pred_shift`` without it. A subclass whose
    decoder predicts in LIIF's (x - 0.5) / 0.5 space sets ``pred_scale = pred_shift = 0.5``.
    """

    pred_scale = 1.0
    pred_shift = 0.0
    rgb_skip = False
    _arch_options: Dict[str, Any] = {}  # set per instance by ``set_arch_options``

    def set_arch_options(self, **options: Any) -> None:
        """Records the constructor options ``arch_options`` returns (sequences as lists)."""
        self._arch_options = {k: _plain(v) for k, v in options.items()}

    def arch_options(self) -> Dict[str, Any]:
        """The arch name (``type``) and the constructor options that define what it computes.

        Saved with every checkpoint the plugin writes and compared on loading: ``rgb_skip``,
        ``res_scale``, ``sigma_range``, ``local_ensemble`` and the like change the outputs, not
        the parameter shapes, so a checkpoint trained with other values would load silently.
        Shape-defining options are included too (the error then names the option, not a key).
        Left out are the switches one may change on a trained network: evaluation-only ones
        (``eval_kernel``, and ``window_tolerance``, the accuracy of the splat window) and
        training-only ones (``tau``, ``gumbel_hard``). Plain Python values only: the
        checkpoint stays loadable with ``torch.load(weights_only=True)``.
        """
        return {'type': type(self).__name__, **self._arch_options}

    def init_rgb_skip(self, rgb_skip: bool, last_layer: nn.Linear) -> None:
        """Turns the skip on or off; on, ``last_layer`` (the decoder's output layer) is
        zero-initialized so that the untrained network returns exactly the bicubic sample."""
        self.rgb_skip = bool(rgb_skip)
        if self.rgb_skip:
            nn.init.zeros_(last_layer.weight)
            nn.init.zeros_(last_layer.bias)

    def to_rgb(self, pred: torch.Tensor, lq: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """Maps the decoder output (B, Q, 3) to RGB in [0, 1] units (see the class docstring)."""
        base = sample_bicubic(lq, coord) if self.rgb_skip else self.pred_shift
        return pred * self.pred_scale + base

    def encode(self, lq: torch.Tensor) -> Any:
        """Computes the per-image state that ``query`` reads (features, splat tables, ...)."""
        raise NotImplementedError

    def place(self, state: Any, origin: Sequence[int], image_size: Sequence[int]) -> Any:
        """The state of an encoded tile whose first pixel is ``origin`` in an LR image of ``image_size``.

        ``query`` then takes the whole image's coordinates and cells (see ``Placement``): a tile
        gives the same nearest-pixel choices and positions as the whole image, to the bit.
        """
        return dataclasses.replace(state, placement=Placement(tuple(origin), tuple(image_size)))

    def query(self, state: Any, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Predicts RGB (B, Q, 3) at ``coord`` from the state returned by ``encode``."""
        raise NotImplementedError

    def query_reach(self, max_lr_per_hr: float = 1.0) -> float:
        """Distance D (LR pixels) from a query's position to the farthest encoder feature ``query`` reads.

        The decoder's neighbourhood only (splat window, unfolded neighbours, bicubic taps, ...):
        the encoder's own reach is computed from its convolutions (``encoder_reach``), and the
        RGB skip's taps are added by ``render/receptive_field.py``. The tile padding needs
        it; each arch says its own.

        Args:
            max_lr_per_hr (float): The largest output pixel size, in LR pixels (1 / the smallest
                scale), for a decoder that reads from the output pixel's extent. Default: 1.
        """
        raise NotImplementedError(f'the query reach of {type(self).__name__} is not known; use --tile 0 (no tiles)')

    def forward(self, lq: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        return self.query(self.encode(lq), coord, cell)


def _plain(value: Any) -> Any:
    """Tuples (argument defaults) and lists (YAML) as lists, so that both compare equal."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# grid_sample's bicubic taps at P are the pixels floor(P) - 1 .. floor(P) + 2: all within 2 of P.
BICUBIC_REACH = 2.0


def encoder_reach(encoder: nn.Module) -> int:
    """Receptive radius of a stride-1 conv stack: the sum of its convs' half-extents.

    Exact for a chain with residual additions (EDSR: every conv is on the longest path); an upper
    bound for any other wiring of the same convs.

    Raises:
        ValueError: A strided or transposed conv (tiles of it would not align with LR pixels).
    """
    reach = 0
    for name, module in encoder.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            if isinstance(module, nn.modules.conv._ConvTransposeNd) or any(s != 1 for s in module.stride):
                raise ValueError(f'encoder.{name} is strided or transposed; its receptive field is not computed')
            reach += conv_reach(module)
    return reach


def conv_reach(conv: nn.Module) -> int:
    """How far (pixels) a conv's output sees from its centre: ceil(dilation * (kernel - 1) / 2)."""
    return max(math.ceil(d * (k - 1) / 2) for k, d in zip(conv.kernel_size, conv.dilation))


def sample_bicubic(feat: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Bicubic samples of ``feat`` (B, C, h, w) at ``coord`` (B, Q, 2, row-col in [-1, 1]) -> (B, Q, C).

    ``align_corners=False`` matches the pixel-centre convention of ``coord``; 'border' padding
    replicates edge pixels for the taps that fall outside the map. The grid and the samples are
    at least float32 whatever the precision of ``feat`` (see ``full_precision``): a half-precision
    feature map is widened, never the coordinates narrowed.
    """
    feat = at_least_float32(feat)
    with full_precision(feat.device):
        if torch.compiler.is_exporting():
            return _bicubic_taps(feat, coord.to(feat.dtype))
        grid = coord.flip(-1).unsqueeze(1).to(feat.dtype)  # grid_sample wants (x, y)
        sampled = nn.functional.grid_sample(feat, grid, mode='bicubic', padding_mode='border', align_corners=False)
    return sampled[:, :, 0, :].permute(0, 2, 1)


# grid_sample's bicubic convolution kernel parameter.
CUBIC_A = -0.75


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """grid_sample's weights (..., 4) of the taps at -1, 0, 1, 2 from a position ``t`` in [0, 1) past tap 0."""

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    return torch.stack([far(t + 1), near(t), near(1 - t), far((1 - t) + 1)], dim=-1)


def _bicubic_taps(feat: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """``sample_bicubic`` for an exported graph (``export/onnx_export.py``): one gather of the 4x4
    taps (clamped to the map: 'border') and one product with grid_sample's weights. The same taps
    and weights, summed in another order: equal up to float rounding. onnxruntime's GridSample
    took four times PyTorch's grid_sample (20 vs 5 ms for 12,000 queries of 56 channels, one CPU
    thread), a fifth of an exported GaussianSR query."""
    batch, channels, h, w = feat.shape
    size = size_tensor((h, w), coord)
    pos = ((coord + 1) * size - 1) / 2  # grid_sample's unnormalize, align_corners=False: (B, Q, 2)
    first = torch.floor(pos)
    weights = _cubic_weights(pos - first)  # (B, Q, 2, 4)
    taps = first.long().unsqueeze(-1) + torch.arange(-1, 3, device=coord.device)
    taps = torch.minimum(taps.clamp(min=0), size.long().unsqueeze(-1) - 1)
    index = taps[..., 0, :, None] * w + taps[..., 1, None, :]  # (B, Q, 4, 4) in the flattened map
    index = index.reshape(batch, -1) + (torch.arange(batch, device=coord.device) * (h * w)).unsqueeze(-1)
    rows = feat.flatten(2).transpose(1, 2).reshape(-1, channels)  # channels-last pixels
    picked = rows.index_select(0, index.reshape(-1)).view(batch, coord.shape[1], 16, channels)
    weight = (weights[..., 0, :, None] * weights[..., 1, None, :]).reshape(batch, coord.shape[1], 1, 16)
    return torch.matmul(weight, picked).squeeze(-2)


def coord_to_lr_pixels(coord: torch.Tensor, lr_size: Sequence[int]) -> torch.Tensor:
    """Maps normalized (row, col) coordinates to LR pixel units, where LR pixel centres are integers."""
    return (coord + 1) / 2 * size_tensor(lr_size, coord) - 0.5


# Frequencies (cycles per LR pixel) of the 'fourier' position encoding (ours): the first
# resolves the position inside a pixel without ambiguity, the second doubles the resolution.
FOURIER_FREQS = (1, 2)
# Decoder input dimensions of each position encoding.
POSITION_DIMS = {'offset': 2, 'fourier': 4 * len(FOURIER_FREQS)}


def position_encoding(pos: torch.Tensor, nearest: torch.Tensor, mode: str) -> torch.Tensor:
    """Encodes query positions ``pos`` (B, Q, 2) in LR pixels (centres at integers) for a decoder.

    * ``'offset'``: ``pos - nearest``, the offset to the nearest LR pixel centre (``nearest``,
      from ``nearest_centre``: a query on a border takes the next pixel, -0.5), in [-0.5, 0.5]
      (GaussianSR's input). It jumps from +0.5 to -0.5 where a query crosses the border between
      two LR pixels.
    * ``'fourier'`` (ours): sin and cos of ``2π f pos`` for f in ``FOURIER_FREQS``. A function
      of the same offset (integer frequencies have a period of one pixel), but continuous
      across borders.

    Returns:
        Tensor: (B, Q, ``POSITION_DIMS[mode]``).
    """
    if mode == 'offset':
        return pos - nearest
    angles = torch.cat([2 * math.pi * f * pos for f in FOURIER_FREQS], dim=-1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
