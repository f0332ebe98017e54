"""What the plugin's commands share on their command lines: the ``python -m`` parser and the
model argument (benchmark, upscale, explain): ``OPTION_FILE[:CHECKPOINT]`` or the name of
shipped weights (``gaussiansr_plugin/weights``), resolved in ``resolve_model_arg`` only."""
import argparse
import os
from os import path as osp
from typing import Optional, Tuple

from ..weights import describe_shipped, resolve_weights_name


def command_parser(module_name: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of a command module: its docstring is the help text."""
    return argparse.ArgumentParser(prog=f'python -m {module_name}', description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def split_model_arg(text: str) -> Tuple[str, Optional[str]]:
    """``OPTION_FILE[:CHECKPOINT]`` -> (option file, checkpoint or None), split at the last ':'
    unless what follows it is not a checkpoint name (a Windows drive letter)."""
    head, colon, tail = text.rpartition(':')
    if colon and len(head) > 1 and tail:
        return head, tail
    return text, None


def _is_bare_name(text: str) -> bool:
    """No folder, no extension: meant as the name of shipped weights, not as a path."""
    return not osp.splitext(text)[1] and not any(sep in text for sep in {os.sep, '/', '\\'})


def resolve_model_arg(text: str) -> Tuple[str, Optional[str]]:
    """A model argument -> (option file, checkpoint or None).

    The name of shipped weights that is not an existing path (case-insensitive, e.g.
    ``gaussiansr``) gives their ``NAME.yml`` and ``NAME.pth``; anything else is parsed by
    ``split_model_arg`` (a missing option file is reported where it is read).

    Raises:
        ValueError: A bare name (no folder, extension or checkpoint) that is neither a file nor
            shipped weights; the message lists the shipped names.
    """
    shipped = resolve_weights_name(text)
    if shipped is not None:
        return shipped
    option_file, checkpoint = split_model_arg(text)
    if checkpoint is None and _is_bare_name(text) and not osp.exists(osp.expanduser(text)):
        raise ValueError(f'--model {text}: not an option file, nor the name of shipped weights ({describe_shipped()})')
    return option_file, checkpoint
