"""Using a trained arbitrary-scale network on one's own images (``basicsr upscale``, ``basicsr explain``).

* ``loading``: the network from an option file and a checkpoint (weights only), or the default weights;
* ``receptive_field``: how many LR pixels of context an output pixel depends on, from the network;
* ``tiling``: exact tiled rendering (one tile on the device, queries in chunks), several output
  sizes from one encoder pass per tile;
* ``image_file``: reading any image file with one clear line per bad file, writing outputs;
* ``upscale``: the ``basicsr upscale`` command;
* ``explain``: figures of GaussianSR's Gaussian bank and its kernel choices (``basicsr explain``,
  and TensorBoard at validation).
"""
