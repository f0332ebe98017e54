"""From an image to output pixels, for every caller: the model's validation and test
(``ArbitraryScaleSRModel.predict``), ``basicsr upscale`` / ``explain``, the benchmark and the scripts.

* ``tiling``: the render loop (encoder once per tile, queries in chunks of ``QUERY_CHUNK``, the
  whole image's ``utils/coord`` coordinates), tiled or in one tile, several output sizes per pass;
* ``receptive_field``: the exact tile padding of a network, from its encoder and its ``query_reach``.
"""
