"""The side-by-side figure of the benchmark: the same HR crop of every method, zoomed, captioned.

While evaluating, a ``FigureCapture`` keeps the outputs of the figure's image (one set, scale
and image); ``draw_figure`` then writes it. Layout: panels left to right (HR, Bicubic, then the
methods), each the crop enlarged ``zoom`` times with nearest-neighbour (pixels stay visible),
separated and framed by ``MARGIN`` white pixels, with the caption lines under each panel and one
footer line for the whole figure. Width = n_panels * crop_w * zoom + (n_panels + 1) * MARGIN.
Drawn with OpenCV only.
"""
import math
import sys
from dataclasses import dataclass
from os import path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from gaussiansr_plugin.benchmark.methods import BICUBIC
from gaussiansr_plugin.utils.file_io import atomic_imwrite
from gaussiansr_plugin.utils.image_io import scale_name

MARGIN = 8  # white pixels around and between panels
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_FONT_SCALE = 0.5
MIN_FONT_SCALE = 0.25

Crop = Tuple[int, int, int, int]  # x, y, w, h on the HR image


@dataclass
class FigureTarget:
    set_name: str
    image: Optional[str]  # file stem; None: the set's first image
    scale: float


@dataclass
class FigureCapture:
    """The outputs of the figure's image, kept while evaluating."""
    target: FigureTarget
    image: str = ''
    protocol: str = ''
    shave: int = 0
    hr: Optional[torch.Tensor] = None
    outputs: Optional[Dict[str, torch.Tensor]] = None
    psnr: Optional[Dict[str, float]] = None

    def wants(self, set_name: str, scale: float, image: str) -> bool:
        """Whether ``image`` of ``set_name`` at ``scale`` is the figure's (the first match only)."""
        return (self.outputs is None and self.target.set_name == set_name and math.isclose(self.target.scale, scale)
                and self.target.image in (None, image))

    def keep(self, image: str, hr: torch.Tensor, outputs: Dict[str, torch.Tensor], psnr: Dict[str, float],
             y_channel: bool, shave: int) -> None:
        """Records the figure's image: HR and method outputs (3, H, W) and the PSNR under its protocol."""
        self.image, self.hr, self.outputs, self.psnr = image, hr, outputs, psnr
        self.protocol = f'{"Y" if y_channel else "RGB"}, shave {shave}'
        self.shave = shave


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


def draw_figure(capture: FigureCapture, names: Sequence[str], out: str, crop_text: Optional[str], crop_size: int,
                zoom: int) -> Optional[str]:
    """Writes the figure PNG of ``capture`` into ``out``; returns its path (None when nothing was
    captured).

    Args:
        names: Methods in panel order (those without an output at the figure's scale are left out).
        crop_text (str, optional): ``--crop`` x,y,w,h; None: the ``crop_size``² window where bicubic
            errs most.
    """
    if capture.outputs is None:
        print(f'No figure: set {capture.target.set_name!r} has no image {capture.target.image!r} evaluated at '
              f'x{capture.target.scale:g}', file=sys.stderr)
        return None
    hr = capture.hr
    height, width = hr.shape[-2:]
    what = f'{capture.target.set_name} {capture.image} at x{capture.target.scale:g}'
    if crop_text:
        crop = parse_crop(crop_text)
        check_crop(crop, height, width, what)
    else:
        crop = worst_bicubic_crop(capture.outputs[BICUBIC], hr, crop_size, capture.shave)
    panels = [(['HR'], to_bgr_uint8(hr))]
    for name in names:
        if name in capture.outputs:
            panels.append(([name, f'{capture.psnr[name]:.2f} dB'], to_bgr_uint8(capture.outputs[name])))
    x, y, w, h = crop
    footer = (f'{what}, crop x={x} y={y} {w}x{h} zoomed x{zoom}; '
              f'PSNR of the full image ({capture.protocol})')
    figure = make_figure(panels, crop, zoom, footer)
    path = osp.join(out, f'figure_{capture.target.set_name}_{capture.image}_x{scale_name(capture.target.scale)}.png')
    atomic_imwrite(figure, path)
    return path
