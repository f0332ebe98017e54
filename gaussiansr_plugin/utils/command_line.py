"""What the plugin's commands share on their command lines: the ``python -m`` parser and the
``OPTION_FILE[:CHECKPOINT]`` model argument (benchmark, upscale, explain)."""
import argparse
from typing import Optional, Tuple


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
