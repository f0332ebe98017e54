"""``python -m gaussiansr_plugin train|test ...``: the same as the ``basicsr`` command."""
from gaussiansr_plugin.cli import main

main()
