"""Reading images with one clear error per bad file, and the naming conventions of image sets."""
from typing import Optional

import cv2
import numpy as np
import torch

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


def scale_name(scale: float) -> str:
    """2.0 -> '2', 2.5 -> '2.5': how benchmark folders and files name a scale (``X2``, ``babyx2``)."""
    return str(int(scale)) if float(scale).is_integer() else f'{scale:g}'


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def check_image(img, name: str) -> np.ndarray:
    """Checks an image as OpenCV decodes it (``IMREAD_UNCHANGED``) and drops an opaque alpha.

    Returns the pixels as stored otherwise (BGR or gray, 8 or 16 bit). An alpha channel with
    transparent pixels is rejected: compositing over some background would invent data.

    Raises:
        ImageError: Undecodable (``img`` is None), unsupported pixel type or channel count,
            or transparent pixels. The message names ``name``.
    """
    if img is None:
        raise ImageError(f'Cannot read image {name}: the file is empty, truncated or not an image.')
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f'Image {name} has unsupported pixel type {img.dtype}; expected 8 or 16 bit.')
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageError(f'Image {name} has {channels} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA).')
    if channels in (2, 4):
        if img[:, :, -1].min() < np.iinfo(img.dtype).max:
            raise ImageError(f'Image {name} has transparent pixels (alpha channel); convert it to RGB first.')
        img = img[:, :, :-1]
    return img


def to_bgr(img: np.ndarray) -> np.ndarray:
    """A checked image (``check_image``) as H x W x 3 BGR: gray is repeated."""
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


def strip_png_color_profile(data: bytes) -> bytes:
    """``data`` without its PNG ``iCCP`` chunk (embedded colour profile); other bytes unchanged.

    OpenCV returns the stored values and never applies a colour profile, so the pixels stay
    identical; but libpng validates the profile and prints ``libpng warning: iCCP: ...`` to
    stderr for a malformed one (scikit-image's page.png, read by the demo), which users take
    for an error. Only the chunks before the image data are walked (iCCP must precede IDAT).
    """
    if not data.startswith(PNG_SIGNATURE):
        return data
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + int.from_bytes(data[pos:pos + 4], 'big')  # length, type, data, CRC
        if kind == b'iCCP' and end <= len(data):
            return data[:pos] + data[end:]
        if kind == b'IDAT':
            break
        pos = end
    return data


def decode_image(data: bytes) -> Optional[np.ndarray]:
    """``cv2.imdecode(..., IMREAD_UNCHANGED)`` of a file's bytes, without libpng's colour-profile
    warnings (see ``strip_png_color_profile``); None when ``data`` is empty or undecodable."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(strip_png_color_profile(data), np.uint8), cv2.IMREAD_UNCHANGED)


def read_image(path: str, to_color: bool = True) -> np.ndarray:
    """Reads an image file as OpenCV does (BGR, uint8/uint16), checked (see ``check_image``).

    Args:
        to_color (bool): Return H x W x 3 BGR (gray repeated); else the pixels as stored.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:  # missing or unreadable: check_image names the file
        data = b''
    img = check_image(decode_image(data), path)
    return to_bgr(img) if to_color else img


def decode_rgb(data: bytes, name: str) -> torch.Tensor:
    """Decodes image bytes to a (3, H, W) float32 RGB tensor in [0, 1] (16-bit scaled by 65535).

    Args:
        data (bytes): The file's contents.
        name (str): The file name or LMDB key, used in error messages.
    """
    img = to_bgr(check_image(decode_image(data), repr(name)))[:, :, ::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32))
    return tensor / np.iinfo(img.dtype).max
