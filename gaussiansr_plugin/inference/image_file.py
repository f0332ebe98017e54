"""The images ``basicsr upscale`` reads and writes: any depth, gray, alpha, EXIF orientation.

Reading decodes with OpenCV as stored (8 or 16 bit, gray or colour, alpha kept) after checking
what OpenCV would get wrong or die on: a header claiming more pixels than OpenCV decodes (it
raises), a truncated JPEG (libjpeg fills the missing part with gray and only warns), EXIF
orientation (ignored by ``IMREAD_UNCHANGED``). Every problem is one ``ImageError`` naming the file.

Writing goes through ``OutputCanvas``: the output image in its final integer type, filled chunk
by chunk by the renderer (colour from the network; gray inputs get the mean of its RGB; alpha is
the input's, resized bicubically), then encoded and renamed into place atomically.
"""
import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np
import torch
from PIL import Image

from ..utils.file_io import temp_path_for
from ..utils.image_io import ImageError, check_image, decode_image

# Formats OpenCV writes at 16 bits, and with an alpha channel.
DEEP_FORMATS = ('.png', '.tif', '.tiff')
ALPHA_FORMATS = ('.png', '.webp', '.tif', '.tiff')
WRITABLE_FORMATS = ('.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp')
EXIF_IN_HEADER = ('JPEG', 'MPO', 'TIFF', 'WEBP')
# EXIF orientation -> the array operation that shows the image upright (PIL's exif_transpose).
ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


@dataclass
class InputImage:
    """A decoded input: ``color`` H x W x 3 BGR or H x W gray, ``alpha`` H x W or None (same dtype)."""
    path: str
    color: np.ndarray
    alpha: Optional[np.ndarray]

    @property
    def gray(self) -> bool:
        return self.color.ndim == 2

    @property
    def size(self) -> Tuple[int, int]:
        return self.color.shape[:2]

    def tensor(self) -> torch.Tensor:
        """(1, 3, h, w) float32 RGB in [0, 1] (16-bit scaled by 65535, gray repeated)."""
        img = self.color if not self.gray else np.repeat(self.color[:, :, None], 3, axis=2)
        rgb = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))).float()
        return (rgb / float(np.iinfo(self.color.dtype).max)).unsqueeze(0)


def max_input_pixels() -> int:
    """OpenCV's decoding limit (it raises above it): ``OPENCV_IO_MAX_IMAGE_PIXELS``, default 2^30."""
    value = os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS', '')
    return int(value) if value.isdigit() else 1 << 30


def _header(data: bytes) -> Optional[Tuple[str, Tuple[int, int], int]]:
    """(format, (width, height), EXIF orientation) from the file's header, without decoding
    the pixels; None when Pillow does not recognize the file (OpenCV may still)."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here; the size is checked by the caller
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(io.BytesIO(data)) as img:
                # Pillow finds a PNG's EXIF only by decoding the pixels; the others keep it in the header.
                exif = img.getexif() if img.format in EXIF_IN_HEADER else {}
                return img.format, img.size, int(exif.get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001  (Pillow raises many types for files it cannot parse)
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@contextlib.contextmanager
def _opencv_errors_only() -> Iterator[None]:
    logging = getattr(getattr(cv2, 'utils', None), 'logging', None)  # absent from some OpenCV builds
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def read_input(path: str) -> InputImage:
    """Reads an image file for upscaling (see the module docstring).

    Raises:
        ImageError: Unreadable, empty, undecodable, truncated, too large or of an unsupported
            type; the message names the file.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise ImageError(f'Cannot read {path}: {err.strerror}') from err
    if not data:
        raise ImageError(f'Cannot read image {path}: the file is empty')
    header = _header(data)
    orientation = 1
    if header is not None:
        kind, (width, height), orientation = header
        if width * height > max_input_pixels():
            raise ImageError(f'Image {path} claims {width}x{height} pixels, more than the {max_input_pixels()} '
                             'OpenCV decodes (OPENCV_IO_MAX_IMAGE_PIXELS)')
        # Entropy-coded data never holds FF D9, so a complete JPEG has its end marker after its last scan.
        if kind == 'JPEG' and data.rfind(b'\xff\xd9') < data.rfind(b'\xff\xda'):
            raise ImageError(f'Image {path} is a truncated JPEG (no end-of-image marker after its last scan)')
    try:
        with _opencv_errors_only():  # our one line replaces OpenCV's warnings
            img = decode_image(data)
    except cv2.error:
        img = None
    if img is not None and orientation in ORIENTATIONS:
        img = np.ascontiguousarray(ORIENTATIONS[orientation](img))
    alpha = None
    if img is not None and img.ndim == 3 and img.shape[2] in (2, 4):
        img, alpha = img[:, :, :-1], np.ascontiguousarray(img[:, :, -1])
        img = img[:, :, 0] if img.shape[2] == 1 else img
    color = check_image(img, path)
    color = color[:, :, 0] if color.ndim == 3 and color.shape[2] == 1 else color
    return InputImage(path, np.ascontiguousarray(color), alpha)


