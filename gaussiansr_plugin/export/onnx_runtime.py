"""Running an exported model (``basicsr export``'s folder) with onnxruntime, through the one render loop.

``OnnxNet`` has what ``render/tiling.render`` asks of a network: ``encode`` (the encode graph,
once per tile), ``place`` (where a tile lies in the image: the query graph's ``placement``
input), ``query`` (the query graph, per chunk of queries), and for the exact tile padding
(``render/receptive_field.py``) its encoder reach, query reach and ``rgb_skip``, read from
``export.json``. So ``basicsr upscale --model DIR`` tiles, scales, blends and writes files as
it does for a PyTorch network; only the layers run elsewhere. The state stays in onnxruntime's
own tensors (``OrtValue``) between the graphs: no copy per query chunk.

Runs on onnxruntime's CPU provider in float32, with ``torch.get_num_threads()`` threads unless
told otherwise (so ``OMP_NUM_THREADS`` sets both runtimes alike).
"""
import dataclasses
from os import path as osp
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from ..render.tiling import query_chunk_or_default
from ..weights import shipped_names
from . import require
from .manifest import (ENCODE_INPUT, GRAPH_FILES, MANIFEST, QUERY_INPUTS, QUERY_OUTPUT, present_export_files,
                       read_manifest)


@dataclasses.dataclass
class OnnxState:
    """What the encode graph computed for one LR map (a tile or the whole image)."""
    lq: Any  # OrtValue (1, 3, h, w)
    tensors: Dict[str, Any]  # the encode graph's outputs by name (OrtValues)
    placement: np.ndarray  # int64 (origin row, origin col, image h, image w)


def is_export_arg(model_arg: Optional[str]) -> bool:
    """Whether a ``--model`` argument names an exported model (a folder, or one of its graphs)
    rather than ``OPTION_FILE[:CHECKPOINT]`` or shipped weights."""
    if not model_arg:
        return False
    path = osp.expanduser(model_arg)
    return osp.isdir(path) or path.lower().endswith('.onnx')


