"""``basicsr upscale``: super-resolve your own images to any scale or size.

    basicsr upscale -i PATH -o DIR [-s S [S ...]] [--size WxH ...] [--model NAME | OPTION_FILE:CHECKPOINT | DIR]
                    [--suffix out] [--ext auto] [--tile 256] [--tile_pad N] [--precision auto | --fp32]
                    [-g ID] [--quiet]

``--model DIR``: a model ``basicsr export`` wrote, run by onnxruntime on the CPU in float32
(``export/onnx_runtime.py``) through the same tiling and file handling.

``-i`` is an image or a folder of images; each output is ``DIR/NAME_SUFFIX.EXT`` (with several
outputs per image ``NAME_SUFFIX_x2.5.EXT``, ``NAME_SUFFIX_800x600.EXT``, ...).

Scales (``-s/--outscale``, repeatable): every value is one output, scaled alike on both axes
(``-s 2 3 4``, or ``-s 2 -s 3``); a per-axis scale is spelled width x height (``-s 2.5x3``: x2.5
in width, x3 in height). Exactly two plain values in one ``-s`` (``-s 2.5 3``) once meant one
per-axis output and are refused as ambiguous. ``--size WxH`` (repeatable) asks for exact sizes.
All outputs of an image come from ONE encoder pass per tile. Default: ``-s 4``.

Tiles: the LR image is processed in ``--tile`` x ``--tile`` tiles (0: whole), each with
``--tile_pad`` pixels of context; the default pad is the network's receptive field, which makes the
result identical to the whole-image one. A smaller pad is faster and approximate (tiles are
blended linearly over the overlap). Only one tile is on the device at a time and the output is
held in its final 8/16-bit type.

Images: PNG/JPEG/WebP/TIFF/BMP as OpenCV reads them; 16-bit in -> 16-bit out (PNG/TIFF); gray
stays gray; alpha is upscaled bicubically (PNG when ``--ext`` cannot hold it); EXIF orientation
is applied. A bad image is reported in one line and the others are processed; the exit status
is 1 if any failed.

Precision (``utils/precision.serving_precision``): by default float32 on the CPU, and on CUDA the
network's layers in bfloat16 autocast (float16 on GPUs without bfloat16); coordinates, sampling
and the colour output stay float32. ``--precision bf16`` runs bf16 on a CPU too (1.5-1.7x faster
for GaussianSR on an AVX512-BF16 CPU, PSNR within a few hundredths of a dB: docs/COMPARE.md);
``--fp32`` (or ``--precision fp32``) forces float32 anywhere, e.g. to match ``basicsr test`` bit for bit.
"""
import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from os import path as osp
from typing import List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..render.receptive_field import receptive_field
from ..export.onnx_runtime import is_export_arg, load_export
from ..render.tiling import DEFAULT_TILE, plan_spans, render
from ..utils.folders import check_output_folder, list_images
from ..utils.image_io import ImageError
from ..utils.loading import LoadedNet, choose_device, load_net
from ..utils.precision import PRECISION_NAMES, SERVING_CHOICES, serving_precision
from .command import OneLineParser, message, non_negative_int, run_reporting_errors, trim_heap
from .image_file import WRITABLE_FORMATS, InputImage, OutputCanvas, output_extension, read_input


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'{text!r}: a scale must be a number > 0')
    return value


@dataclass(frozen=True)
class Scale:
    """One ``-s`` value: ``S`` (both axes) or ``SWxSH`` (width, height), as typed."""
    text: str
    width: float
    height: float

    @property
    def per_axis(self) -> bool:
        return 'x' in self.text.lower()


def parse_scale(text: str) -> Scale:
    """``S`` or ``SWxSH`` (e.g. ``2.5x3``: x2.5 in width, x3 in height)."""
    parts = text.strip().lower().split('x')
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f'{text!r} is neither a scale (2.5) nor WIDTHxHEIGHT scales (2.5x3)')
    width, height = (positive_float(p) for p in (parts * 2)[:2])
    return Scale(text.strip(), width, height)


