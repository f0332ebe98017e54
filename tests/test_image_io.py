"""Reading PNGs with a malformed colour profile: no libpng warning on stderr, the same pixels."""
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from gaussiansr_plugin.utils.image_io import decode_image, decode_rgb, read_image


def _png_with_malformed_color_profile() -> bytes:
    """A small PNG whose iCCP chunk holds a profile libpng rejects (it warns and ignores it)."""
    img = np.random.RandomState(0).randint(0, 256, (9, 7, 3), dtype=np.uint8)
    encoded = cv2.imencode('.png', img)[1].tobytes()
    profile = bytearray(132)
    profile[0:4] = (132).to_bytes(4, 'big')  # declared size
    profile[36:40] = b'acsp'
    profile[64:68] = (0x1000000).to_bytes(4, 'big')  # rendering intent out of range, as in page.png
    payload = b'ICC Profile\x00\x00' + zlib.compress(bytes(profile))
    chunk = len(payload).to_bytes(4, 'big') + b'iCCP' + payload + zlib.crc32(b'iCCP' + payload).to_bytes(4, 'big')
    ihdr_end = 8 + 25  # signature, then the IHDR chunk (length, type, 13 bytes, CRC)
    return encoded[:ihdr_end] + chunk + encoded[ihdr_end:]


def _plain_decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize('source', ['synthetic', 'page.png'])
def test_png_with_malformed_color_profile_reads_silently_with_identical_pixels(source, tmp_path, capfd):
    if source == 'synthetic':
        data = _png_with_malformed_color_profile()
    else:  # the demo's scikit-image photo that made `basicsr train` print libpng warnings
        data = (Path(skimage.data.__file__).parent / source).read_bytes()
    expected = _plain_decode(data)
    path = tmp_path / 'profile.png'
    path.write_bytes(data)
    capfd.readouterr()

    decoded = decode_image(data)
    from_file = read_image(str(path), to_color=False)
    tensor = decode_rgb(data, str(path))

    captured = capfd.readouterr()
    assert captured.err == '' and captured.out == ''
    assert np.array_equal(decoded, expected)
    assert np.array_equal(from_file, expected)
    bgr = expected if expected.ndim == 3 else np.repeat(expected[:, :, None], 3, axis=2)
    assert np.array_equal((tensor.numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0), bgr[:, :, ::-1])
