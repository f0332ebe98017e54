"""What an export folder holds, and the checks that it holds what ``export.json`` says.

``basicsr export`` writes ``encode.onnx``, ``query.onnx`` and ``export.json`` (written last: a
folder without it is not a finished export). The JSON records, for a program that runs the graphs
without this package:

* ``format`` / ``format_version``: this layout (a reader refuses another version);
* ``graphs``: per graph its file, sha256 and the names, shapes (ints, or names of dynamic sizes)
  and types of its inputs and outputs;
* ``value_range``, ``coordinates``: what the inputs mean (an RGB image in [0, 1]; HR pixel centres
  of the whole LR image, ``utils/coord.make_coord``'s; cells; where an encoded tile lies);
* ``reach``: what exact tiles need (``render/receptive_field.py``): tile_pad = encoder +
  ceil(query[0] + query[1] * max_lr_per_hr + 1/2), at least 3 with ``rgb_skip``;
* ``source``: the option file, checkpoint and its sha256, the arch and its options;
* ``exported_with``: torch, onnx and the opset.
"""
import hashlib
import json
from os import path as osp
from typing import Any, Dict, List

FORMAT = 'gaussiansr-basicsr-onnx'
FORMAT_VERSION = 1
MANIFEST = 'export.json'
GRAPH_FILES = {'encode': 'encode.onnx', 'query': 'query.onnx'}
# Graph inputs besides the state tensors (the encode graph's outputs, fed back to the query graph).
ENCODE_INPUT = 'lq'
QUERY_INPUTS = ('lq', 'coord', 'cell', 'placement')
QUERY_OUTPUT = 'rgb'


def sha256_of(data_or_path: Any) -> str:
    """sha256 (hex) of ``bytes``, or of a file's contents given its path."""
    digest = hashlib.sha256()
    if isinstance(data_or_path, (bytes, bytearray)):
        digest.update(data_or_path)
    else:
        with open(data_or_path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    return digest.hexdigest()


def present_export_files(folder: str) -> List[str]:
    """The files of an export (graphs, then the manifest) that ``folder`` holds."""
    return [f for f in (*GRAPH_FILES.values(), MANIFEST) if osp.isfile(osp.join(folder, f))]


def read_manifest(folder: str) -> Dict[str, Any]:
    """``folder/export.json``, checked: our format and version, both graphs present and unchanged.

    Raises:
        ValueError: One line naming the file and what is wrong (not an export, another version,
            a missing graph, a graph that is not the one the JSON describes).
    """
    path = osp.join(folder, MANIFEST)
    if not osp.isfile(path):
        graphs = present_export_files(folder)  # the manifest is not among them
        what = f'has {", ".join(graphs)} but ' if graphs else ''
        raise ValueError(f'{folder} {what}has no {MANIFEST}: not a finished basicsr export folder')
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f'{path} is not readable JSON ({err})') from None
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise ValueError(f'{path} is not a {FORMAT} manifest (format: '
                         f'{manifest.get("format") if isinstance(manifest, dict) else None!r})')
    version = manifest.get('format_version')
    if version != FORMAT_VERSION:
        raise ValueError(f'{path} has format version {version!r}; this plugin reads version {FORMAT_VERSION}: '
                         'export the model again with this version (basicsr export)')
    graphs = manifest.get('graphs')
    if not isinstance(graphs, dict) or set(graphs) != set(GRAPH_FILES):
        raise ValueError(f'{path}: graphs must be {sorted(GRAPH_FILES)}, got '
                         f'{sorted(graphs) if isinstance(graphs, dict) else graphs!r}')
    for name, expected_file in GRAPH_FILES.items():
        entry = graphs[name]
        if not isinstance(entry, dict) or entry.get('file') != expected_file or not entry.get('sha256'):
            raise ValueError(f'{path}: graphs.{name} must name {expected_file} and its sha256')
        graph_path = osp.join(folder, expected_file)
        if not osp.isfile(graph_path):
            raise ValueError(f'{graph_path} is missing: the export is incomplete (run basicsr export again)')
        digest = sha256_of(graph_path)
        if digest != entry['sha256']:
            raise ValueError(f'{graph_path} is not the graph {MANIFEST} describes (sha256 {digest[:12]}..., '
                             f'expected {entry["sha256"][:12]}...): a file of another export or model?')
    return manifest