def parse_size(text: str) -> Tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (height, width)."""
    match = re.fullmatch(r'\s*(\d+)\s*[xX]\s*(\d+)\s*', text)
    if not match:
        raise argparse.ArgumentTypeError(f'{text!r} is not WIDTHxHEIGHT (e.g. 1920x1080)')
    width, height = int(match.group(1)), int(match.group(2))
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: an output must be at least 1x1 pixels')
    return height, width


@dataclass(frozen=True)
class Target:
    """One requested output: a (height, width) scale or a fixed (height, width) size."""
    label: str
    scale: Optional[Tuple[float, float]] = None
    size: Optional[Tuple[int, int]] = None

    def out_size(self, height: int, width: int) -> Tuple[int, int]:
        if self.size is not None:
            return self.size
        return round(height * self.scale[0]), round(width * self.scale[1])


def check_scale_groups(outscale: Optional[List[List[Scale]]]) -> None:
    """Refuses the old per-axis form ``-s SW SH`` (two plain values in one ``-s``), which now
    would silently mean two outputs.

    Raises:
        ValueError: The message says what to write instead.
    """
    for group in outscale or []:
        if len(group) == 2 and not any(s.per_axis for s in group):
            a, b = (s.text for s in group)
            raise ValueError(f'-s {a} {b} is ambiguous: write -s {a}x{b} for one output x{a} in width and x{b} in '
                             f'height, or -s {a} -s {b} for two outputs')


def make_targets(outscale: Optional[List[List[Scale]]], sizes: Optional[List[Tuple[int, int]]]) -> List[Target]:
    """The outputs asked for (see the module docstring), without duplicates; ``-s 4`` by default."""
    targets: List[Target] = []
    for scale in [s for group in outscale or [] for s in group] or ([] if sizes else [parse_scale('4')]):
        label = f'x{scale.width:g}x{scale.height:g}' if scale.width != scale.height else f'x{scale.width:g}'
        targets.append(Target(label, scale=(scale.height, scale.width)))
    targets += [Target(f'{w}x{h}', size=(h, w)) for h, w in sizes or []]
    unique = {t.label: t for t in targets}
    return list(unique.values())


def mem_available() -> Optional[int]:
    """Bytes of memory available to this process (Linux ``MemAvailable``), None where unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def output_paths(image: InputImage, targets: Sequence[Target], out_dir: str, suffix: str, ext: str) -> List[str]:
    stem = osp.splitext(osp.basename(image.path))[0]
    parts = [stem] + ([suffix] if suffix else [])
    names = ['_'.join(parts + ([t.label] if len(targets) > 1 else [])) for t in targets]
    return [osp.join(out_dir, name + ext) for name in names]


def upscale_image(path: str, loaded: LoadedNet, targets: Sequence[Target], args: argparse.Namespace,
                  precision: str) -> List[Tuple[str, Tuple[int, int]]]:
    """Upscales one file to every target; returns [(output path, (width, height))].

    Raises:
        ImageError, ValueError, OSError: This image cannot be done; the message names it.
    """
    image = read_input(path)
    h, w = image.size
    sizes = [t.out_size(h, w) for t in targets]
    for target, (out_h, out_w) in zip(targets, sizes):
        if out_h < 1 or out_w < 1:
            raise ValueError(f'{path} ({w}x{h}) at {target.label} gives {out_w}x{out_h} pixels; '
                             'an output needs at least 1x1')
    ext = output_extension(path, args.ext, image.alpha is not None)
    paths = output_paths(image, targets, args.output, args.suffix, ext)
    if any(osp.abspath(p) == osp.abspath(path) for p in paths):
        raise ValueError(f'{path}: the output would overwrite the input; give another -o or --suffix')
    dtype, channels = OutputCanvas.layout(image, ext)
    need = sum(out_h * out_w * channels * dtype().itemsize for out_h, out_w in sizes)
    available = mem_available()
    if available is not None and need > available:
        raise ValueError(f'{path} ({w}x{h}): the outputs ({", ".join(f"{b}x{a}" for a, b in sizes)}) need '
                         f'{need / 2**30:.1f} GiB of memory, {available / 2**30:.1f} GiB are available')
    canvases = [OutputCanvas(image, size, ext) for size in sizes]
    tiles = len(plan_spans(h, args.tile, 0)) * len(plan_spans(w, args.tile, 0))
    with tqdm(total=tiles, desc=osp.basename(path), unit='tile', leave=False, disable=args.quiet) as bar:

        def tile_done() -> None:
            bar.update(1)
            trim_heap()  # return what the tile's activations freed before the next tile allocates

        render(loaded.net, image.tensor(), sizes, lambda k, *chunk: canvases[k].put(*chunk), tile=args.tile,
               tile_pad=args.tile_pad, chunk=loaded.query_chunk, precision=precision, on_tile=tile_done)
    del image
    for canvas, out_path in zip(canvases, paths):
        canvas.write(out_path)
    return [(p, (b, a)) for p, (a, b) in zip(paths, sizes)]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog='basicsr upscale', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='an image or a folder of images')
    parser.add_argument('-o', '--output', required=True, help='output folder (created if missing)')
    parser.add_argument('-s', '--outscale', type=parse_scale, nargs='+', action='append', metavar='S',
                        help='scale(s), one output each: 2, 2.5, or per axis WIDTHxHEIGHT scales 2.5x3 (default 4)')
    parser.add_argument('--size', type=parse_size, nargs='+', action='append', metavar='WxH', help='exact sizes')
    parser.add_argument('--model', help='OPTION_FILE:CHECKPOINT of a trained GaussianSR, LIIF or MetaSR, or the '
                        'name of shipped weights, e.g. liif (default: gaussiansr_plugin/weights/gaussiansr, else the '
                        'demo run here), or a folder written by basicsr export (ONNX, run by onnxruntime)')
    parser.add_argument('--suffix', default='out', help='added to output names (default: out)')
    parser.add_argument('--ext', default='auto', choices=['auto'] + [e[1:] for e in WRITABLE_FORMATS],
                        help='output format (default: the input\'s)')
    parser.add_argument('--tile', type=non_negative_int, default=DEFAULT_TILE,
                        help=f'tile side in input pixels, 0 for none (default {DEFAULT_TILE})')
    parser.add_argument('--tile_pad', type=non_negative_int, default=None,
                        help='context around each tile (default: the receptive field, exact)')
    parser.add_argument('--precision', choices=SERVING_CHOICES, default='auto',
                        help='network precision (default auto: fp32 on the CPU; on CUDA bf16, fp16 on GPUs without '
                        'bf16; coordinates and sampling stay fp32)')
    parser.add_argument('--fp32', action='store_true', help='float32 everywhere (= --precision fp32)')
    parser.add_argument('-g', '--gpu-id', type=int, default=None, help='CUDA device (default 0 when CUDA is present)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars or model line')
    return parser


