"""Crop HR images into overlapping sub-images, as BasicSR prepares DIV2K for training.

    python -m gaussiansr_plugin.tools.extract_subimages -i HR_FOLDER [HR_FOLDER ...] -o OUT_FOLDER
        [--crop-size 480] [--step 240] [--thresh-size 48] [--small skip|keep]
        [--compress-level 3] [--workers N] [--overwrite]

Crops of ``crop-size`` start every ``step`` pixels from the top-left corner. When the pixels
left after the last crop along a dimension exceed ``thresh-size``, one more crop is placed
flush with the far border (so borders are covered without a tiny last crop). Crops are
numbered from 1 in row-major order and written as ``{stem}_s{index:03d}.png``, BasicSR's
naming. Grayscale images become RGB; images with transparent pixels are rejected.

An image smaller than ``crop-size`` in a dimension is skipped (``--small skip``, default) or
cropped to its full extent along that dimension (``--small keep``: its sub-images are smaller
than the others). Every file is written under a temporary name and renamed when complete.
"""
import argparse
import os
import re
import sys
import time
from functools import partial
from multiprocessing import Pool
from os import path as osp
from typing import List, Optional, Sequence, Tuple

from tqdm import tqdm

import gaussiansr_plugin  # noqa: F401  (patches BasicSR before anything imports it)
from gaussiansr_plugin.tools.common import write_png_atomic
from gaussiansr_plugin.utils.command_line import command_parser
from gaussiansr_plugin.utils.file_io import is_temp_file
from gaussiansr_plugin.utils.folders import check_output_folder, list_images
from gaussiansr_plugin.utils.image_io import ImageError, read_image

SUBIMAGE_PATTERN = re.compile(r'_s\d{3,}\.png$')


def crop_starts(length: int, crop_size: int, step: int, thresh_size: int) -> List[int]:
    """Start offsets of the crops along one dimension (BasicSR's rule).

    Args:
        length (int): Image size along the dimension; must be >= ``crop_size``.
        crop_size (int): Crop size along the dimension.
        step (int): Distance between consecutive crop starts.
        thresh_size (int): A remainder larger than this after the last regular crop gets one
            more crop, flush with the far border.
    """
    starts = list(range(0, length - crop_size + 1, step))
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def extract_one(path: str, out_folder: str, crop_size: int, step: int, thresh_size: int, keep_small: bool,
                compress_level: int) -> Tuple[str, int]:
    """Writes the sub-images of one image; returns (path, number written: 0 if skipped as small)."""
    img = read_image(path, to_color=True)
    height, width = img.shape[:2]
    if min(height, width) < crop_size and not keep_small:
        return path, 0
    crop_h, crop_w = min(crop_size, height), min(crop_size, width)
    stem = osp.splitext(osp.basename(path))[0]
    index = 0
    for top in crop_starts(height, crop_h, step, thresh_size):
        for left in crop_starts(width, crop_w, step, thresh_size):
            index += 1
            crop = img[top:top + crop_h, left:left + crop_w]
            write_png_atomic(crop, osp.join(out_folder, f'{stem}_s{index:03d}.png'), compress_level)
    return path, index


def _remove_previous_output(folder: str) -> int:
    """Deletes sub-images and temporary files of an earlier run (and nothing else) from ``folder``."""
    removed = 0
    for name in os.listdir(folder):
        if SUBIMAGE_PATTERN.search(name) or is_temp_file(name):
            os.remove(osp.join(folder, name))
            removed += 1
    return removed


def extract_subimages(inputs: Sequence[str],
                      output: str,
                      crop_size: int = 480,
                      step: int = 240,
                      thresh_size: int = 48,
                      keep_small: bool = False,
                      compress_level: int = 3,
                      workers: Optional[int] = None,
                      overwrite: bool = False) -> Tuple[int, int, List[str]]:
    """Crops every image in ``inputs`` into ``output``; see the module docstring.

    Returns:
        (number of images read, number of sub-images written, paths of images skipped as small).

    Raises:
        ValueError, FileNotFoundError, FileExistsError, ImageError: bad arguments or input,
            with a message naming the option or file.
    """
    if crop_size < 1 or step < 1 or thresh_size < 0:
        raise ValueError(f'--crop-size and --step must be positive and --thresh-size non-negative, got '
                         f'{crop_size}, {step}, {thresh_size}')
    if not 0 <= compress_level <= 9:
        raise ValueError(f'--compress-level must be 0-9, got {compress_level}')
    out_real = osp.realpath(output)
    if any(osp.realpath(folder) == out_real for folder in inputs):
        raise ValueError(f'Output folder {output} is an input folder; choose another one.')
    paths = list_images(inputs)
    check_output_folder(output, overwrite)
    removed = _remove_previous_output(output)
    if removed:
        print(f'Removed {removed} sub-images of an earlier run from {output}')

    job = partial(extract_one, out_folder=output, crop_size=crop_size, step=step, thresh_size=thresh_size,
                  keep_small=keep_small, compress_level=compress_level)
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    total, skipped = 0, []
    with tqdm(total=len(paths), unit='image', desc='Extract') as pbar:
        if workers == 1:
            results = map(job, paths)
            pool = None
        else:
            pool = Pool(workers)
            results = pool.imap_unordered(job, paths)
        try:
            for path, count in results:
                total += count
                if count == 0:
                    skipped.append(path)
                pbar.update(1)
        finally:
            if pool is not None:
                pool.terminate()  # on error: stop the other workers now, not after their queue
                pool.join()
    return len(paths), total, sorted(skipped)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = command_parser('gaussiansr_plugin.tools.extract_subimages', __doc__)
    parser.add_argument('-i', '--input', nargs='+', required=True, help='HR image folder(s)')
    parser.add_argument('-o', '--output', required=True, help='folder for the sub-images')
    parser.add_argument('--crop-size', type=int, default=480, help='sub-image side (default: 480)')
    parser.add_argument('--step', type=int, default=240, help='distance between crops (default: 240)')
    parser.add_argument('--thresh-size', type=int, default=48,
                        help='a larger remainder gets a crop flush with the border (default: 48)')
    parser.add_argument('--small', choices=('skip', 'keep'), default='skip',
                        help='images smaller than the crop: skip them, or crop them to their size')
    parser.add_argument('--compress-level', type=int, default=3, help='PNG zlib level 0-9 (default: 3)')
    parser.add_argument('--workers', type=int, default=None, help='processes (default: CPU count)')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into a non-empty output folder (replaces its earlier sub-images)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        num_images, num_crops, skipped = extract_subimages(
            args.input, args.output, args.crop_size, args.step, args.thresh_size, args.small == 'keep',
            args.compress_level, args.workers, args.overwrite)
    except (ImageError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    if skipped:
        print(f'Skipped {len(skipped)} images smaller than {args.crop_size} pixels (use --small keep to crop '
              f'them to their size): {", ".join(osp.basename(p) for p in skipped[:10])}'
              f'{" ..." if len(skipped) > 10 else ""}')
    print(f'Wrote {num_crops} sub-images of {num_images - len(skipped)} images to {args.output} '
          f'in {time.perf_counter() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
