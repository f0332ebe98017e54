"""Writing files so that a crash never leaves a half-written one under the final name."""
import os
from os import path as osp
from typing import Optional, Sequence

import cv2
import numpy as np


def temp_path_for(file_path: str) -> str:
    """The hidden temporary name a file is written under before its rename (same folder, so the
    rename is atomic)."""
    folder, name = osp.split(file_path)
    return osp.join(folder, f'.{name}.tmp-{os.getpid()}')


def is_temp_file(name: str) -> bool:
    """Whether a file name is one of ``temp_path_for``'s, left behind by a killed run."""
    return name.startswith('.') and '.tmp-' in name


def atomic_write(data: bytes, file_path: str, fsync: bool = True) -> None:
    """Writes ``data`` under a temporary name, then renames it to ``file_path``.

    Args:
        fsync (bool): Flush to disk before the rename (survives power loss, not just a kill);
            bulk writers of many small files may skip it.
    """
    os.makedirs(osp.dirname(osp.abspath(file_path)), exist_ok=True)
    tmp_path = temp_path_for(file_path)
    try:
        with open(tmp_path, 'wb') as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp_path, file_path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)


def encode_image(img: np.ndarray, ext: str, params: Optional[Sequence[int]] = None, name: str = '') -> bytes:
    """Encodes an OpenCV (BGR) image to the format of ``ext`` ('.png', ...)."""
    ok, encoded = cv2.imencode(ext, img, list(params or []))
    if not ok:
        raise OSError(f'Cannot encode {name or "image"} as {ext}')
    return encoded.tobytes()


def atomic_imwrite(img: np.ndarray, file_path: str, params: Optional[Sequence[int]] = None,
                   fsync: bool = True) -> None:
    """``cv2.imwrite`` through a temporary name and a rename (see ``atomic_write``)."""
    ext = osp.splitext(file_path)[1] or '.png'
    atomic_write(encode_image(img, ext, params, file_path), file_path, fsync=fsync)
