"""Helpers shared by the plugin's archs, datasets, models and scripts.

They import nothing from ``models/``, ``compat.py`` or ``features.py`` (which build on them):
a model or dataset class checks its own options through BasicSR's registries instead.
"""
