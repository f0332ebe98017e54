"""``python -m gaussiansr_plugin.benchmark ...`` = ``basicsr benchmark ...``."""
import sys

from gaussiansr_plugin.benchmark.cli import main

sys.exit(main())
