"""What the ``upscale`` and ``explain`` commands share: one-line errors for bad arguments and bad input."""
import argparse
import ctypes
import re
import sys
from typing import Callable

from ..utils.image_io import ImageError
from ..utils.options import OptionError


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``prog: error: ...``), not the usage block first."""

    def error(self, message: str) -> None:
        self.exit(2, f'{self.prog}: error: {message}\n')


def message(err: BaseException) -> str:
    """An exception's message without KeyError's quotes or OSError's tuple."""
    return str(err.args[0]) if len(err.args) == 1 else str(err)


def non_negative_int(text: str) -> int:
    if not re.fullmatch(r'\d+', text.strip()):
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number >= 0')
    return int(text)


# glibc's mallopt parameter M_MMAP_THRESHOLD, and the value we set: allocations from 1 MiB up get
# their own mapping, returned to the system when freed.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_memory() -> None:
    """Makes large freed tensors leave the process at once (glibc only; elsewhere a no-op).

    glibc raises its mmap threshold up to 32 MiB after the first large free and then serves
    such blocks from a heap it keeps: every tile's transient activations and query chunks added
    to it, and peak RSS grew with the tile count (12 tiles of a 1024x768 image, measured here:
    1.42 GB with glibc's default, 1.00 GB with this threshold).
    """
    try:
        ctypes.CDLL('libc.so.6').mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def run_reporting_errors(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``; a user error (bad option file, path, image, checkpoint) becomes one line on
    stderr and exit status 1 instead of a traceback."""
    return_freed_memory()
    try:
        return run(args)
    except OptionError as err:
        print(err.code, file=sys.stderr)
    except (ImageError, ValueError, KeyError, OSError) as err:
        print(f'Error: {message(err)}', file=sys.stderr)
    return 1
