"""Make bicubic LR benchmark folders (``LR_bicubic/X{s}``) from an HR folder.

    python -m gaussiansr_plugin.tools.make_benchmark_lr -i Set5/HR [-o Set5] --scales 2 3 4 2.5
        [--compress-level 3] [--overwrite]

For each scale s, every HR image of height H (width likewise) gives an LR image of height
h_lr = floor(H / s), made from the HR cropped at the top-left to round(h_lr * s) with the
MATLAB-compatible bicubic (``imresize_matlab`` on uint8, which reproduces MATLAB's
``imresize`` bit for bit). For integer s this is the usual "crop to a multiple of s" (LIIF's
protocol covers non-integer s the same way), and it is the crop ``ArbitraryScalePairedDataset``
applies to the HR when it reads these folders through ``dataroot_lq``.

Files go to ``OUTPUT/LR_bicubic/X{s}/{stem}x{s}.png`` with s written as ``2`` or ``2.5`` (the
benchmark naming, e.g. ``Set5/LR_bicubic/X2/babyx2.png``); OUTPUT defaults to the parent of
the HR folder. Grayscale HR images (Set14's bridge) become RGB. An existing non-empty
``X{s}`` folder is refused unless ``--overwrite``. Files are written atomically.
"""
import argparse
import math
import sys
import time
from os import path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

import gaussiansr_plugin  # noqa: F401  (patches BasicSR before anything imports it)
from gaussiansr_plugin.tools.common import write_png_atomic
from gaussiansr_plugin.utils.command_line import command_parser
from gaussiansr_plugin.utils.folders import check_output_folder, list_images
from gaussiansr_plugin.utils.image_io import ImageError, read_image, scale_name
from gaussiansr_plugin.utils.resize import imresize_matlab


def lr_geometry(height: int, width: int, scale: float) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((hr_crop_h, hr_crop_w), (lr_h, lr_w)) for an HR image at ``scale``.

    The small epsilon keeps floor(H / s) exact where H / s is an integer that floating point
    lands just below (the same rule as ``ArbitraryScalePairedDataset``).
    """
    lr_h, lr_w = math.floor(height / scale + 1e-9), math.floor(width / scale + 1e-9)
    return (round(lr_h * scale), round(lr_w * scale)), (lr_h, lr_w)


def make_lr(hr: np.ndarray, scale: float, name: str = 'image') -> np.ndarray:
    """Crops and downscales one uint8 H x W x C image for ``scale``; ``name`` is for errors."""
    if hr.dtype != np.uint8:
        raise ImageError(f'Image {name} is {hr.dtype}; benchmark LR is made from 8-bit images only.')
    (crop_h, crop_w), (lr_h, lr_w) = lr_geometry(hr.shape[0], hr.shape[1], scale)
    if lr_h < 1 or lr_w < 1:
        raise ImageError(f'Image {name} ({hr.shape[0]}x{hr.shape[1]}) is too small for scale {scale:g}')
    crop = torch.from_numpy(np.ascontiguousarray(hr[:crop_h, :crop_w].transpose(2, 0, 1)))
    lr = imresize_matlab(crop, (lr_h, lr_w))  # per channel: BGR order does not matter
    return lr.numpy().transpose(1, 2, 0)


def make_benchmark_lr(hr_folder: str,
                      output: Optional[str],
                      scales: Sequence[float],
                      compress_level: int = 3,
                      overwrite: bool = False) -> List[str]:
    """Writes ``LR_bicubic/X{s}`` folders for ``scales``; returns the folders written.

    Raises:
        ValueError, FileNotFoundError, FileExistsError, ImageError: bad arguments or input,
            with a message naming the option or file.
    """
    if not scales or any(s <= 1 for s in scales):
        raise ValueError(f'--scales must be numbers > 1, got {list(scales)}')
    if len({scale_name(s) for s in scales}) != len(scales):
        raise ValueError(f'--scales has duplicates: {list(scales)}')
    if not 0 <= compress_level <= 9:
        raise ValueError(f'--compress-level must be 0-9, got {compress_level}')
    if output is None:
        output = osp.dirname(osp.abspath(hr_folder))
    paths = list_images([hr_folder])
    folders = [osp.join(output, 'LR_bicubic', f'X{scale_name(s)}') for s in scales]
    for create in (False, True):  # all refusals before any folder is made
        for folder in folders:
            check_output_folder(folder, overwrite, create)
    for path in tqdm(paths, unit='image', desc='Downscale'):
        hr = read_image(path, to_color=True)
        stem = osp.splitext(osp.basename(path))[0]
        for scale, folder in zip(scales, folders):
            lr = make_lr(hr, scale, path)
            write_png_atomic(lr, osp.join(folder, f'{stem}x{scale_name(scale)}.png'), compress_level)
    return folders


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = command_parser('gaussiansr_plugin.tools.make_benchmark_lr', __doc__)
    parser.add_argument('-i', '--input', required=True, help='HR image folder')
    parser.add_argument('-o', '--output', default=None,
                        help='folder to hold LR_bicubic/ (default: the parent of the HR folder)')
    parser.add_argument('--scales', type=float, nargs='+', default=[2, 3, 4], help='scales (default: 2 3 4)')
    parser.add_argument('--compress-level', type=int, default=3, help='PNG zlib level 0-9 (default: 3)')
    parser.add_argument('--overwrite', action='store_true', help='write into non-empty X{s} folders')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        folders = make_benchmark_lr(args.input, args.output, args.scales, args.compress_level, args.overwrite)
    except (ImageError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    print(f'Wrote {", ".join(folders)} in {time.perf_counter() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
