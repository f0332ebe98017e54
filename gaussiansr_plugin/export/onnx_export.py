"""``basicsr export``: a GaussianSR, LIIF or MetaSR network as ONNX graphs, for any scale and size.

    basicsr export [--model NAME | OPTION_FILE:CHECKPOINT] -o DIR [--overwrite] [--quiet]

Writes into ``DIR``:

* ``encode.onnx``: ``lq`` (1, 3, h, w), RGB in [0, 1] -> the state tensors (GaussianSR: the
  bicubic stream ``smooth_feat`` and the splat table ``splat_amplitude``, ``splat_exponent``,
  unfolded: ``gaussian_splat.SplatTable.unfold``; LIIF, MetaSR: ``latent``), any h and w;
* ``query.onnx``: ``lq``, ``coord`` (1, Q, 2), ``cell`` (1, Q, 2), ``placement`` (4, int64) and
  the state tensors -> ``rgb`` (1, Q, 3), any Q. ``coord`` holds HR pixel centres (row, col) in
  [-1, 1] of the whole image, ``cell`` (2 / H, 2 / W); ``placement`` = (origin row, origin col,
  image h, image w) of the encoded map ((0, 0, h, w) for the whole image), so one encode serves
  every scale and every tile;
* ``export.json``: inputs, outputs, shapes, value ranges, the reach exact tiles need, the
  checkpoint's sha256 and the format version (``manifest.py``).

Every graph passes ``onnx.checker`` (full check) and, before anything is moved into ``DIR``,
onnxruntime renders an image of a size and query count the graphs were not traced with, whole
and in tiles, and must match PyTorch within ``PARITY_TOLERANCE``. ``basicsr upscale --model DIR``
then runs the export. ``DIR`` must be empty or absent unless ``--overwrite``.

How the graphs stay dynamic: ``torch.onnx.export(dynamo=True)`` with dynamic shapes; the archs
keep sizes symbolic (``arch_util.size_tensor``), take a tile's placement as tensors, and
GaussianSR's splat sum is one block of gathers and a product while exporting
(``gaussian_splat._window_sum_graph``: the eager loop over query blocks and ``embedding_bag``
would fix the query count).
"""
import argparse
import dataclasses
import io
import json
import os
import shutil
import sys
import time
import warnings
from contextlib import redirect_stdout
from os import path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..archs.arch_util import ImplicitSRNet, Placement
from ..archs.gaussiansr_arch import GaussianSRState
from ..archs.latent_util import LatentState
from ..inference.command import OneLineParser, run_reporting_errors
from ..render.receptive_field import encoder_reach
from ..render.tiling import render
from ..utils.file_io import atomic_write
from ..utils.folders import check_output_folder
from ..utils.loading import LoadedNet, load_net
from . import require
from .manifest import (ENCODE_INPUT, FORMAT, FORMAT_VERSION, GRAPH_FILES, MANIFEST, QUERY_INPUTS, QUERY_OUTPUT,
                       sha256_of)

# Largest |onnxruntime - PyTorch| the export's own check accepts (float32, [0, 1] units).
PARITY_TOLERANCE = 1e-4
# The example the graphs are traced with: an LR size and a query count that no dimension shares
# (a size equal to another would tie the two in the graph).
TRACE_LR, TRACE_QUERIES = (24, 20), 37
# The check: another LR size, output size, tile and query chunk (several tiles, chunks of
# different lengths, placements off the origin). x3 in height puts output rows on LR pixel
# centres, the last one included (where LIIF's four ensemble areas are all zero); x2.59 in width.
CHECK_LR, CHECK_HR, CHECK_TILE, CHECK_PAD, CHECK_CHUNK = (23, 29), (69, 75), 11, 4, 700
# max_lr_per_hr values at which the recorded query reach a + b * m must equal the arch's.
REACH_PROBES = (0.1, 0.25, 0.5, 1.0, 2.0)


def state_tensors(state: Any) -> Dict[str, torch.Tensor]:
    """The tensors of an arch's encode state, by the names the graphs give them."""
    if isinstance(state, GaussianSRState):
        tensors = {}
        if state.smooth_feat.shape[1]:
            tensors['smooth_feat'] = state.smooth_feat
        if state.splats is not None:
            table = state.splats.unfold()
            tensors.update(splat_amplitude=table.amplitude, splat_exponent=table.exponent)
        return tensors
    if isinstance(state, LatentState):
        return {'latent': state.feat}
    raise ValueError(f'no ONNX layout for the state {type(state).__name__} (GaussianSR, LIIF and MetaSR have one)')


