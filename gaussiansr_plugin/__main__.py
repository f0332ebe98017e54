"""``python -m gaussiansr_plugin train|test|prepare|benchmark|upscale|explain ...``: the same as the ``basicsr`` command."""
from gaussiansr_plugin.cli import main

main()
