"""The side-by-side figure of ``compare``: the same HR crop of every method, zoomed, captioned.

Layout: panels left to right (HR, Bicubic, then the methods), each the crop enlarged ``zoom``
times with nearest-neighbour (pixels stay visible), separated and framed by ``MARGIN`` white
pixels, with the caption lines under each panel and one footer line for the whole figure.
Width = n_panels * crop_w * zoom + (n_panels + 1) * MARGIN. Drawn with OpenCV only.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

MARGIN = 8  # white pixels around and between panels
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_FONT_SCALE = 0.5
MIN_FONT_SCALE = 0.25

Crop = Tuple[int, int, int, int]  # x, y, w, h on the HR image


def parse_crop(text: str) -> Crop:
    """``'x,y,w,h'`` -> (x, y, w, h) with non-negative x, y and positive w, h.

    Raises:
        ValueError: naming the ``--crop`` value.
    """
    try:
        x, y, w, h = (int(v) for v in text.split(','))
    except ValueError:
        raise ValueError(f'--crop {text!r}: expected x,y,w,h (integers, HR pixels)') from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ValueError(f'--crop {text!r}: x, y must be >= 0 and w, h >= 1')
    return x, y, w, h


def check_crop(crop: Crop, height: int, width: int, what: str) -> None:
    x, y, w, h = crop
    if x + w > width or y + h > height:
        raise ValueError(f'--crop {x},{y},{w},{h} does not fit {what} ({width}x{height} HR pixels, W x H)')


def worst_bicubic_crop(bicubic: torch.Tensor, hr: torch.Tensor, size: int, border: int = 0) -> Crop:
    """The ``size``² window (inside ``border``) where bicubic's squared error sums highest.

    Args:
        bicubic, hr (Tensor): (3, H, W) images in [0, 1].
        size (int): Window side (clipped to the image).
        border (int): Pixels excluded at each edge (the metric's shave).
    """
    err = ((bicubic.double() - hr.double())**2).sum(0)
    height, width = err.shape
    if height - 2 * border < 1 or width - 2 * border < 1:
        border = 0
    inner = err[border:height - border, border:width - border]
    h_win, w_win = min(size, inner.shape[0]), min(size, inner.shape[1])
    # Window sums from an integral image: every position at once.
    integral = torch.nn.functional.pad(inner.cumsum(0).cumsum(1), (1, 0, 1, 0))
    sums = (integral[h_win:, w_win:] - integral[:-h_win, w_win:] - integral[h_win:, :-w_win] +
            integral[:-h_win, :-w_win])
    top, left = divmod(int(torch.argmax(sums)), sums.shape[1])
    return left + border, top + border, w_win, h_win


def to_bgr_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB float in [0, 1] -> H x W x 3 BGR uint8 (rounded)."""
    rgb = torch.round(img.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _fit_font_scale(lines: Sequence[str], width: int) -> float:
    scale = MAX_FONT_SCALE
    while scale > MIN_FONT_SCALE:
        if all(cv2.getTextSize(line, FONT, scale, 1)[0][0] <= width for line in lines):
            break
        scale -= 0.05
    return max(scale, MIN_FONT_SCALE)


def _line_height(scale: float) -> int:
    (_, text_h), baseline = cv2.getTextSize('Ag', FONT, scale, 1)
    return text_h + baseline + 4


def make_figure(panels: Sequence[Tuple[Sequence[str], np.ndarray]], crop: Crop, zoom: int,
                footer: Optional[str] = None) -> np.ndarray:
    """Draws the figure.

    Args:
        panels: (caption lines, full BGR uint8 image) per panel; every image is cropped at ``crop``.
        crop: (x, y, w, h) on the images.
        zoom (int): Nearest-neighbour enlargement of the crop.
        footer (str, optional): One line under all panels.

    Returns:
        np.ndarray: BGR uint8 figure, n * w * zoom + (n + 1) * MARGIN wide.
    """
    x, y, w, h = crop
    panel_w, panel_h = w * zoom, h * zoom
    captions: List[Sequence[str]] = [lines for lines, _ in panels]
    font_scale = _fit_font_scale([line for lines in captions for line in lines], panel_w)
    line_h = _line_height(font_scale)
    caption_h = line_h * max(len(lines) for lines in captions)
    width = len(panels) * panel_w + (len(panels) + 1) * MARGIN
    footer_scale = _fit_font_scale([footer], width - 2 * MARGIN) if footer else font_scale
    footer_h = _line_height(footer_scale) if footer else 0
    height = MARGIN + panel_h + 4 + caption_h + footer_h + MARGIN
    figure = np.full((height, width, 3), 255, np.uint8)
    for i, (lines, img) in enumerate(panels):
        left = MARGIN + i * (panel_w + MARGIN)
        patch = img[y:y + h, x:x + w]
        figure[MARGIN:MARGIN + panel_h, left:left + panel_w] = cv2.resize(
            patch, (panel_w, panel_h), interpolation=cv2.INTER_NEAREST)
        for j, line in enumerate(lines):
            baseline_y = MARGIN + panel_h + 4 + (j + 1) * line_h - 4
            cv2.putText(figure, line, (left, baseline_y), FONT, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    if footer:
        cv2.putText(figure, footer, (MARGIN, height - MARGIN - 4), FONT, footer_scale, (80, 80, 80), 1, cv2.LINE_AA)
    return figure