def rebuild_state(example: Any, lq: torch.Tensor, tensors: Dict[str, torch.Tensor], placement: Placement) -> Any:
    """The arch's state from the query graph's inputs; sizes from ``lq``'s (symbolic) shape,
    the rest (splat radius, an empty bicubic stream) from ``example``, an eager state."""
    size = tuple(lq.shape[-2:])
    if isinstance(example, GaussianSRState):
        splats = example.splats
        if splats is not None:
            splats = dataclasses.replace(splats, amplitude=tensors['splat_amplitude'],
                                         exponent=tensors['splat_exponent'], batch=lq.shape[0], lr_size=size,
                                         placement=placement, unfolded=True)
        smooth = tensors.get('smooth_feat', example.smooth_feat)
        return GaussianSRState(lq=lq, smooth_feat=smooth, splats=splats, placement=placement)
    return LatentState(feat=tensors['latent'], lr_size=size, lq=lq, placement=placement)


class EncodeGraph(nn.Module):
    """``net.encode`` with the state as a tuple of tensors."""

    def __init__(self, net: ImplicitSRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, lq: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(state_tensors(self.net.encode(lq)).values())


class QueryGraph(nn.Module):
    """``net.query`` of a placed state given as tensors (see the module docstring)."""

    def __init__(self, net: ImplicitSRNet, example: Any, names: Sequence[str]) -> None:
        super().__init__()
        self.net, self.example, self.names = net, example, list(names)

    def forward(self, lq: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, placement: torch.Tensor,
                state: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        place = Placement(origin=placement[:2], image_size=placement[2:])
        return self.net.query(rebuild_state(self.example, lq, dict(zip(self.names, state)), place), coord, cell)


def _to_onnx(module: nn.Module, args: Tuple[Any, ...], input_names: List[str], output_names: List[str],
             dynamic_shapes: Dict[str, Any]) -> Any:
    """``torch.onnx.export`` (dynamo) to an in-memory ``ModelProto``, its progress lines and
    warnings kept off the console; the graph then passes ``onnx.checker``'s full check."""
    import onnx
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')
        # optimize=False: onnxscript's optimizer drops an Add of a constant within 1e-8 of zero as a
        # no-op (its add_0 rule matches with abs_tol 1e-8), e.g. LIIF's EPS_AREA = 1e-9, and gave NaN
        # (0 / 0) where all four ensemble areas are 0 (onnxscript 0.7.2). onnxruntime optimizes the
        # graph itself when it loads it.
        program = torch.onnx.export(module, args, dynamo=True, external_data=False, optimize=False,
                                    input_names=input_names, output_names=output_names, dynamic_shapes=dynamic_shapes,
                                    verbose=False)
    proto = program.model_proto
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _value_infos(values: Any) -> Dict[str, Dict[str, Any]]:
    """{name: {'type': ..., 'shape': [int or dimension name]}} of a graph's inputs or outputs."""
    import onnx
    infos = {}
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_param if d.HasField('dim_param') else d.dim_value for d in tensor.shape.dim]
        infos[value.name] = {'type': onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, 'shape': shape}
    return infos


def _require_dynamic(infos: Dict[str, Dict[str, Any]], name: str, axes: Sequence[int], what: str) -> None:
    """Fails if torch fixed a dimension that must stay dynamic (the exporter may do so silently)."""
    shape = infos[name]['shape']
    fixed = [a for a in axes if not isinstance(shape[a], str)]
    if fixed:
        raise RuntimeError(f'the exported {what} graph fixed {name} to shape {shape}: it would serve one size only')


def export_graphs(net: ImplicitSRNet) -> Tuple[Any, Any]:
    """The encode and query graphs of ``net`` (eval mode, float32, on the CPU) as checked ``ModelProto``s."""
    from torch.export import Dim
    h, w = Dim('h', min=1), Dim('w', min=1)
    lq = torch.rand(1, 3, *TRACE_LR, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        example = net.encode(lq)
    tensors = state_tensors(example)
    names = list(tensors)
    encode = _to_onnx(EncodeGraph(net), (lq, ), [ENCODE_INPUT], names, {'lq': {2: h, 3: w}})
    queries = Dim('queries', min=1)
    coord = torch.rand(1, TRACE_QUERIES, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cell = torch.full((1, TRACE_QUERIES, 2), 2 / 50)
    placement = torch.tensor([0, 0, *TRACE_LR])
    state_shapes = tuple({2: h, 3: w} if t.dim() == 4 else {t.dim() - 2: Dim(f'{n}_rows', min=1)}
                         for n, t in tensors.items())
    query = _to_onnx(QueryGraph(net, example, names), (lq, coord, cell, placement, tuple(tensors.values())),
                     list(QUERY_INPUTS) + names, [QUERY_OUTPUT],
                     {'lq': {2: h, 3: w}, 'coord': {1: queries}, 'cell': {1: queries}, 'placement': None,
                      'state': state_shapes})
    encode_in, query_in = _value_infos(encode.graph.input), _value_infos(query.graph.input)
    _require_dynamic(encode_in, ENCODE_INPUT, (2, 3), 'encode')
    _require_dynamic(query_in, 'coord', (1, ), 'query')
    _require_dynamic(query_in, 'lq', (2, 3), 'query')
    return encode, query


def query_reach_line(net: ImplicitSRNet) -> List[float]:
    """[a, b] with ``net.query_reach(m) == a + b * m`` (checked at ``REACH_PROBES``).

    Raises:
        ValueError: The arch's reach is not of that form (the JSON could not record it).
    """
    a = net.query_reach(0.0)
    b = net.query_reach(1.0) - a
    for m in REACH_PROBES:
        if abs(net.query_reach(m) - (a + b * m)) > 1e-9:
            raise ValueError(f'{type(net).__name__}.query_reach is not linear in max_lr_per_hr; export.json '
                             'cannot record it')
    return [a, b]


def build_manifest(loaded: LoadedNet, graphs: Dict[str, Any], blobs: Dict[str, bytes]) -> Dict[str, Any]:
    """What ``export.json`` says (see ``manifest.py``)."""
    import onnx
    net = loaded.net
    entries = {}
    for name, proto in graphs.items():
        entries[name] = {'file': GRAPH_FILES[name], 'sha256': sha256_of(blobs[name]),
                         'inputs': _value_infos(proto.graph.input), 'outputs': _value_infos(proto.graph.output)}
    return {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'graphs': entries,
        'value_range': {'lq': [0.0, 1.0], 'rgb': [0.0, 1.0], 'rgb_clamped': False},
        'coordinates': ('coord: HR pixel centres (row, col) of the whole image in [-1, 1], (2 i + 1) / H - 1 as '
                        'LIIF\'s make_coord computes it; cell: (2 / H, 2 / W) for an H x W output; placement: '
                        '(origin row, origin col, image h, image w) of the encoded map, (0, 0, h, w) for the whole '
                        'image; lq: RGB, batch 1'),
        'reach': {'encoder': encoder_reach(net.encoder), 'query': query_reach_line(net),
                  'rgb_skip': bool(getattr(net, 'rgb_skip', False)),
                  'tile_pad': 'encoder + ceil(query[0] + query[1] * max_lr_per_hr + 0.5), at least 3 with '
                              'rgb_skip; max_lr_per_hr = the largest LR / HR size ratio of the outputs'},
        'query_chunk': loaded.query_chunk,
        'source': {'arch': type(net).__name__, 'arch_options': net.arch_options(),
                   'option_file': osp.abspath(loaded.option_file), 'checkpoint': osp.abspath(loaded.checkpoint),
                   'checkpoint_sha256': sha256_of(loaded.checkpoint), 'converted': loaded.converted},
        'exported_with': {'torch': torch.__version__, 'onnx': onnx.__version__,
                          'opset': max(o.version for o in graphs['query'].opset_import if o.domain in ('', 'ai.onnx'))},
    }


def check_against_torch(net: ImplicitSRNet, folder: str) -> float:
    """Renders an image the graphs were not traced with, whole and in tiles, with onnxruntime from
    ``folder`` and with ``net``; returns the largest |difference|.

    Raises:
        RuntimeError: Above ``PARITY_TOLERANCE``, or onnxruntime refused the sizes.
    """
    from .onnx_runtime import OnnxNet
    runtime = OnnxNet(folder)
    lq = torch.rand(1, 3, *CHECK_LR, generator=torch.Generator().manual_seed(2))
    worst = 0.0
    for tile in (0, CHECK_TILE):
        outputs = []
        for model in (net, runtime):
            out = torch.zeros(*CHECK_HR, 3)

            def sink(k: int, r0: int, r1: int, c0: int, c1: int, rgb: torch.Tensor, out: torch.Tensor = out) -> None:
                out[r0:r1, c0:c1] = rgb

            try:
                render(model, lq, [CHECK_HR], sink, tile=tile, tile_pad=CHECK_PAD, chunk=CHECK_CHUNK)
            except Exception as err:  # onnxruntime's own exception types
                raise RuntimeError(f'onnxruntime failed on the exported graphs: {str(err).splitlines()[0]}') from err
            outputs.append(out)
        worst = max(worst, (outputs[0] - outputs[1]).abs().max().item())
    if not worst <= PARITY_TOLERANCE:
        raise RuntimeError(f'onnxruntime differs from PyTorch by {worst:.3g} (> {PARITY_TOLERANCE:g}) on the check '
                           'image; the graphs were not written')
    return worst


def export_model(model_arg: Optional[str], out_dir: str, overwrite: bool = False) -> Tuple[Dict[str, Any], float]:
    """Exports the network ``model_arg`` names into ``out_dir`` (see the module docstring).

    Returns:
        (the manifest, the check's max |onnxruntime - PyTorch|).

    Raises:
        ValueError, FileExistsError, OSError: One line (missing packages, a bad model, a
            non-empty ``out_dir``); nothing is written.
        RuntimeError: The export or its check failed; nothing is written.
    """
    require(['onnx', 'onnxruntime', 'onnxscript'], 'basicsr export')
    check_output_folder(out_dir, overwrite=overwrite, create=False)
    loaded = load_net(model_arg, torch.device('cpu'))
    loaded.net.float()
    graphs = dict(zip(('encode', 'query'), export_graphs(loaded.net)))
    blobs = {name: proto.SerializeToString() for name, proto in graphs.items()}
    manifest = build_manifest(loaded, graphs, blobs)
    parent = osp.dirname(osp.abspath(out_dir))
    staging = osp.join(parent, f'.{osp.basename(osp.abspath(out_dir))}.tmp-{os.getpid()}')
    try:
        os.makedirs(staging)
        for name, blob in blobs.items():
            atomic_write(blob, osp.join(staging, GRAPH_FILES[name]), fsync=False)
        atomic_write(json.dumps(manifest, indent=1).encode(), osp.join(staging, MANIFEST), fsync=False)
        worst = check_against_torch(loaded.net, staging)
        _move_into(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest, worst


def _move_into(staging: str, out_dir: str) -> None:
    """Moves the checked files into ``out_dir``: the graphs first, ``export.json`` last, so that a
    folder with a manifest always holds the graphs it describes."""
    os.makedirs(out_dir, exist_ok=True)
    manifest = osp.join(out_dir, MANIFEST)
    if osp.exists(manifest):
        os.remove(manifest)  # an older export's, about to describe graphs it did not write
    for name in list(GRAPH_FILES.values()) + [MANIFEST]:
        os.replace(osp.join(staging, name), osp.join(out_dir, name))  # the same file system: atomic


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog='basicsr export', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', help='OPTION_FILE:CHECKPOINT of a trained GaussianSR, LIIF or MetaSR, or the '
                        'name of shipped weights (default: as basicsr upscale)')
    parser.add_argument('-o', '--output', required=True, help='output folder (created; must be empty or absent)')
    parser.add_argument('--overwrite', action='store_true', help='write into a non-empty folder (an older export)')
    parser.add_argument('--quiet', action='store_true', help='no summary line')
    return parser


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    manifest, worst = export_model(args.model, args.output, args.overwrite)
    if not args.quiet:
        sizes = ', '.join(f'{f} ({osp.getsize(osp.join(args.output, f)) / 2**20:.1f} MB)'
                          for f in GRAPH_FILES.values())
        source = manifest['source']
        print(f'Exported {source["arch"]} ({source["checkpoint"]}) to {args.output} in '
              f'{time.perf_counter() - start:.1f} s: {sizes}, {MANIFEST}; onnxruntime matches PyTorch within '
              f'{worst:.1e} (LR {CHECK_LR[1]}x{CHECK_LR[0]} -> {CHECK_HR[1]}x{CHECK_HR[0]}, whole and tiled)',
              flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``basicsr export``; returns the exit status."""
    return run_reporting_errors(run, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
