"""Training and evaluation data for arbitrary-scale SR."""
import math
import os
from os import path as osp
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch.utils import data as data

from basicsr.utils import FileClient, get_root_logger, scandir
from basicsr.utils.registry import DATASET_REGISTRY
from ..utils.coord import make_cell, make_coord
from ..utils.image_io import ImageError, decode_rgb, is_image_file, scale_name
from ..utils.metrics import default_shave
from ..utils.option_rules import (BOOL, MAPPING, NON_NEGATIVE_INT, POSITIVE_INT, STRING, check_section, check_value,
                                  list_of, number, optional)
from ..utils.option_sections import LOADER_RULES
from ..utils.resize import get_downsampler
from ..utils.sample_keys import SampleKey

# Keys BasicSR itself reads from a dataset section (build_dataloader, train.py, parse_options),
# checked by utils/option_sections.py; the kinds of the dataset's own keys, per phase:
BASICSR_KEYS = set(LOADER_RULES)
COMMON_RULES = {'dataroot_gt': STRING, 'io_backend': MAPPING, 'meta_info_file': STRING,
                'image_names': list_of(STRING), 'downsampler': STRING, 'quantize_lq': BOOL}
TRAIN_RULES = {'lq_size': POSITIVE_INT, 'scale_min': number(1), 'scale_max': number(1),
               'sample_q': optional(POSITIVE_INT), 'augment': BOOL, 'skip_bad_images': BOOL}
EVAL_RULES = {'scale': number(1), 'dataroot_lq': STRING, 'filename_tmpl': STRING, 'shave': NON_NEGATIVE_INT,
              'test_y_channel': BOOL}


def _expand_path(path: str) -> str:
    """Expands ``~`` and environment variables; ``$SKIMAGE_DATA`` is scikit-image's photo folder."""
    if 'SKIMAGE_DATA' in path and 'SKIMAGE_DATA' not in os.environ:
        import skimage.data
        os.environ['SKIMAGE_DATA'] = osp.dirname(skimage.data.__file__)
    return osp.expanduser(osp.expandvars(path))


