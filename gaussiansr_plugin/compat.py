"""Every patch of BasicSR 1.4.2 behaviour lives here, each with the reason it exists.

Delete a patch when BasicSR fixes the corresponding problem upstream. This module must be
imported before anything from ``basicsr``; ``gaussiansr_plugin/__init__.py`` does that first,
so every process that unpickles one of our classes (spawned data workers, torchrun ranks)
gets the patches too.
"""
import sys
import types

_APPLIED = False


def _alias_functional_tensor() -> None:
    """basicsr/data/degradations.py imports ``torchvision.transforms.functional_tensor``,
    which torchvision removed (0.17+); without the alias ``import basicsr`` fails."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        from torchvision.transforms import _functional_tensor as private_module
    except ImportError:  # a torchvision without the private module: expose what basicsr uses
        from torchvision.transforms import functional as private_module
    alias = types.ModuleType(name)
    alias.__dict__.update({k: v for k, v in vars(private_module).items() if not k.startswith('__')})
    sys.modules[name] = alias


def apply() -> None:
    """Install all patches once per process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _alias_functional_tensor()
    _APPLIED = True


apply()
