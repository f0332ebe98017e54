"""Figures of a GaussianSR network's Gaussian bank and of its kernel choices over an image (paper Fig. 6-8).

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display), each at a
fixed pixel size (``FIGURE_SIZES``) and returned as an RGB uint8 array, so that the same
pictures go to PNG files (``basicsr explain``) and to TensorBoard (validation).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, hsv_to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from ..archs.gaussiansr_arch import RHO_MAX

DPI = 100
# (width, height) in pixels of every figure.
FIGURE_SIZES = {
    'bank_kernels': (1200, 1200),
    'bank_histograms': (1200, 800),
    'kernel_usage': (1200, 600),
    'kernel_map': (1600, 440),
}
# Share of the LR pixels the "dominant" kernels must cover (the paper: fewer than 20 kernels dominate).
COVERAGE = 0.9
TOP_COLOURS = 20


@dataclass
class KernelStats:
    """The bank (K, 4: σx, σy, ρ, opacity, LR pixels) and the kernel selected at each LR pixel of an image."""
    bank: np.ndarray
    labels: np.ndarray  # (h, w) int: argmax of the classifier
    image: np.ndarray  # (h, w, 3) RGB in [0, 1]: the LR input
    sigma_range: Tuple[float, float]  # the bank's allowed σ
    # (h, w): the classifier's softmax probability of the selected kernel (validation's
    # ``kernel_max_prob`` is its mean over the LR pixels of a set)
    max_prob: Optional[np.ndarray] = None

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels.ravel(), minlength=len(self.bank))

    def dominant(self, coverage: float = COVERAGE) -> int:
        """How many kernels (most used first) cover ``coverage`` of the LR pixels."""
        shares = np.sort(self.counts)[::-1] / self.labels.size
        return int(np.searchsorted(np.cumsum(shares), coverage - 1e-12) + 1)


def principal_axes(sigma_x: np.ndarray, sigma_y: np.ndarray, rho: np.ndarray) -> Tuple[np.ndarray, ...]:
    """(major σ, minor σ, angle of the major axis in degrees from the x axis) of Σ = [[σx², ρσxσy], [ρσxσy, σy²]]."""
    a, b, c = sigma_x**2, rho * sigma_x * sigma_y, sigma_y**2
    half_diff = np.sqrt(((a - c) / 2)**2 + b**2)
    major, minor = (a + c) / 2 + half_diff, np.maximum((a + c) / 2 - half_diff, 0)
    return np.sqrt(major), np.sqrt(minor), np.degrees(0.5 * np.arctan2(2 * b, a - c))


def _new_figure(name: str) -> Figure:
    width, height = FIGURE_SIZES[name]
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def figure_rgb(fig: Figure) -> np.ndarray:
    """The figure drawn on the Agg canvas, as an (H, W, 3) RGB uint8 array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def draw_bank_kernels(stats: KernelStats) -> np.ndarray:
    """Every kernel as its 2σ ellipse (image orientation: y down), most selected first; fill opacity =
    the kernel's opacity, colour = its share of the LR pixels; caption σx, σy, ρ, opacity."""
    fig = _new_figure('bank_kernels')
    ax = fig.add_axes((0.01, 0.01, 0.9, 0.94))
    order = np.argsort(-stats.counts, kind='stable')
    shares = stats.counts / stats.labels.size
    cols = int(np.ceil(np.sqrt(len(order))))
    cell = 5.6 * stats.sigma_range[1]  # a 2σ ellipse spans at most 4 σ_max
    colours = matplotlib.colormaps['viridis'](shares / max(shares.max(), 1e-12))
    major, minor, angle = principal_axes(*stats.bank[:, :3].T)
    for slot, k in enumerate(order):
        cx, cy = (slot % cols) * cell, (slot // cols) * cell
        sx, sy, rho, opacity = stats.bank[k]
        ax.add_patch(Ellipse((cx, cy), 4 * major[k], 4 * minor[k], angle=angle[k], facecolor=colours[k],
                             alpha=float(opacity), edgecolor='black', linewidth=0.6))
        ax.text(cx, cy + 0.42 * cell, f'#{k} {shares[k]:.1%}\n{sx:.2f} {sy:.2f} {rho:+.2f} {opacity:.2f}',
                ha='center', va='center', fontsize=5.5)
    rows = int(np.ceil(len(order) / cols))
    ax.set_xlim(-cell / 2, (cols - 0.5) * cell)
    ax.set_ylim((rows - 0.5) * cell, -cell / 2)  # y down, as in the image
    ax.set_aspect('equal')
    ax.axis('off')
    fig.suptitle(f'Gaussian bank ({len(order)} kernels, 2σ ellipses, most selected first). '
                 'Caption: #index share | σx σy ρ opacity (LR px); fill: opacity; colour: share', fontsize=10)
    mappable = ScalarMappable(cmap='viridis', norm=Normalize(0, shares.max()))
    fig.colorbar(mappable, cax=fig.add_axes((0.93, 0.1, 0.02, 0.8)), label='share of LR pixels')
    return figure_rgb(fig)


def draw_bank_histograms(stats: KernelStats) -> np.ndarray:
    """Histograms of σx, σy, ρ and opacity over the bank, and weighted by how often each kernel is selected."""
    fig = _new_figure('bank_histograms')
    weights = stats.counts / stats.labels.size
    names = ('σx (LR px)', 'σy (LR px)', 'ρ', 'opacity')
    ranges = (stats.sigma_range, stats.sigma_range, (-RHO_MAX, RHO_MAX), (0, 1))  # what each may take
    for i, (name, value_range) in enumerate(zip(names, ranges)):
        ax = fig.add_subplot(2, 2, i + 1)
        values = stats.bank[:, i]
        bins = np.linspace(*value_range, 21)
        ax.hist(values, bins=bins, weights=np.full(len(values), 1 / len(values)), color='tab:blue', alpha=0.6,
                label='bank (each kernel once)')
        ax.hist(values, bins=bins, weights=weights, histtype='step', color='tab:red', linewidth=2,
                label='as selected over the image')
        ax.set_xlabel(name)
        ax.set_ylabel('fraction')
        ax.legend(fontsize=8)
    fig.suptitle(f'Gaussian bank parameters ({len(stats.bank)} kernels)')
    fig.tight_layout()
    return figure_rgb(fig)


def draw_kernel_usage(stats: KernelStats) -> np.ndarray:
    """How often each kernel is selected over the image, sorted, with the cumulative share."""
    fig = _new_figure('kernel_usage')
    ax = fig.add_subplot(1, 1, 1)
    shares = np.sort(stats.counts)[::-1] / stats.labels.size
    ranks = np.arange(1, len(shares) + 1)
    ax.bar(ranks, shares, color='tab:blue')
    ax.set_xlabel('kernel rank (most selected first)')
    ax.set_ylabel('share of LR pixels')
    twin = ax.twinx()
    twin.plot(ranks, np.cumsum(shares), color='tab:red')
    twin.set_ylim(0, 1.02)
    twin.set_ylabel('cumulative share', color='tab:red')
    dominant = stats.dominant()
    twin.axvline(dominant, color='gray', linestyle='--')
    used = int((stats.counts > 0).sum())
    ax.set_title(f'Kernel selection over {stats.labels.size:,} LR pixels: {used} of {len(shares)} kernels used, '
                 f'{dominant} cover {COVERAGE:.0%}')
    fig.tight_layout()
    return figure_rgb(fig)


def draw_kernel_map(stats: KernelStats) -> np.ndarray:
    """The LR image beside the selected kernel, its size sqrt(σx σy) and its orientation per LR pixel."""
    fig = _new_figure('kernel_map')
    order = np.argsort(-stats.counts, kind='stable')
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    ranked = rank[stats.labels]
    palette = matplotlib.colormaps['tab20'](np.arange(TOP_COLOURS))[:, :3]
    kernel_rgb = np.where(ranked[..., None] < TOP_COLOURS, palette[np.minimum(ranked, TOP_COLOURS - 1)], 0.5)
    sx, sy, rho = (stats.bank[stats.labels, i] for i in range(3))
    major, minor, angle = principal_axes(sx, sy, rho)
    anisotropy = 1 - minor / np.maximum(major, 1e-12)
    orientation = hsv_to_rgb(np.stack([(angle % 180) / 180, anisotropy, np.ones_like(angle)], -1))
    panels = [('LR image', stats.image, None), (f'selected kernel (top {TOP_COLOURS} coloured, rest gray)',
                                                kernel_rgb, None),
              ('kernel size sqrt(σx σy), LR px', np.sqrt(sx * sy), 'viridis'),
              ('orientation (hue: angle of the major axis, saturation: anisotropy)', orientation, None)]
    for i, (title, img, cmap) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        shown = ax.imshow(img, cmap=cmap, interpolation='nearest')
        if cmap:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(title, fontsize=9, wrap=True)
        ax.axis('off')
    fig.tight_layout()
    return figure_rgb(fig)


def draw_all(stats: KernelStats) -> Dict[str, np.ndarray]:
    """Every figure, by name (the keys of ``FIGURE_SIZES``)."""
    return {'bank_kernels': draw_bank_kernels(stats), 'bank_histograms': draw_bank_histograms(stats),
            'kernel_usage': draw_kernel_usage(stats), 'kernel_map': draw_kernel_map(stats)}
