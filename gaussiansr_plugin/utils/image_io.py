"""Decoding images into RGB float tensors, with one clear error per bad file."""
import cv2
import numpy as np
import torch


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


def decode_rgb(data: bytes, name: str) -> torch.Tensor:
    """Decodes encoded image bytes to a (3, H, W) float32 RGB tensor in [0, 1].

    Grayscale images are repeated to three channels; 16-bit images are scaled by 65535; an
    alpha channel is dropped when fully opaque and rejected otherwise (compositing over an
    arbitrary background would invent data).

    Args:
        data (bytes): The file's contents.
        name (str): The file name or LMDB key, used in error messages.

    Raises:
        ImageError: Undecodable data, an unsupported layout or a translucent alpha channel.
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise ImageError(f'Cannot decode image {name!r}: the file is empty, truncated or not an image.')
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ImageError(f'Image {name!r} has unsupported pixel type {img.dtype}; expected 8 or 16 bit.')
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (2, 4):  # gray+alpha or BGRA
        alpha = img[:, :, -1]
        if alpha.min() < (255 if img.dtype == np.uint8 else 65535):
            raise ImageError(f'Image {name!r} has transparent pixels (alpha channel); convert it to RGB first.')
        img = img[:, :, :-1]
        channels -= 1
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    else:
        raise ImageError(f'Image {name!r} has {channels} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA).')
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32))
    return tensor / scale
