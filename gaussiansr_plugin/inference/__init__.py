"""The commands that use a trained arbitrary-scale network on one's own images, and their file handling.

* ``command``: what the commands share (one-line errors, argument types);
* ``image_file``: reading any image file with one clear line per bad file, writing outputs;
* ``upscale``: the ``basicsr upscale`` command (rendering: ``render/tiling.py``);
* ``explain``: the ``basicsr explain`` command (figures: ``visual/``).

The network is loaded by ``utils/loading.py``, as for the benchmark.
"""
