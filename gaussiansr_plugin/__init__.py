"""GaussianSR for BasicSR: importing this package registers its arch, dataset and model.

``compat`` comes first: it patches BasicSR 1.4.2 for today's stack before anything imports
``basicsr``.
"""
from . import compat  # noqa: F401  (must precede every basicsr import)
from . import archs, data, models  # noqa: F401,E402

__version__ = '0.1.0'
