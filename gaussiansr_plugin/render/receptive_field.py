"""How far, in LR pixels, an output pixel of a query-based network can see: the exact tile padding.

An output pixel at LR position P (pixel-centre units: LR pixel k covers [k - 1/2, k + 1/2))
depends on the encoder features within a *query reach* D of P (what ``query`` gathers: splat
window, classifier, unfolded neighbours, bicubic taps; each arch's ``query_reach``) and each
feature on the LR pixels within the *encoder reach* E of it (the receptive field of a stride-1
conv stack, computed from its convolutions whatever the arch). A tile whose LR core
is the pixels [y0, y1) renders the outputs with P in [y0 - 1/2, y1 - 1/2); these need features in
[y0 - 1/2 - D, y1 - 1/2 + D], i.e. ceil(D + 1/2) whole pixels beyond the core, and those features
are exact when the tile carries E more pixels of LR context. Zero padding at the image border is
the same for the tile and the whole image, so

    tile_pad = E + ceil(D + 1/2)

gives tiles whose outputs equal the whole-image output (``tests/test_upscale.py`` checks it).
"""
import math

from torch import nn

from ..archs.arch_util import BICUBIC_REACH, conv_reach, encoder_reach

__all__ = ['conv_reach', 'encoder_reach', 'receptive_field']


def receptive_field(net: nn.Module, max_lr_per_hr: float = 1.0) -> int:
    """The exact tile padding (LR pixels) of ``net``: E + ceil(D + 1/2), see the module docstring.

    E is the encoder's reach (its convolutions), D what the arch says of its decoder
    (``ImplicitSRNet.query_reach``). The RGB skip (a bicubic sample of the LR image itself, no
    encoder) needs ceil(2 + 1/2).

    Raises:
        ValueError: A network that does not say its query reach.
    """
    if not hasattr(net, 'query_reach'):
        raise ValueError(f'the receptive field of {type(net).__name__} is not known; use --tile 0 (no tiles)')
    # An exported model (export/onnx_runtime.OnnxNet) has no encoder to read: it carries its reach.
    reach = net.encoder_reach if hasattr(net, 'encoder_reach') else encoder_reach(net.encoder)
    pad = reach + math.ceil(net.query_reach(max_lr_per_hr) + 0.5)
    if getattr(net, 'rgb_skip', False):
        pad = max(pad, math.ceil(BICUBIC_REACH + 0.5))
    return pad
