"""The benchmark harness: several SR methods and bicubic under one protocol, on one machine.

Run as ``basicsr benchmark ...`` or ``python -m gaussiansr_plugin.benchmark ...`` (see ``cli``
and docs/COMPARE.md). One concern per module; each imports only those listed after it:

* ``cli``: the command line and the run (``__main__`` calls it);
* ``pairs``: ``--pairs A:B``, paired per-image PSNR differences (also post hoc, as
  ``python -m gaussiansr_plugin.benchmark.pairs``);
* ``report``: the markdown table, notes and CSV files;
* ``evaluate``: the quality loop (PSNR/SSIM of every method, set and scale);
* ``cost``: latency, training speed and the cost rows; ``memory``: extra peak memory (the CPU
  probe runs as ``python -m gaussiansr_plugin.benchmark.memory`` in a fresh process);
* ``figure``: the side-by-side crop figure;
* ``sets``: ``NAME=DIR`` test sets and their datasets;
* ``methods``: ``NAME=OPTION_FILE[:CHECKPOINT]`` methods and bicubic.

The metric protocol itself (channel, shave, metric options) is ``gaussiansr_plugin.utils.metrics``,
shared with validation. This package imports nothing here so that the memory probe process loads
only what it needs.
"""
