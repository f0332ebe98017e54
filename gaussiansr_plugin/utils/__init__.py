"""Helpers shared by the plugin's archs, datasets, models and scripts."""
