"""Pack folders of images into an LMDB for ``io_backend: {type: lmdb}``.

    python -m gaussiansr_plugin.tools.create_lmdb -i FOLDER [FOLDER ...] -o TARGET.lmdb
        [--compress-level 1] [--batch 1000] [--workers N] [--overwrite]

Keys are the file stems (``0001_s001.png`` -> ``0001_s001``); values are the images encoded as
PNG at ``--compress-level`` (pixels stored exactly as in the source file: gray stays gray,
16-bit stays 16-bit). ``TARGET.lmdb/meta_info.txt`` has one line per image in BasicSR's format,
``<key>.png (h,w,c) <compress_level>``. Stems containing '.', whitespace or non-ASCII characters
are rejected (BasicSR splits names on them), as are images with transparent pixels.

The database is built in ``TARGET.lmdb.tmp-<pid>`` beside the target, committed every
``--batch`` images, verified (entry count, every key decodes to the shape meta_info.txt gives)
and only then renamed to the target: an interrupted run leaves no ``TARGET.lmdb``, only a
temporary folder that the next run deletes. An existing target is refused unless
``--overwrite``.
"""
import argparse
import os
import shutil
import sys
import time
from multiprocessing import Pool
from os import path as osp
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import lmdb
import numpy as np
from tqdm import tqdm

import gaussiansr_plugin  # noqa: F401  (patches BasicSR before anything imports it)
from gaussiansr_plugin.tools.common import encode_png, shape_hwc
from gaussiansr_plugin.utils.command_line import command_parser
from gaussiansr_plugin.utils.folders import list_images
from gaussiansr_plugin.utils.image_io import ImageError, read_image

PAGE_SIZE = 4096
# Commit at least this often by size too: a write transaction keeps its dirty pages in memory.
MAX_BATCH_BYTES = 512 * 1024**2

Shape = Tuple[int, int, int]


def check_key(key: str, path: str) -> None:
    """Rejects a key BasicSR cannot use, naming the file it comes from."""
    if not key:
        raise ValueError(f'Image {path} has an empty name stem; it cannot be an LMDB key.')
    if '.' in key:
        raise ValueError(f'Image {path}: its key {key!r} contains \'.\'; BasicSR reads the key as the name '
                         'up to the first \'.\' in meta_info.txt. Rename the file.')
    if not key.isascii() or any(ch.isspace() for ch in key):
        raise ValueError(f'Image {path}: its key {key!r} has whitespace or non-ASCII characters; '
                         'meta_info.txt and LMDB keys need plain ASCII. Rename the file.')


def _encode(path: str, compress_level: int) -> Tuple[str, bytes, Shape]:
    img = read_image(path, to_color=False)  # checks the file; keeps the pixels as stored
    return path, encode_png(img, compress_level, path), shape_hwc(img)


def _encode_star(args: Tuple[str, int]) -> Tuple[str, bytes, Shape]:
    return _encode(*args)


