"""Registers the plugin's archs in BasicSR's ``ARCH_REGISTRY`` (one class per ``*_arch.py``)."""
from .gaussiansr_arch import GaussianSR

__all__ = ['GaussianSR']