def output_extension(input_path: str, ext: str, has_alpha: bool) -> str:
    """The output format: ``ext`` ('auto': the input's, PNG if OpenCV cannot write that), PNG for
    alpha in a format without it (as Real-ESRGAN does)."""
    chosen = os.path.splitext(input_path)[1].lower() if ext == 'auto' else '.' + ext.lower().lstrip('.')
    if chosen not in WRITABLE_FORMATS:
        chosen = '.png'
    if has_alpha and chosen not in ALPHA_FORMATS:
        chosen = '.png'
    return chosen


class OutputCanvas:
    """One output image in its final integer type, filled by ``put`` (the renderer's sink)."""

    def __init__(self, image: InputImage, size: Tuple[int, int], extension: str) -> None:
        height, width = size
        self.dtype, channels = self.layout(image, extension)
        self.color_channels = 1 if image.gray else 3
        self.pixels = np.empty((height, width, channels), self.dtype)
        if image.alpha is not None:
            alpha = cv2.resize(image.alpha, (width, height), interpolation=cv2.INTER_CUBIC)
            if alpha.dtype != self.dtype:  # 16-bit alpha into an 8-bit format
                alpha = np.round(alpha / 257.0).astype(self.dtype)
            self.pixels[:, :, -1] = alpha

    @staticmethod
    def layout(image: InputImage, extension: str) -> Tuple[type, int]:
        """(dtype, channels) of an output of ``image`` in ``extension``'s format: 16 bits for 16-bit
        inputs where the format allows, gray stays gray, alpha is kept."""
        deep = image.color.dtype == np.uint16 and extension in DEEP_FORMATS
        return (np.uint16 if deep else np.uint8), (1 if image.gray else 3) + (image.alpha is not None)

    def put(self, row0: int, row1: int, col0: int, col1: int, rgb: torch.Tensor) -> None:
        """Stores RGB (rows, cols, 3) in [0, 1] units (clamped, rounded) at the given rows and columns."""
        rgb = rgb.clamp(0, 1)
        values = rgb.mean(-1, keepdim=True) if self.color_channels == 1 else rgb.flip(-1)  # OpenCV: BGR
        values = (values * float(np.iinfo(self.dtype).max)).round_().to(torch.int32).cpu().numpy()
        self.pixels[row0:row1, col0:col1, :self.color_channels] = values

    def write(self, path: str) -> None:
        """Encodes to ``path``'s format under a temporary name, then renames it into place.

        ``cv2.imwrite`` encodes into the file as it goes; ``atomic_imwrite`` (``cv2.imencode``)
        would hold the whole encoded file, twice, beside the pixels: 0.3 GB more for an 8192²
        output. The temporary name keeps the extension, which tells OpenCV the format.
        """
        pixels = self.pixels[:, :, 0] if self.pixels.shape[2] == 1 else self.pixels
        temp_path = temp_path_for(path) + os.path.splitext(path)[1]
        try:
            if not cv2.imwrite(temp_path, pixels):
                raise OSError(f'Cannot write {path} (OpenCV could not encode it)')
            with open(temp_path, 'rb+') as f:
                os.fsync(f.fileno())
            os.replace(temp_path, path)
        finally:
            if os.path.exists(temp_path):
                os.remove(temp_path)
