"""The test sets of the benchmark: ``NAME=DIR`` arguments and their test-phase datasets.

A set is ``NAME=DIR`` with the HR images in ``DIR/HR`` (LR, when present, in
``DIR/LR_bicubic/X{s}/{name}x{s}.png``) or directly in ``DIR``. Sets named ``DIV2K*`` (or listed
in ``--div2k-protocol``) follow the DIV2K protocol (``gaussiansr_plugin.utils.metrics``). LR for
s in {2, 3, 4} is read from ``LR_bicubic/X{s}`` when present, otherwise (and for every other s)
made on the fly by ``ArbitraryScalePairedDataset`` in its test phase.
"""
import os
from dataclasses import dataclass
from os import path as osp
from typing import Any, Dict, Optional, Sequence, Tuple

import gaussiansr_plugin  # noqa: F401  (patches BasicSR before anything imports it)
from gaussiansr_plugin.data.arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset
from gaussiansr_plugin.utils.image_io import is_image_file, scale_name
from gaussiansr_plugin.utils.metrics import protocol_options

# Scales whose standard LR sets exist as files (LR_bicubic/X{s}); others are always made on the fly.
FILE_LR_SCALES = (2, 3, 4)


@dataclass
class EvalSet:
    """A test set: its HR folder, where its LR folders may be, and its protocol."""
    name: str
    hr_dir: str
    lr_root: Optional[str]  # holds X{s}/ folders
    div2k: bool

    def protocol(self) -> str:
        return 'RGB, shave ceil(s)+6' if self.div2k else 'Y, shave ceil(s)'


def parse_set_arg(text: str, div2k_names: Sequence[str]) -> EvalSet:
    """``NAME=DIR`` -> EvalSet (DIR/HR + DIR/LR_bicubic, or DIR itself as the HR folder)."""
    name, sep, folder = text.partition('=')
    if not sep or not name or not folder:
        raise ValueError(f'--sets {text!r}: expected NAME=DIR')
    folder = osp.expanduser(folder)
    if osp.isdir(osp.join(folder, 'HR')):
        hr_dir, lr_root = osp.join(folder, 'HR'), osp.join(folder, 'LR_bicubic')
    elif osp.isdir(folder) and any(is_image_file(n) for n in os.listdir(folder)):
        hr_dir, lr_root = folder, None
    else:
        raise FileNotFoundError(f'--sets {name}: {folder} has neither an HR/ folder nor images')
    div2k = name.lower().startswith('div2k') or name in div2k_names
    return EvalSet(name, hr_dir, lr_root if lr_root and osp.isdir(lr_root) else None, div2k)


def make_dataset(eval_set: EvalSet, scale: float) -> Tuple[ArbitraryScalePairedDataset, str]:
    """The test-phase dataset of ``eval_set`` at ``scale`` and a description of its LR source."""
    opt: Dict[str, Any] = dict(
        name=f'{eval_set.name}_x{scale_name(scale)}', type='ArbitraryScalePairedDataset', phase='test',
        dataroot_gt=eval_set.hr_dir, scale=scale, downsampler='matlab', **protocol_options(scale, eval_set.div2k))
    lr_dir = osp.join(eval_set.lr_root, f'X{scale_name(scale)}') if eval_set.lr_root else None
    if lr_dir and scale in FILE_LR_SCALES and osp.isdir(lr_dir):
        opt.update(dataroot_lq=lr_dir, filename_tmpl='{}x{scale}')
        source = f'files {lr_dir}'
    else:
        source = 'on the fly (MATLAB bicubic, 8-bit)'
    return ArbitraryScalePairedDataset(opt), source
