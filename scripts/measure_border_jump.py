"""Does a network's output step where queries cross the border between two LR pixels?

    python scripts/measure_border_jump.py -opt OPTION_FILE [--checkpoint CKPT] [--image IMG]
        [--scale 4] [--density 16] [--lines 64]

Builds the network of the option file (``model_type`` / ``network_g``) with the weights of
``--checkpoint`` (else ``path.pretrain_network_g``; the key ``utils/checkpoint.param_key_of`` says),
makes an LR image by MATLAB-bicubic downscaling of ``--image`` by ``--scale`` (default image:
Set5 ``baby`` from ``../shared/data`` when present, else scikit-image's bundled astronaut),
and renders ``--lines`` horizontal lines of queries (rows spread over the image, between pixel
centres) at ``--density`` queries per LR pixel, with the cell of a x``--scale`` output. No
query lies on a border: the borders fall between two adjacent queries.

For each pair of adjacent queries the step is the mean absolute RGB difference of the outputs.
The script prints the mean step over pairs that straddle an LR pixel border, over all pairs
inside one pixel and over the inside pairs right beside a border (the same sub-pixel phase,
so that a network whose output simply varies faster near borders is not mistaken for one that
jumps), and the border step's ratio to each, for the network and for bicubic interpolation of
the LR image (a continuous reference, ratios near 1). A network whose output jumps at borders
(e.g. one fed the offset to the nearest LR pixel centre, which flips from +0.5 to -0.5 there)
shows ratios well above bicubic's.
"""
import argparse
import math
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

import gaussiansr_plugin  # noqa: F401  (patches BasicSR, registers the archs)
from gaussiansr_plugin.archs.arch_util import sample_bicubic
from gaussiansr_plugin.benchmark.methods import MethodSpec, load_method, quiet_basicsr_logger
from gaussiansr_plugin.render.tiling import QUERY_CHUNK
from gaussiansr_plugin.utils.image_io import ImageError, read_image
from gaussiansr_plugin.utils.options import OptionError
from gaussiansr_plugin.utils.resize import imresize_matlab