def session_options(threads: int) -> Any:
    """onnxruntime's options for the graphs of an export: ``threads`` intra-op threads, no spinning."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No spinning: between two graph calls the render loop runs PyTorch ops, whose threads a
    # spinning pool would compete with (64² -> 512² GaussianSR on 2 cores: 1.34-1.50 s with
    # spinning, 1.15-1.30 s without).
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.log_severity_level = 3  # warnings of graph optimizers are not the user's business
    return options


class OnnxNet:
    """An exported model behind ``ImplicitSRNet``'s inference interface (see the module docstring).

    Args:
        folder (str): What ``basicsr export`` wrote.
        threads (int | None): onnxruntime's intra-op threads; None: ``torch.get_num_threads()``.

    Raises:
        ValueError: One line: onnxruntime missing, not an export folder, another format version,
            a missing graph, or a graph that is not the one ``export.json`` describes.
    """

    device = torch.device('cpu')
    dtype = torch.float32

    def __init__(self, folder: str, threads: Optional[int] = None) -> None:
        require(['onnxruntime'], f'--model {folder} (an exported model)')
        import onnxruntime as ort
        path = osp.expanduser(folder)
        if not osp.exists(path):
            raise FileNotFoundError(f'--model {folder} does not exist')
        if not osp.isdir(path):
            raise ValueError(f'--model {folder}: an ONNX file alone is not enough; give the folder basicsr export '
                             f'wrote ({", ".join(GRAPH_FILES.values())} and {MANIFEST})')
        bare_name = osp.normpath(folder) if not osp.dirname(osp.normpath(folder)) else None
        shadowed = [n for n in shipped_names() if bare_name and n.lower() == bare_name.lower()]
        if shadowed and not present_export_files(path):
            # An existing path wins over a shipped name (weights.resolve_weights_name), so say why.
            raise ValueError(f'--model {folder}: the folder {osp.abspath(path)} holds no export ({MANIFEST}), and a '
                             f'path of that name takes precedence over the shipped weights {shadowed[0]!r}; run '
                             'from another folder to use them')
        manifest = read_manifest(path)
        options = session_options(threads or torch.get_num_threads())
        sessions = {}
        for name, file in GRAPH_FILES.items():
            try:
                sessions[name] = ort.InferenceSession(osp.join(path, file), options,
                                                      providers=['CPUExecutionProvider'])
            except Exception as err:  # onnxruntime raises its own exception types, one per cause
                raise ValueError(f'{osp.join(path, file)}: onnxruntime cannot load it ({str(err).splitlines()[0]})')
        self.folder, self.manifest = path, manifest
        self._encode, self._query = sessions['encode'], sessions['query']
        self.state_names = [o.name for o in self._encode.get_outputs()]
        self._check_signature('encode', [ENCODE_INPUT], self.state_names)
        self._check_signature('query', list(QUERY_INPUTS) + self.state_names, [QUERY_OUTPUT])
        reach = manifest.get('reach') or {}
        try:
            self.encoder_reach = int(reach['encoder'])
            self._reach = tuple(float(v) for v in reach['query'])
            self.rgb_skip = bool(reach['rgb_skip'])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f'{osp.join(path, MANIFEST)}: reach must hold encoder, query [a, b] and rgb_skip, '
                             f'got {reach!r}') from None
        self.arch = str((manifest.get('source') or {}).get('arch', 'model'))

    def _check_signature(self, name: str, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """The graph's input and output names are what this runtime feeds and what export.json says."""
        session = self._encode if name == 'encode' else self._query
        declared = self.manifest['graphs'][name]
        got = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        said = (list(declared.get('inputs') or {}), list(declared.get('outputs') or {}))
        file = osp.join(self.folder, GRAPH_FILES[name])
        if sorted(got[0]) != sorted(inputs) or got[1] != list(outputs) or \
                (sorted(said[0]), said[1]) != (sorted(got[0]), got[1]):
            raise ValueError(f'{file}: inputs {got[0]} -> outputs {got[1]}; a {name} graph of this export has '
                             f'inputs {list(inputs)} -> outputs {list(outputs)}: not a graph of this plugin\'s export')

    @property
    def description(self) -> str:
        source = self.manifest.get('source') or {}
        digest = str(source.get('checkpoint_sha256', ''))[:12]
        return (f'{self.arch} exported to ONNX in {self.folder} (from {source.get("checkpoint")}, sha256 {digest}...), '
                f'onnxruntime CPU, {self._encode.get_session_options().intra_op_num_threads} threads')

    def query_reach(self, max_lr_per_hr: float = 1.0) -> float:
        """``ImplicitSRNet.query_reach`` as the export recorded it (a + b * max_lr_per_hr)."""
        return self._reach[0] + self._reach[1] * max_lr_per_hr

    def encode(self, lq: torch.Tensor) -> OnnxState:
        import onnxruntime as ort
        image = np.ascontiguousarray(lq.detach().cpu().numpy(), dtype=np.float32)
        value = ort.OrtValue.ortvalue_from_numpy(image)
        outputs = self._encode.run_with_ort_values(self.state_names, {ENCODE_INPUT: value})
        h, w = image.shape[-2:]
        return OnnxState(value, dict(zip(self.state_names, outputs)), np.array([0, 0, h, w], dtype=np.int64))

    def place(self, state: OnnxState, origin: Sequence[int], image_size: Sequence[int]) -> OnnxState:
        """``ImplicitSRNet.place``: the query graph then reads the whole image's coordinates."""
        placement = np.array([*origin, *image_size], dtype=np.int64)
        return dataclasses.replace(state, placement=placement)

    def query(self, state: OnnxState, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        import onnxruntime as ort

        def value(array: Any) -> Any:
            return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))

        feeds = {'lq': state.lq, 'coord': value(coord.detach().cpu().numpy().astype(np.float32, copy=False)),
                 'cell': value(cell.detach().cpu().numpy().astype(np.float32, copy=False)),
                 'placement': value(state.placement), **state.tensors}
        return torch.from_numpy(self._query.run_with_ort_values([QUERY_OUTPUT], feeds)[0].numpy())


@dataclasses.dataclass
class LoadedExport:
    """``utils/loading.LoadedNet``'s fields for an exported model (what ``basicsr upscale`` reads)."""
    net: OnnxNet
    option_file: str
    checkpoint: str
    query_chunk: int
    converted: Optional[str] = None

    @property
    def description(self) -> str:
        return self.net.description


def load_export(folder: str, gpu_id: Optional[int] = None, precision: Optional[str] = None,
                threads: Optional[int] = None) -> LoadedExport:
    """Opens ``basicsr export``'s folder for ``render`` (see ``OnnxNet`` for what fails and how).

    Raises:
        ValueError: Also for a GPU (``gpu_id``) or a half ``precision`` asked of it: the graphs
            run on onnxruntime's CPU provider in float32.
    """
    if gpu_id is not None:
        raise ValueError(f'--gpu-id {gpu_id}: an exported model (--model {folder}) runs on onnxruntime\'s CPU '
                         'provider; omit --gpu-id, or give the PyTorch model to run on a GPU')
    if precision in ('bf16', 'fp16'):
        raise ValueError(f'--precision {precision}: an exported model (--model {folder}) runs in float32; omit '
                         '--precision')
    net = OnnxNet(folder, threads)
    source = net.manifest.get('source') or {}
    return LoadedExport(net, osp.join(net.folder, MANIFEST), str(source.get('checkpoint')),
                        query_chunk_or_default(net.manifest.get('query_chunk')))
