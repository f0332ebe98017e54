"""Input and output folders of the commands and tools: listing the images of input folders, and
refusing to write into an earlier run's output."""
import os
from os import path as osp
from typing import Dict, List, Sequence

from .image_io import IMAGE_EXTENSIONS, is_image_file


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
