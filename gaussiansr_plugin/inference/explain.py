"""``basicsr explain``: see a GaussianSR network's Gaussians (paper Fig. 6-8), as PNGs or in TensorBoard.

    basicsr explain [--model NAME | OPTION_FILE:CHECKPOINT] -i IMAGE -o DIR [--tile 256] [--precision fp32]
                    [-g ID] [--quiet]

Writes ``DIR/NAME_bank_kernels.png`` (the bank's kernels as ellipses with σx, σy, ρ, opacity),
``NAME_bank_histograms.png`` (their histograms over the bank and as selected over the image),
``NAME_kernel_usage.png`` (how often each kernel is selected, sorted) and ``NAME_kernel_map.png``
(the selected kernel, its size and orientation per LR pixel beside the image): see
``visual/kernels.py``, which ``ArbitraryScaleSRModel`` uses to log the same figures to TensorBoard
at each validation of a GaussianSR.
"""
import argparse
import sys
from os import path as osp
from typing import Dict, List, Optional

import cv2
import numpy as np

from ..render.tiling import DEFAULT_TILE
from ..utils.file_io import atomic_imwrite
from ..utils.folders import check_output_folder
from ..utils.loading import choose_device, load_net
from ..utils.precision import SERVING_CHOICES, serving_precision
from ..visual.figures import FIGURE_SIZES, KernelStats, draw_all
from ..visual.kernels import has_gaussians, kernel_stats
from .command import OneLineParser, non_negative_int, run_reporting_errors
from .image_file import read_input


def write_figures(stats: KernelStats, out_dir: str, stem: str) -> Dict[str, str]:
    """Writes every figure as ``out_dir/stem_NAME.png`` (atomically); returns {name: path}."""
    paths = {}
    for name, img in draw_all(stats).items():
        paths[name] = osp.join(out_dir, f'{stem}_{name}.png')
        atomic_imwrite(np.ascontiguousarray(img[:, :, ::-1]), paths[name], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog='basicsr explain', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='an image')
    parser.add_argument('-o', '--output', required=True, help='output folder (created if missing)')
    parser.add_argument('--model', help='OPTION_FILE:CHECKPOINT of a trained GaussianSR, or the name of shipped '
                        'weights (default: as basicsr upscale)')
    parser.add_argument('--tile', type=non_negative_int, default=DEFAULT_TILE,
                        help=f'tile side in input pixels, 0 for none (default {DEFAULT_TILE})')
    parser.add_argument('--precision', choices=SERVING_CHOICES, default='fp32',
                        help='encoder precision (default fp32; auto: as upscale, bf16 on CUDA, fp32 on the CPU)')
    parser.add_argument('-g', '--gpu-id', type=int, default=None, help='CUDA device (default 0 when CUDA is present)')
    parser.add_argument('--quiet', action='store_true', help='only the summary line')
    return parser


def run(args: argparse.Namespace) -> int:
    image = read_input(args.input)
    check_output_folder(args.output, overwrite=True)
    device = choose_device(args.gpu_id)
    precision = serving_precision(device, args.precision)
    loaded = load_net(args.model, device)
    if not has_gaussians(loaded.net):
        raise ValueError(f'{loaded.option_file}: explain needs a GaussianSR with Gaussians (num_gs_feat > 0), '
                         f'not {type(loaded.net).__name__}')
    if not args.quiet:
        print(f'Model: {loaded.description} ({loaded.option_file})', flush=True)
    stats = kernel_stats(loaded.net, image.tensor(), args.tile, precision)
    paths = write_figures(stats, args.output, osp.splitext(osp.basename(args.input))[0])
    if not args.quiet:
        for name, path in paths.items():
            print(f'Wrote {path} ({FIGURE_SIZES[name][0]}x{FIGURE_SIZES[name][1]})')
    used = int((stats.counts > 0).sum())
    print(f'{args.input}: {stats.labels.size:,} LR pixels select {used} of {len(stats.bank)} kernels; the '
          f'{stats.dominant()} most selected cover 90% of them; kernel_max_prob {stats.max_prob.mean():.4f}. '
          f'{len(paths)} figures in {args.output}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``basicsr explain``; returns the exit status."""
    return run_reporting_errors(run, build_parser().parse_args(argv))

if __name__ == '__main__':
    sys.exit(main())
