"""What the data preparation tools share: listing input images, refusing to overwrite earlier
output, and writing PNGs under their final name only once complete."""
import os
from os import path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from gaussiansr_plugin.utils.file_io import atomic_imwrite, encode_image
from gaussiansr_plugin.utils.image_io import IMAGE_EXTENSIONS, is_image_file


def list_images(folders: Sequence[str]) -> List[str]:
    """Image files directly inside ``folders`` (not recursive), sorted per folder.

    Raises:
        FileNotFoundError: A folder is missing or none of them holds an image.
        ValueError: Two images share a file stem (their outputs would collide).
    """
    paths: List[str] = []
    by_stem: Dict[str, str] = {}
    for folder in folders:
        if not osp.isdir(folder):
            raise FileNotFoundError(f'Input folder {folder} does not exist')
        for name in sorted(os.listdir(folder)):
            path = osp.join(folder, name)
            if not (is_image_file(name) and osp.isfile(path)):
                continue
            stem = osp.splitext(name)[0]
            if stem in by_stem:
                raise ValueError(f'Images {by_stem[stem]} and {path} have the same name stem {stem!r}; '
                                 'their outputs would overwrite each other. Rename one.')
            by_stem[stem] = path
            paths.append(path)
    if not paths:
        raise FileNotFoundError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in {", ".join(folders)}')
    return paths


def check_output_folder(folder: str, overwrite: bool, create: bool = True) -> None:
    """Refuses a non-empty output folder unless ``overwrite``; creates it if missing and ``create``."""
    if osp.isdir(folder) and os.listdir(folder) and not overwrite:
        raise FileExistsError(f'Output folder {folder} exists and is not empty; '
                              'pass --overwrite to write into it anyway.')
    if osp.exists(folder) and not osp.isdir(folder):
        raise FileExistsError(f'Output path {folder} exists and is not a folder')
    if create:
        os.makedirs(folder, exist_ok=True)


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
