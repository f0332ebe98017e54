"""Exported models: query-based networks as ONNX graphs, and running them without PyTorch's layers.

* ``onnx_export.py``: ``basicsr export`` writes an ``encode`` graph (LR image -> state tensors)
  and a ``query`` graph (state, coordinates, cells, placement -> RGB), both with a dynamic LR
  size and query count, and ``export.json`` beside them (``manifest.py``);
* ``onnx_runtime.py``: ``OnnxNet`` runs such a folder with onnxruntime behind the interface the
  one render loop (``render/tiling.render``) drives, so ``basicsr upscale --model DIR`` tiles,
  scales and writes files exactly as for a PyTorch network.

onnx, onnxruntime and onnxscript are an optional extra (``pip install -e '.[onnx]'``); without
them both fail with one line saying so (``require``).
"""
import importlib
from typing import Sequence

# What the extra installs (setup.py's ``onnx`` extra), and how to ask for it.
INSTALL_HINT = "pip install -e '.[onnx]' (or pip install onnx onnxruntime onnxscript)"


def require(modules: Sequence[str], purpose: str) -> None:
    """Imports ``modules`` or fails in one line naming what is missing and how to install it.

    Raises:
        ValueError: One of them is not installed.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            needs = ', '.join(modules)
            raise ValueError(f'{purpose} needs {needs} ({name} is not installed): {INSTALL_HINT}') from None
