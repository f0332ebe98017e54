"""What the data preparation tools share: image shapes as meta_info.txt records them, and
PNGs encoded or written under their final name only once complete (listing inputs and checking
output folders is ``utils/folders.py``, shared with the commands)."""
from typing import Tuple

import cv2
import numpy as np

from gaussiansr_plugin.utils.file_io import atomic_imwrite, encode_image


def shape_hwc(img: np.ndarray) -> Tuple[int, int, int]:
    """(h, w, c) of an OpenCV image, c = 1 for grayscale: the shape meta_info.txt records."""
    return (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])


def write_png_atomic(img: np.ndarray, file_path: str, compress_level: int = 3) -> None:
    """Writes a PNG at zlib level ``compress_level`` under its final name only once complete.

    No fsync: this guards against killed runs, not power loss, and an fsync per file would
    dominate the time of writing tens of thousands of sub-images.
    """
    atomic_imwrite(img, file_path, [cv2.IMWRITE_PNG_COMPRESSION, compress_level], fsync=False)


def encode_png(img: np.ndarray, compress_level: int, name: str) -> bytes:
    """PNG-encodes an OpenCV image at zlib level ``compress_level`` (0-9); ``name`` is for errors."""
    return encode_image(img, '.png', [cv2.IMWRITE_PNG_COMPRESSION, compress_level], name)