def run(args: argparse.Namespace) -> int:
    """Upscales every input; returns the exit status (1 if any image failed)."""
    if args.fp32 and args.precision not in ('auto', 'fp32'):
        raise ValueError(f'--fp32 and --precision {args.precision} contradict each other; give one')
    check_scale_groups(args.outscale)
    targets = make_targets(args.outscale, [s for group in args.size or [] for s in group])
    if osp.isdir(args.input):
        paths = list_images([args.input])
    elif osp.isfile(args.input):
        paths = [args.input]
    else:
        raise FileNotFoundError(f'Input {args.input} does not exist')
    # An exported model is checked before anything is written (one line if it is not whole).
    exported = (load_export(args.model, args.gpu_id, args.precision)
                if is_export_arg(args.model) else None)
    check_output_folder(args.output, overwrite=True)
    device = choose_device(args.gpu_id)
    precision = serving_precision(device, 'fp32' if args.fp32 else args.precision)
    if exported is not None:  # onnxruntime's CPU provider, float32
        device, precision = exported.net.device, 'fp32'
    loaded = exported or load_net(args.model, device)
    exact = receptive_field(loaded.net)
    pad = exact if args.tile_pad is None else args.tile_pad
    if not args.quiet:
        print(f'Model: {loaded.description} ({loaded.option_file}); {device}, '
              f'{PRECISION_NAMES[precision]}; tiles {args.tile or "off"}, pad {pad} '
              f'({"exact" if pad >= exact else f"< receptive field {exact}: blended, approximate"})', flush=True)
    start, done, failed = time.perf_counter(), [], 0
    for path in tqdm(paths, unit='image', disable=args.quiet or len(paths) == 1):
        try:
            done += upscale_image(path, loaded, targets, args, precision)
        except (ImageError, ValueError, OSError, RuntimeError) as err:
            failed += 1
            tqdm.write(f'Skipped {path}: {message(err)}', file=sys.stderr)
    sizes = list(dict.fromkeys(f'{w}x{h}' for _, (w, h) in done))
    listed = ', '.join(sizes[:6]) + (', ...' if len(sizes) > 6 else '')
    print(f'Upscaled {len(paths) - failed} of {len(paths)} image(s) in {time.perf_counter() - start:.1f} s: '
          f'{len(done)} output(s) in {args.output}' + (f' ({listed})' if done else '') +
          (f'; {failed} failed' if failed else ''), flush=True)
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    """``basicsr upscale``; returns the exit status."""
    return run_reporting_errors(run, build_parser().parse_args(argv))

if __name__ == '__main__':
    sys.exit(main())
