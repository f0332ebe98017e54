"""Registers the plugin's models in BasicSR's ``MODEL_REGISTRY``."""
from .arbitrary_scale_sr_model import ArbitraryScaleSRModel

__all__ = ['ArbitraryScaleSRModel']
