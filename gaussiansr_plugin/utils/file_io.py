"""Writing files so that a crash never leaves a half-written one under the final name."""
import os
from os import path as osp

import cv2
import numpy as np


def atomic_imwrite(img: np.ndarray, file_path: str) -> None:
    """Writes an image (as ``cv2.imwrite`` takes it) through a temporary name and a rename."""
    os.makedirs(osp.dirname(osp.abspath(file_path)), exist_ok=True)
    ext = osp.splitext(file_path)[1] or '.png'
    ok, encoded = cv2.imencode(ext, img)
    if not ok:
        raise OSError(f'Cannot encode image for {file_path}')
    tmp_path = f'{file_path}.tmp{os.getpid()}'
    with open(tmp_path, 'wb') as f:
        f.write(np.asarray(encoded).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_path, file_path)
