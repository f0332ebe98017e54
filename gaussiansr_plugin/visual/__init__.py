"""Pictures of a GaussianSR network's Gaussians (paper Fig. 6-8), for ``basicsr explain`` (PNG files)
and the model's validation (TensorBoard).

* ``figures``: drawing the figures from ``KernelStats``;
* ``kernels``: the kernel the classifier selects at every LR pixel (``kernel_stats``, tiled and
  exact), and logging the figures at validation.
"""
