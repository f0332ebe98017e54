"""The weights shipped with the package: ``NAME.pth`` (the checkpoint) beside ``NAME.yml`` (the
option file it was trained with), usable wherever a checkpoint or ``--model`` is given by ``NAME``.

A leaf module (it imports nothing from the plugin), so that the checkpoint loader, the option
check and the commands can all ask it without import cycles. ``WEIGHTS_DIR`` is read at every
call: tests point it at a folder of their own.
"""
import os
from os import path as osp
from typing import List, Optional, Tuple

WEIGHTS_DIR = osp.dirname(osp.abspath(__file__))


def shipped_names() -> List[str]:
    """Names (file stems) in ``WEIGHTS_DIR`` that have both ``NAME.pth`` and ``NAME.yml``, sorted."""
    if not osp.isdir(WEIGHTS_DIR):
        return []
    stems = {osp.splitext(f)[0] for f in os.listdir(WEIGHTS_DIR) if f.endswith('.pth')}
    return sorted(s for s in stems if osp.isfile(osp.join(WEIGHTS_DIR, f'{s}.yml')))


def resolve_weights_name(text: str) -> Optional[Tuple[str, str]]:
    """(option file, checkpoint) of the shipped weights named ``text`` (case-insensitive), or None.

    None also when ``text`` is an existing path: a file or folder of that name in the current
    directory is what the user means, not the shipped weights.
    """
    text = (text or '').strip()
    if not text or osp.exists(osp.expanduser(text)):
        return None
    names = shipped_names()
    match = text if text in names else next((n for n in names if n.lower() == text.lower()), None)
    if match is None:
        return None
    return osp.join(WEIGHTS_DIR, f'{match}.yml'), osp.join(WEIGHTS_DIR, f'{match}.pth')


def describe_shipped() -> str:
    """The shipped names for an error message: 'shipped weights: a, b' or 'no weights are shipped in DIR'."""
    names = shipped_names()
    return f'shipped weights: {", ".join(names)}' if names else f'no weights are shipped in {WEIGHTS_DIR}'
