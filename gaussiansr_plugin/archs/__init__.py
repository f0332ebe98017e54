"""Registers the plugin's archs in BasicSR's ``ARCH_REGISTRY`` (one class per ``*_arch.py``)."""
from .gaussiansr_arch import GaussianSR
from .liif_arch import LIIF
from .metasr_arch import MetaSR

__all__ = ['GaussianSR', 'LIIF', 'MetaSR']
