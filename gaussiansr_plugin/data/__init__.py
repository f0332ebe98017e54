"""Registers the plugin's datasets in BasicSR's ``DATASET_REGISTRY``."""
from .arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset

__all__ = ['ArbitraryScalePairedDataset']
