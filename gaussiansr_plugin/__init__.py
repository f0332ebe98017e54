"""GaussianSR for BasicSR: importing this package registers its arch, dataset and model.

In this order, once per process: ``compat.apply()`` fixes BasicSR 1.4.2 for today's stack
(before anything else imports ``basicsr``); ``features.install()`` wires our own features
(atomic checkpoints, weights-only loading, exact resume) into BasicSR's pipelines; then the
arch, dataset and model classes register themselves.
"""
from . import compat

compat.apply()  # must precede every other basicsr import

from . import features  # noqa: E402

features.install()

from . import archs, data, models  # noqa: F401,E402

__version__ = '0.1.0'
