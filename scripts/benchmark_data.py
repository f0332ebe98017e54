"""Training-data throughput of ArbitraryScalePairedDataset: disk backend vs LMDB backend.

    python scripts/benchmark_data.py --hr FOLDER [FOLDER ...] [-opt options/train_gaussiansr.yml]
        [--lmdb X.lmdb] [--samples 512] [--workers 2] [--rounds 1]

Both backends get the ``datasets.train`` settings of the option file (lq_size, scales,
sample_q, augment, downsampler, batch_size_per_gpu) over the same images: the images in the
``--hr`` folders read from disk, and an LMDB of them (``--lmdb``, or one built from the
folders with ``create_lmdb`` in a temporary folder). Each backend draws the same samples
(same seed) through a torch DataLoader with ``--workers`` workers; after a warm-up of two
batches (worker start, page cache) ``--samples`` samples are timed. Prints samples/s per
backend and their ratio. Without ``-opt``, ``options/train_gaussiansr.yml`` is used, or the
demo option file's train section when that file does not exist.
"""
import argparse
import sys
import tempfile
import time
from os import path as osp
from typing import Any, Dict, List, Optional

import torch
from torch.utils.data import DataLoader, RandomSampler

import gaussiansr_plugin  # noqa: F401  (patches BasicSR, registers the dataset)
from gaussiansr_plugin.data.arbitrary_scale_paired_dataset import ArbitraryScalePairedDataset
from gaussiansr_plugin.utils.folders import list_images
from gaussiansr_plugin.tools.create_lmdb import create_lmdb
from gaussiansr_plugin.utils.options import load_option_file

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_OPT = osp.join(REPO_ROOT, 'options', 'train_gaussiansr.yml')
DEMO_OPT = osp.join(REPO_ROOT, 'options', 'train_gaussiansr_demo.yml')
WARMUP_BATCHES = 2
# Where the images come from is set here, per backend; everything else comes from the option file.
SOURCE_KEYS = ('dataroot_gt', 'io_backend', 'image_names', 'meta_info_file')


def train_section(opt_path: Optional[str]) -> Dict[str, Any]:
    """The ``datasets.train`` section of ``opt_path`` (default: DEFAULT_OPT, else the demo's)."""
    if opt_path is None:
        opt_path = DEFAULT_OPT if osp.isfile(DEFAULT_OPT) else DEMO_OPT
    opt = load_option_file(opt_path)
    section = (opt.get('datasets') or {}).get('train')
    if not isinstance(section, dict):
        raise KeyError(f'{opt_path}: datasets.train is required')
    print(f'Train settings from {opt_path}')
    return {k: v for k, v in section.items() if k not in SOURCE_KEYS}


def measure(dataset_opt: Dict[str, Any], batch_size: int, workers: int, samples: int) -> float:
    """Samples per second through a DataLoader, after a warm-up; the same samples every call."""
    dataset = ArbitraryScalePairedDataset(dataset_opt)
    num_batches = -(-samples // batch_size)
    torch.manual_seed(0)  # the dataset draws crops and scales from torch: same samples per backend
    sampler = RandomSampler(dataset, replacement=True, num_samples=(num_batches + WARMUP_BATCHES) * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True)
    batches = iter(loader)
    for _ in range(WARMUP_BATCHES):
        next(batches)
    start = time.perf_counter()
    for _ in batches:
        pass
    return num_batches * batch_size / (time.perf_counter() - start)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', default=None, help='option file (default: options/train_gaussiansr.yml)')
    parser.add_argument('--hr', nargs='+', required=True, help='HR image folder(s)')
    parser.add_argument('--lmdb', default=None, help='LMDB of the same images (default: build one)')
    parser.add_argument('--samples', type=int, default=512, help='samples timed per backend (default: 512)')
    parser.add_argument('--workers', type=int, default=2, help='DataLoader workers (default: 2)')
    parser.add_argument('--rounds', type=int, default=1, help='alternating rounds; the best is kept')
    args = parser.parse_args(argv)

    base = train_section(args.opt)
    base.update(phase='train', name='benchmark')
    batch_size = int(base.get('batch_size_per_gpu', 1))
    paths = list_images(args.hr)
    root = osp.commonpath([osp.abspath(osp.dirname(p)) for p in paths])
    disk_opt = dict(base, dataroot_gt=root, io_backend={'type': 'disk'},
                    image_names=[osp.relpath(p, root) for p in paths])

    with tempfile.TemporaryDirectory(prefix='benchmark_data_') as tmp:
        lmdb_path = args.lmdb
        if lmdb_path is None:
            lmdb_path = osp.join(tmp, 'hr.lmdb')
            summary = create_lmdb(args.hr, lmdb_path, workers=max(1, args.workers))
            print(f'Built a temporary LMDB of {summary["images"]} images in '
                  f'{summary["write_s"] + summary["verify_s"]:.1f} s')
        lmdb_opt = dict(base, dataroot_gt=lmdb_path, io_backend={'type': 'lmdb'})
        print(f'{len(paths)} images; batch {batch_size}, {args.workers} workers, {args.samples} samples, '
              f'lq_size {base.get("lq_size", 48)}, scales {base.get("scale_min", 1)}-{base.get("scale_max", 4)}, '
              f'sample_q {base.get("sample_q", 2304)}, torch threads {torch.get_num_threads()}')
        best = {'disk': 0.0, 'lmdb': 0.0}
        for round_index in range(args.rounds):
            for name, opt in (('disk', disk_opt), ('lmdb', lmdb_opt)):
                rate = measure(opt, batch_size, args.workers, args.samples)
                best[name] = max(best[name], rate)
                print(f'round {round_index + 1}: {name:4s} {rate:8.1f} samples/s')
    print(f'disk {best["disk"]:.1f} samples/s | lmdb {best["lmdb"]:.1f} samples/s | '
          f'lmdb/disk {best["lmdb"] / best["disk"]:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