def _stored_size(num_bytes: int, key: str) -> int:
    """Upper bound of the map space one entry takes: large values fill whole overflow pages."""
    return -(-(num_bytes + 64) // PAGE_SIZE) * PAGE_SIZE + len(key) + 64


_READ_ENVS: Dict[str, Any] = {}


def _check_entries(args: Tuple[str, List[Tuple[str, Shape]]]) -> List[str]:
    """Decodes each (key, shape) of one chunk from the LMDB at ``args[0]``; returns the problems."""
    lmdb_path, entries = args
    env = _READ_ENVS.get(lmdb_path)
    if env is None:  # one read-only handle per process (LMDB handles must not cross a fork)
        env = _READ_ENVS[lmdb_path] = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    problems = []
    with env.begin(write=False) as txn:
        for key, shape in entries:
            data = txn.get(key.encode('ascii'))
            img = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if img is None:
                problems.append(f'key {key!r} is {"missing" if data is None else "not a decodable image"}')
            elif shape_hwc(img) != shape:
                problems.append(f'key {key!r} decodes to shape {shape_hwc(img)}, meta_info.txt says {shape}')
    return problems


def read_meta_info(lmdb_path: str) -> List[Tuple[str, Shape, int]]:
    """Parses ``meta_info.txt`` of an LMDB into (key, (h, w, c), compress_level) tuples."""
    meta_path = osp.join(lmdb_path, 'meta_info.txt')
    entries = []
    with open(meta_path) as f:
        for line_no, line in enumerate(f, 1):
            try:
                name, shape, level = line.split()
                h, w, c = (int(v) for v in shape.strip('()').split(','))
                entries.append((osp.splitext(name)[0], (h, w, c), int(level)))
            except ValueError as err:
                raise ValueError(f'{meta_path}:{line_no}: expected "<key>.png (h,w,c) <level>", '
                                 f'got {line.strip()!r}') from err
    return entries


def verify_lmdb(lmdb_path: str, expected: int, pool: Optional[Any] = None) -> None:
    """Checks that the LMDB holds ``expected`` entries, as listed in meta_info.txt, that all decode
    to the listed shapes.

    Raises:
        RuntimeError: naming the first problems found.
    """
    meta = read_meta_info(lmdb_path)
    with lmdb.open(lmdb_path, readonly=True, lock=False) as env:
        entries = env.stat()['entries']
    problems = []
    if entries != expected or len(meta) != expected:
        problems.append(f'{entries} entries and {len(meta)} meta_info.txt lines, expected {expected}')
    pairs = [(key, shape) for key, shape, _ in meta]
    chunks = [(lmdb_path, pairs[i:i + 64]) for i in range(0, len(pairs), 64)]
    results: Iterable[List[str]] = pool.imap(_check_entries, chunks) if pool else map(_check_entries, chunks)
    for chunk_problems in tqdm(results, total=len(chunks), unit='chunk', desc='Verify'):
        problems.extend(chunk_problems)
    _READ_ENVS.pop(lmdb_path, None)  # this process's handle, if map() opened one
    if problems:
        raise RuntimeError(f'LMDB {lmdb_path} failed verification: {"; ".join(problems[:5])}'
                           f'{f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""}')


def _remove_stale_temporaries(target: str) -> None:
    """Deletes ``target.tmp-<pid>`` folders of earlier runs whose process is gone."""
    parent, name = osp.split(osp.abspath(target))
    if not osp.isdir(parent):
        return
    for entry in os.listdir(parent):
        pid = entry[len(name) + len('.tmp-'):]
        if not (entry.startswith(f'{name}.tmp-') and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running: another build of the same target
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, owned by someone else
        print(f'Removing {osp.join(parent, entry)}, left by an interrupted run')
        shutil.rmtree(osp.join(parent, entry))


def _write(env: Any, tmp_path: str, jobs: Iterable[Tuple[str, bytes, Shape]], keys: Dict[str, str],
           map_size: int, compress_level: int, batch: int) -> int:
    """Puts the encoded images into ``env`` in batches, growing the map as needed; returns bytes."""
    used = total_bytes = pending = pending_bytes = 0
    meta_lines = []
    txn = env.begin(write=True)
    try:
        for path, data, (h, w, c) in jobs:
            key = keys[path]
            used += _stored_size(len(data), key)
            if used * 3 // 2 > map_size:  # keep 50% headroom for B-tree pages and the free list
                txn.commit()  # set_mapsize needs no open transaction
                map_size = max(2 * map_size, 2 * used)
                env.set_mapsize(map_size)
                txn = env.begin(write=True)
            txn.put(key.encode('ascii'), data)
            meta_lines.append(f'{key}.png ({h},{w},{c}) {compress_level}\n')
            total_bytes += len(data)
            pending += 1
            pending_bytes += len(data)
            if pending >= batch or pending_bytes >= MAX_BATCH_BYTES:
                txn.commit()
                pending = pending_bytes = 0
                txn = env.begin(write=True)
        txn.commit()
    except BaseException:
        txn.abort()
        raise
    # Last, so that even the temporary folder only looks complete once all data is in.
    with open(osp.join(tmp_path, 'meta_info.txt'), 'w') as f:
        f.writelines(meta_lines)
    return total_bytes


def create_lmdb(inputs: Sequence[str],
                output: str,
                compress_level: int = 1,
                batch: int = 1000,
                workers: Optional[int] = None,
                overwrite: bool = False) -> Dict[str, float]:
    """Builds ``output`` (an ``.lmdb`` folder) from the images in ``inputs``; see the module docstring.

    Returns:
        Summary with keys images, png_bytes, mdb_bytes, write_s, verify_s.

    Raises:
        ValueError, FileNotFoundError, FileExistsError, ImageError: bad arguments or input,
            with a message naming the option, file or key.
        RuntimeError: the written database failed verification (the target is left untouched).
    """
    output = osp.normpath(output)
    if not output.endswith('.lmdb'):
        raise ValueError(f'Output {output} must end with .lmdb (BasicSR\'s LMDB readers require it)')
    if osp.exists(output) and not overwrite:
        raise FileExistsError(f'{output} already exists; pass --overwrite to replace it.')
    if not 0 <= compress_level <= 9:
        raise ValueError(f'--compress-level must be 0-9, got {compress_level}')
    if batch < 1:
        raise ValueError(f'--batch must be positive, got {batch}')
    paths = list_images(inputs)
    keys = {path: osp.splitext(osp.basename(path))[0] for path in paths}
    for path, key in keys.items():
        check_key(key, path)

    _remove_stale_temporaries(output)
    tmp_path = f'{output}.tmp-{os.getpid()}'
    os.makedirs(tmp_path)
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    # The pool forks before any LMDB handle exists in this process, as LMDB requires.
    pool = Pool(workers) if workers > 1 else None
    try:
        start = time.perf_counter()
        # First guess from the file sizes; _write grows the map when PNGs come out larger.
        map_size = 2 * sum(osp.getsize(p) for p in paths) + 64 * 1024**2
        jobs_args = [(path, compress_level) for path in paths]
        jobs = pool.imap(_encode_star, jobs_args, chunksize=4) if pool else map(_encode_star, jobs_args)
        with lmdb.open(tmp_path, map_size=map_size) as env:
            total_bytes = _write(env, tmp_path, tqdm(jobs, total=len(paths), unit='image', desc='Write'), keys,
                                 map_size, compress_level, batch)
            env.sync(True)
        write_s = time.perf_counter() - start
        verify_lmdb(tmp_path, len(paths), pool)
        verify_s = time.perf_counter() - start - write_s
        mdb_bytes = osp.getsize(osp.join(tmp_path, 'data.mdb'))
        _move_into_place(tmp_path, output, overwrite)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return dict(images=len(paths), png_bytes=total_bytes, mdb_bytes=mdb_bytes, write_s=write_s, verify_s=verify_s)


def _move_into_place(tmp_path: str, output: str, overwrite: bool) -> None:
    if not osp.exists(output):
        os.rename(tmp_path, output)
        return
    if not overwrite:  # appeared while we were building
        raise FileExistsError(f'{output} already exists; pass --overwrite to replace it.')
    old_path = f'{output}.old-{os.getpid()}'
    os.rename(output, old_path)
    os.rename(tmp_path, output)
    shutil.rmtree(old_path)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = command_parser('gaussiansr_plugin.tools.create_lmdb', __doc__)
    parser.add_argument('-i', '--input', nargs='+', required=True, help='image folder(s), not recursive')
    parser.add_argument('-o', '--output', required=True, help='target LMDB folder, ending with .lmdb')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG zlib level 0-9 (default: 1)')
    parser.add_argument('--batch', type=int, default=1000, help='images per commit (default: 1000)')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes reading and encoding (default: CPU count)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing target')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        summary = create_lmdb(args.input, args.output, args.compress_level, args.batch, args.workers,
                              args.overwrite)
    except (ImageError, ValueError, FileNotFoundError, FileExistsError, RuntimeError, lmdb.Error) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    print(f'Created {args.output}: {summary["images"]} images, {summary["png_bytes"] / 1024**2:.1f} MiB of PNG '
          f'data ({summary["mdb_bytes"] / 1024**2:.1f} MiB data.mdb); written in {summary["write_s"]:.1f} s, '
          f'verified in {summary["verify_s"]:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