@DATASET_REGISTRY.register()
class ArbitraryScalePairedDataset(data.Dataset):
    """HR images with LR counterparts at any scale, in LIIF's query format.

    Train phase (``phase: train``): per sample a scale s ~ U(scale_min, scale_max) is drawn, an
    HR patch of side round(lq_size * s) is cropped at a random place, flipped/transposed,
    downscaled to lq_size x lq_size, and ``sample_q`` of its pixels are kept as queries. An image
    smaller than the patch lowers s for that sample to what fits; one that cannot hold
    lq_size * scale_min is rejected when the dataset is built. Indexed with a ``SampleKey`` (what
    the train sampler yields in BasicSR's loop), a sample draws from its own generator, seeded
    from (seed, epoch, position): the same draws in any data worker and after a resume
    (``utils/sample_keys.py``); indexed with a plain int, from torch's global RNG.

    Val/test phase: a fixed ``scale`` (integer or not). The LR is read from ``dataroot_lq``
    (BasicSR's ``LR_bicubic/X{s}`` naming through ``filename_tmpl``) and the HR cropped to the LR
    size times the scale; without ``dataroot_lq`` the LR is made on the fly as in LIIF's protocol:
    h_lr = floor(H / s), HR cropped to round(h_lr * s), then downscaled.

    Options (besides BasicSR's loader keys):
        dataroot_gt (str): HR folder, or an ``.lmdb`` with ``io_backend: {type: lmdb}``.
            ``$SKIMAGE_DATA`` expands to scikit-image's bundled photos.
        io_backend (dict): ``{type: disk}`` (default) or ``{type: lmdb}``.
        meta_info_file (str, optional): Text file whose lines start with image file names.
        image_names (list[str], optional): File names under ``dataroot_gt`` to use.
        downsampler (str): 'matlab' (MATLAB imresize, default) or 'torch' (antialiased bicubic).
        quantize_lq (bool): Round the made LR to 8-bit levels, like LR stored as PNG. Default: True.
        lq_size, scale_min, scale_max, sample_q, augment: train phase (48, 1, 4, 2304, True).
        skip_bad_images (bool): Train phase: an unreadable or corrupt image is logged (named)
            and replaced by the next one instead of stopping the run. Default: False.
        scale, dataroot_lq, filename_tmpl ('{}x{scale}'), shave, test_y_channel: val/test phase.
            ``shave`` (border excluded from metrics) defaults to ceil(scale).
    """

    def __init__(self, opt: Dict[str, Any]) -> None:
        super().__init__()
        self.opt = opt
        self.check_options(opt)
        self.is_train = opt['phase'] == 'train'
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.file_client: Optional[FileClient] = None  # opened lazily: one handle per worker process
        self.gt_root = _expand_path(opt['dataroot_gt'])
        self.downsample = get_downsampler(opt.get('downsampler', 'matlab'))
        self.quantize_lq = opt.get('quantize_lq', True)
        self.names, sizes = self._list_images()
        if self.is_train:
            self.lq_size = int(opt.get('lq_size', 48))
            self.scale_min = float(opt.get('scale_min', 1.0))
            self.scale_max = float(opt.get('scale_max', 4.0))
            self.sample_q = opt.get('sample_q', 2304)
            self.augment = opt.get('augment', True)
            self.skip_bad_images = opt.get('skip_bad_images', False)
            self.skipped = 0  # images skipped by this process (each data worker counts its own)
            self._check_train_sizes(sizes)
        else:
            self.scale = float(opt['scale'])
            self.lq_root = _expand_path(opt['dataroot_lq']) if opt.get('dataroot_lq') else None
            self.filename_tmpl = opt.get('filename_tmpl', '{}x{scale}')

    @staticmethod
    def check_options(opt: Dict[str, Any], where: Optional[str] = None) -> None:
        """Rejects unknown keys and impossible values with a message naming the key.

        Args:
            where (str, optional): The section's path in the option file (``datasets.val``),
                used in messages; default ``datasets.<name>``.
        """
        where = where or f'datasets.{opt.get("name", "?")}'
        phase = opt.get('phase')
        if phase not in ('train', 'val', 'test'):
            raise ValueError(f"{where}: phase must be train/val/test, got {phase!r}")
        rules = dict(COMMON_RULES, **(TRAIN_RULES if phase == 'train' else EVAL_RULES))
        unknown = sorted(set(opt) - BASICSR_KEYS - set(rules))
        if unknown:
            raise KeyError(f'{where}.{unknown[0]}: unknown key for the {phase} phase of ArbitraryScalePairedDataset; '
                           f'allowed: {", ".join(sorted(rules))}')
        check_section(opt, rules, where, required=('dataroot_gt', ) + (('scale', ) if phase != 'train' else ()))
        backend = (opt.get('io_backend') or {}).get('type', 'disk')
        if backend not in ('disk', 'lmdb'):
            raise ValueError(f'{where}.io_backend.type must be disk or lmdb, got {backend!r}')
        try:
            get_downsampler(opt.get('downsampler', 'matlab'))
        except ValueError as err:
            raise ValueError(f'{where}.downsampler: {err}') from err
        if phase == 'train':
            lq_size, smin = opt.get('lq_size', 48), opt.get('scale_min', 1.0)
            check_value(opt.get('scale_max', 4.0), number(smin), f'{where}.scale_max')
            sample_q = opt.get('sample_q', 2304)
            min_queries = round(lq_size * smin)**2
            if sample_q is not None and sample_q > min_queries:
                raise ValueError(f'{where}.sample_q must be no larger than the smallest HR patch ({min_queries} '
                                 f'pixels at scale_min), got {sample_q!r}')
        else:
            template = opt.get('filename_tmpl', '{}x{scale}')
            try:
                names = template.format('a', scale='2'), template.format('b', scale='2')
            except (IndexError, KeyError, ValueError):
                names = ('', '')
            if names[0] == names[1]:
                raise ValueError(f"{where}.filename_tmpl must hold '{{}}' for the file name and may hold "
                                 f"'{{scale}}', got {template!r}")

    def _list_images(self) -> Tuple[List[str], List[Optional[Tuple[int, int]]]]:
        """Image names (relative paths, or LMDB keys) and their (H, W) where known cheaply."""
        name = self.opt.get('name', '?')
        root = self.gt_root
        if not osp.exists(root):
            raise FileNotFoundError(f'datasets.{name}.dataroot_gt does not exist: {root}')
        if self.io_backend_opt['type'] == 'lmdb':
            return self._list_lmdb(root)
        if self.opt.get('image_names'):
            names = list(self.opt['image_names'])
        elif self.opt.get('meta_info_file'):
            with open(_expand_path(self.opt['meta_info_file'])) as f:
                names = [line.split()[0] for line in f if line.strip()]
        else:
            names = sorted(n for n in scandir(root, recursive=True) if is_image_file(n))
        missing = [n for n in names if not osp.isfile(osp.join(root, n))]
        if missing:
            raise FileNotFoundError(f'datasets.{name}: image {osp.join(root, missing[0])} does not exist'
                                    f'{f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""}')
        if not names:
            raise FileNotFoundError(f'datasets.{name}: no images in {root}')
        from PIL import Image  # reads headers only: sizes without decoding
        sizes = []
        for n in names:
            try:
                with Image.open(osp.join(root, n)) as img:
                    sizes.append((img.height, img.width))
            except Exception as err:  # PIL raises many types for bad files
                raise ImageError(f'Cannot read image {osp.join(root, n)}: {err}') from err
        return names, sizes

    def _list_lmdb(self, root: str) -> Tuple[List[str], List[Optional[Tuple[int, int]]]]:
        name = self.opt.get('name', '?')
        meta = osp.join(root, 'meta_info.txt')
        if not osp.isfile(meta) or not osp.isfile(osp.join(root, 'data.mdb')):
            raise FileNotFoundError(f'datasets.{name}.dataroot_gt is not a complete LMDB (data.mdb and '
                                    f'meta_info.txt expected): {root}')
        self.io_backend_opt.update(db_paths=[root], client_keys=['gt'])
        names, sizes = [], []
        with open(meta) as f:
            for line in f:
                if not line.strip():
                    continue
                file_name, shape = line.split()[:2]
                names.append(osp.splitext(file_name)[0])
                h, w = shape.strip('()').split(',')[:2]
                sizes.append((int(h), int(w)))
        if not names:
            raise FileNotFoundError(f'datasets.{name}: {meta} lists no images')
        return names, sizes

    def _check_train_sizes(self, sizes: List[Optional[Tuple[int, int]]]) -> None:
        need = round(self.lq_size * self.scale_min)
        small = [(n, s) for n, s in zip(self.names, sizes) if s is not None and min(s) < need]
        if small:
            (n, (h, w)) = small[0]
            raise ImageError(f'Image {osp.join(self.gt_root, n)} is {h}x{w}, smaller than the '
                             f'{need}x{need} HR patch of lq_size {self.lq_size} at scale_min {self.scale_min}'
                             f'{f" ({len(small) - 1} more images too)" if len(small) > 1 else ""}; '
                             'remove it or lower lq_size/scale_min.')

    def _read(self, root: str, name: str, client_key: str) -> torch.Tensor:
        if self.file_client is None:
            self.file_client = FileClient(self.io_backend_opt.pop('type'), **self.io_backend_opt)
        path = name if self.file_client.client.__class__.__name__ == 'LmdbBackend' else osp.join(root, name)
        try:
            data_bytes = self.file_client.get(path, client_key)
        except (OSError, AttributeError) as err:  # LmdbBackend returns None -> AttributeError
            raise ImageError(f'Cannot read image {path}: {err}') from err
        if data_bytes is None:
            raise ImageError(f'Image key {name!r} is missing from LMDB {root}')
        return decode_rgb(data_bytes, path)

    def _make_lq(self, hr: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        if not self.quantize_lq:
            return self.downsample(hr, size)
        # Through uint8, as LR stored as PNG is: for 8-bit sources and the 'matlab' downsampler
        # this reproduces MATLAB's imresize bit for bit (it rounds between its two passes too).
        hr_8bit = torch.round(hr.clamp(0, 1) * 255).to(torch.uint8)
        return self.downsample(hr_8bit, size).float() / 255

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        # A SampleKey (an int) brings this sample's generator; a plain int draws from torch's global RNG.
        generator = index.generator() if isinstance(index, SampleKey) else None
        index = int(index)
        if not self.is_train:
            name = self.names[index]
            return self._eval_sample(self._read(self.gt_root, name, 'gt'), name)
        for attempt in range(len(self.names)):
            name = self.names[(index + attempt) % len(self.names)]
            try:
                return self._train_sample(self._read(self.gt_root, name, 'gt'), name, generator)
            except ImageError as err:
                if not self.skip_bad_images:
                    raise
                self.skipped += 1
                get_root_logger().warning(f'{err} Skipped ({self.skipped} skipped in this process).')
        raise ImageError(f'datasets.{self.opt.get("name")}: no readable image in {self.gt_root}')

    def _train_sample(self, hr: torch.Tensor, name: str, generator: Optional[torch.Generator]) -> Dict[str, Any]:
        height, width = hr.shape[-2:]
        scale = self.scale_min + (self.scale_max - self.scale_min) * torch.rand((), generator=generator).item()
        patch = min(round(self.lq_size * scale), height, width)
        top = torch.randint(0, height - patch + 1, (), generator=generator).item()
        left = torch.randint(0, width - patch + 1, (), generator=generator).item()
        hr = hr[:, top:top + patch, left:left + patch]
        if self.augment:
            flips = torch.rand(3, generator=generator) < 0.5
            if flips[0]:
                hr = hr.flip(-1)
            if flips[1]:
                hr = hr.flip(-2)
            if flips[2]:
                hr = hr.transpose(-1, -2)
        lq = self._make_lq(hr, (self.lq_size, self.lq_size))
        coord = make_coord((patch, patch))
        gt = hr.reshape(3, -1).t()
        if self.sample_q is not None:
            keep = torch.randperm(coord.shape[0], generator=generator)[:self.sample_q]
            coord, gt = coord[keep], gt[keep]
        return {
            'lq': lq.contiguous(),
            'gt': gt.contiguous(),
            'coord': coord,
            'cell': make_cell((patch, patch), coord.shape[0]).clone(),
            'scale': torch.tensor(patch / self.lq_size),
            'gt_path': osp.join(self.gt_root, name),
        }

    def _eval_sample(self, hr: torch.Tensor, name: str) -> Dict[str, Any]:
        stem = osp.splitext(osp.basename(name))[0]
        s = self.scale
        if self.lq_root is not None:
            lq_name = self.filename_tmpl.format(stem, scale=scale_name(s)) + osp.splitext(name)[1]
            lq_path = osp.join(self.lq_root, lq_name)
            if not osp.isfile(lq_path):
                raise FileNotFoundError(f'datasets.{self.opt["name"]}: LR image {lq_path} does not exist '
                                        f'(filename_tmpl {self.filename_tmpl!r})')
            with open(lq_path, 'rb') as f:
                lq = decode_rgb(f.read(), lq_path)
            h_lr, w_lr = lq.shape[-2:]
            h_hr, w_hr = round(h_lr * s), round(w_lr * s)
            if h_hr > hr.shape[-2] or w_hr > hr.shape[-1]:
                raise ImageError(f'LR image {lq_path} ({h_lr}x{w_lr}) times scale {s:g} exceeds its HR '
                                 f'image {osp.join(self.gt_root, name)} ({hr.shape[-2]}x{hr.shape[-1]})')
            gt = hr[:, :h_hr, :w_hr]
        else:
            lq_path = osp.join(self.gt_root, name)
            h_lr, w_lr = math.floor(hr.shape[-2] / s + 1e-9), math.floor(hr.shape[-1] / s + 1e-9)
            if h_lr < 1 or w_lr < 1:
                raise ImageError(f'Image {lq_path} ({hr.shape[-2]}x{hr.shape[-1]}) is too small for scale {s:g}')
            gt = hr[:, :round(h_lr * s), :round(w_lr * s)]
            lq = self._make_lq(gt, (h_lr, w_lr))
        return {
            'lq': lq.contiguous(),
            'gt': gt.contiguous(),
            'scale': torch.tensor(s),
            'lq_path': lq_path,
            'gt_path': osp.join(self.gt_root, name),
        }

    @property
    def shave(self) -> int:
        """Border (pixels) excluded from metrics: the ``shave`` option, else ceil(scale)."""
        shave = self.opt.get('shave')
        return default_shave(self.scale) if shave is None else int(shave)