SET5_BABY = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'benchmark' / 'Set5' / 'HR' / 'baby.png'
# Upsampling function of the measurement: (coord (1, Q, 2), cell (1, Q, 2)) -> RGB (1, Q, 3).
Renderer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def border_lines(lr_size: Tuple[int, int], scale: float, density: int,
                 lines: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries along horizontal lines, ``density`` per LR pixel, borders halfway between two.

    Returns:
        coord (1, lines * w * density, 2), cell (same shape) for a x``scale`` output, and a
        bool mask (w * density - 1,) of the adjacent pairs along a line that straddle a border.
    """
    h, w = lr_size
    # LR pixel units, centres at integers: column j sits at -0.5 + (j + 0.5) / density.
    cols = -0.5 + (torch.arange(w * density, dtype=torch.float64) + 0.5) / density
    # Rows a quarter pixel off the centres, so that the vertical position is not special.
    rows = torch.linspace(0.25, h - 1.25, lines, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).reshape(-1, 2)
    size = torch.tensor([h, w], dtype=torch.float64)
    coord = ((grid + 0.5) / size * 2 - 1).float().unsqueeze(0)
    cell = (2 / (size * scale)).float().expand_as(coord[0]).unsqueeze(0)
    straddles = (torch.arange(1, w * density) % density) == 0
    return coord, cell.contiguous(), straddles


@torch.no_grad()
def border_steps(render: Renderer, lr_size: Tuple[int, int], scale: float, density: int, lines: int,
                 chunk: int = QUERY_CHUNK) -> Tuple[float, float, float]:
    """Mean absolute output step along ``border_lines``: (border pairs, inside pairs, inside pairs
    beside a border)."""
    coord, cell, straddles = border_lines(lr_size, scale, density, lines)
    out = torch.cat([render(coord[:, s:s + chunk], cell[:, s:s + chunk]) for s in range(0, coord.shape[1], chunk)],
                    dim=1)
    out = out.double().view(lines, -1, 3)
    steps = (out[:, 1:] - out[:, :-1]).abs().mean(dim=-1)  # (lines, pairs)
    beside = torch.zeros_like(straddles)
    beside[:-1] |= straddles[1:]
    beside[1:] |= straddles[:-1]
    return tuple(steps[:, mask].mean().item() for mask in (straddles, ~straddles, beside))


def network_renderer(net: torch.nn.Module, lq: torch.Tensor) -> Renderer:
    """``net`` in eval mode, encoder run once on ``lq``."""
    net.eval()
    with torch.no_grad():
        state = net.encode(lq)
    return lambda coord, cell: net.query(state, coord.to(lq.device), cell.to(lq.device)).cpu()


def load_lr(image: Optional[str], scale: float) -> Tuple[str, torch.Tensor]:
    """(name, LR (1, 3, h, w) in [0, 1]): ``image`` (or the default) downscaled by ``scale``."""
    if image is None and SET5_BABY.is_file():
        image = str(SET5_BABY)
    if image is None:
        from skimage import data
        name, rgb = 'astronaut (scikit-image)', data.astronaut()
    else:
        if not Path(image).is_file():
            raise FileNotFoundError(f'--image {image} does not exist')
        name, rgb = Path(image).name, read_image(image)[:, :, ::-1]
    hr = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().unsqueeze(0) / 255
    lr_size = (math.floor(hr.shape[-2] / scale), math.floor(hr.shape[-1] / scale))
    if min(lr_size) < 4:
        raise ValueError(f'--scale {scale:g}: {name} ({hr.shape[-2]}x{hr.shape[-1]}) leaves an LR of {lr_size}')
    return name, imresize_matlab(hr, lr_size).clamp(0, 1)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='option file of the network (model_type, network_g)')
    parser.add_argument('--checkpoint', default=None, help='weights (default: path.pretrain_network_g)')
    parser.add_argument('--image', default=None, help='HR image (default: Set5 baby, else astronaut)')
    parser.add_argument('--scale', type=float, default=4.0, help='downscaling factor and output cell (default: 4)')
    parser.add_argument('--density', type=int, default=16, help='queries per LR pixel along a line (default: 16)')
    parser.add_argument('--lines', type=int, default=64, help='lines of queries (default: 64)')
    args = parser.parse_args(argv)
    if args.scale < 1 or args.density < 2 or args.lines < 1:
        parser.error('--scale must be >= 1, --density >= 2 and --lines >= 1')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        quiet_basicsr_logger()
        method = load_method(MethodSpec('net', args.opt, args.checkpoint), device)
        if not hasattr(method.net, 'encode'):
            raise ValueError(f'{args.opt}: {type(method.net).__name__} is not a query-based (encode/query) network')
        name, lq = load_lr(args.image, args.scale)
    except OptionError as err:
        print(err.code, file=sys.stderr)
        return 1
    except (ImageError, ValueError, KeyError, FileNotFoundError) as err:
        print(f'Error: {err.args[0] if err.args else err}', file=sys.stderr)
        return 1
    lr_size = tuple(lq.shape[-2:])
    print(f'{name}: LR {lr_size[0]}x{lr_size[1]} (x{args.scale:g} down), {args.lines} lines, '
          f'{args.density} queries per LR pixel, checkpoint {method.checkpoint or "none (random weights)"}')
    renderers = {'network': network_renderer(method.net, lq.to(device)),
                 'bicubic': lambda coord, cell: sample_bicubic(lq, coord)}
    print(f'{"":10s} {"border step":>12s} {"inside step":>12s} {"ratio":>8s} {"beside step":>12s} {"ratio":>8s}')
    for label, render in renderers.items():
        border, inside, beside = border_steps(render, lr_size, args.scale, args.density, args.lines)
        print(f'{label:10s} {border:12.6f} {inside:12.6f} {border / inside:8.2f} {beside:12.6f} '
              f'{border / beside:8.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
