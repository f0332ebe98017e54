"""Dataset preparation tools, each runnable as ``python -m gaussiansr_plugin.tools.NAME`` or
``basicsr prepare NAME``.

* ``extract_subimages``: crop HR images into overlapping sub-images (BasicSR's DIV2K recipe).
* ``create_lmdb``: pack a folder of images into an LMDB that ``io_backend: {type: lmdb}`` reads.
* ``make_benchmark_lr``: make ``LR_bicubic/X{s}`` folders with the MATLAB-compatible bicubic.

What they share is in ``common``; comparing methods is ``gaussiansr_plugin.benchmark``.
"""
