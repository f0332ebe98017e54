"""How far, in LR pixels, an output pixel of a query-based network can see: the exact tile padding.

An output pixel at LR position P (pixel-centre units: LR pixel k covers [k - 1/2, k + 1/2))
depends on the encoder features within a *query reach* D of P (what ``query`` gathers: splat
window, classifier, unfolded neighbours, bicubic taps) and each feature on the LR pixels within
the *encoder reach* E of it (the receptive field of a stride-1 conv stack). A tile whose LR core
is the pixels [y0, y1) renders the outputs with P in [y0 - 1/2, y1 - 1/2); these need features in
[y0 - 1/2 - D, y1 - 1/2 + D], i.e. ceil(D + 1/2) whole pixels beyond the core, and those features
are exact when the tile carries E more pixels of LR context. Zero padding at the image border is
the same for the tile and the whole image, so

    tile_pad = E + ceil(D + 1/2)

gives tiles whose outputs equal the whole-image output (``tests/test_upscale.py`` checks it).
"""
import math

from torch import nn

from ..archs.gaussiansr_arch import GaussianSR
from ..archs.liif_arch import LIIF
from ..archs.metasr_arch import MetaSR

# grid_sample's bicubic taps at P are the pixels floor(P) - 1 .. floor(P) + 2: all within 2 of P.
BICUBIC_REACH = 2.0
# LIIF/MetaSR nudge positions by EPS_SHIFT (1e-6 of the half-size) before picking a latent; a
# bound above any such nudge keeps the reach an upper bound.
NUDGE_BOUND = 1e-3


def encoder_reach(encoder: nn.Module) -> int:
    """Receptive radius of a stride-1 conv stack: the sum of its convs' half-extents.

    Exact for a chain with residual additions (EDSR: every conv is on the longest path); an upper
    bound for any other wiring of the same convs.

    Raises:
        ValueError: A strided or transposed conv (tiles of it would not align with LR pixels).
    """
    reach = 0
    for name, module in encoder.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            if isinstance(module, nn.modules.conv._ConvTransposeNd) or any(s != 1 for s in module.stride):
                raise ValueError(f'encoder.{name} is strided or transposed; its receptive field is not computed')
            reach += conv_reach(module)
    return reach


def conv_reach(conv: nn.Module) -> int:
    """How far (pixels) a conv's output sees from its centre: ceil(dilation * (kernel - 1) / 2)."""
    return max(math.ceil(d * (k - 1) / 2) for k, d in zip(conv.kernel_size, conv.dilation))


def query_reach(net: nn.Module, max_lr_per_hr: float) -> float:
    """Distance D (LR pixels) from a query's position to the farthest encoder feature it reads.

    Args:
        net: A GaussianSR, LIIF or MetaSR network.
        max_lr_per_hr (float): The largest output pixel size, in LR pixels (1 / the smallest
            scale): MetaSR picks its latent from the output pixel's corner.

    Raises:
        ValueError: A network whose query this module does not know.
    """
    if isinstance(net, GaussianSR):
        reach = BICUBIC_REACH  # the bicubically sampled feature channels
        classifier = getattr(net, 'classifier', None)
        radius = getattr(net, 'radius', 0) or 0
        if classifier is not None and radius:
            # Nearest centre within 1/2 of P, the (2r+1)^2 splat window around it, and each
            # Gaussian's shape from the classifier's kernel over the features around its pixel.
            reach = max(reach, 0.5 + radius + conv_reach(classifier))
        return reach
    if isinstance(net, LIIF):
        # The latent containing P (within 1/2), or with the local ensemble those containing
        # P +- 1/2 (within 1); then its 3x3 neighbourhood when unfolded.
        latent = 1.0 if net.local_ensemble else 0.5
        return latent + NUDGE_BOUND + (1 if net.feat_unfold else 0)
    if isinstance(net, MetaSR):
        # The latent containing the output pixel's top-left corner, P - cell/2, and its 3x3 neighbourhood.
        return 0.5 + max_lr_per_hr / 2 + NUDGE_BOUND + 1
    raise ValueError(f'the receptive field of {type(net).__name__} is not known; use --tile 0 (no tiles)')


def receptive_field(net: nn.Module, max_lr_per_hr: float = 1.0) -> int:
    """The exact tile padding (LR pixels) of ``net``: E + ceil(D + 1/2), see the module docstring.

    The RGB skip (a bicubic sample of the LR image itself, no encoder) needs ceil(2 + 1/2).
    """
    pad = encoder_reach(net.encoder) + math.ceil(query_reach(net, max_lr_per_hr) + 0.5)
    if getattr(net, 'rgb_skip', False):
        pad = max(pad, math.ceil(BICUBIC_REACH + 0.5))
    return pad
