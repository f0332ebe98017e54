"""``python -m gaussiansr_plugin.benchmark ...`` = ``basicsr benchmark ...``."""
import sys

from gaussiansr_plugin.benchmark.cli import MODULE, main

sys.exit(main(prog=f'python -m {MODULE}'))
