"""The kernels a GaussianSR network selects over an image, and the figures of them at validation.

The kernel selected at an LR pixel is the classifier's argmax (what eval uses with
``eval_kernel: argmax``), computed tile by tile (exact: tiles carry the encoder's and the
classifier's receptive field). ``basicsr explain`` writes the figures as PNGs;
``ArbitraryScaleSRModel`` logs them to TensorBoard at each validation of a GaussianSR.
"""
from typing import Any

import torch

from ..archs.arch_util import at_least_float32, conv_reach, encoder_reach
from ..archs.gaussiansr_arch import GaussianSR
from ..render.tiling import DEFAULT_TILE, tiled_lr_map
from ..utils.precision import autocast
from .figures import KernelStats, draw_all


def has_gaussians(net: torch.nn.Module) -> bool:
    """Whether ``net`` is a GaussianSR with a Gaussian stream (``num_gs_feat`` > 0)."""
    return isinstance(net, GaussianSR) and getattr(net, 'classifier', None) is not None


@torch.no_grad()
def kernel_stats(net: GaussianSR, lq: torch.Tensor, tile: int = DEFAULT_TILE, precision: str = 'fp32') -> KernelStats:
    """The bank and the kernel the classifier selects at every LR pixel of ``lq`` (1, 3, h, w) in [0, 1],
    the encoder and the classifier at ``precision`` (``utils/precision.py``)."""
    was_training = net.training
    net.eval()
    param = next(net.parameters())
    pad = encoder_reach(net.encoder) + conv_reach(net.classifier)

    def select(x: torch.Tensor) -> torch.Tensor:  # (1, 2, h, w): the argmax kernel, its probability
        with autocast(param.device, precision):
            logits = net.classifier(net.encoder(x))
        probs = torch.softmax(at_least_float32(logits), dim=1)  # as GaussianSR.kernel_params in eval
        return torch.cat([logits.argmax(1, keepdim=True).to(probs.dtype), probs.amax(1, keepdim=True)], dim=1)

    selected = tiled_lr_map(lq.to(param.dtype), select, pad, tile, param.device)
    bank = net.bank().double().cpu().numpy()
    net.train(was_training)
    image = lq[0].permute(1, 2, 0).clamp(0, 1).double().cpu().numpy()
    return KernelStats(bank=bank, labels=selected[0, 0].long().numpy(), image=image,
                       sigma_range=(net.bank.sigma_min, net.bank.sigma_max), max_prob=selected[0, 1].numpy())


def log_validation_figures(net: torch.nn.Module, dataset: Any, tb_logger: Any, current_iter: int) -> None:
    """Logs the figures for the first image of a validation set to TensorBoard (GaussianSR only)."""
    if tb_logger is None or not has_gaussians(net) or len(dataset) == 0:
        return
    lq = dataset[0]['lq'].unsqueeze(0)
    name = dataset.opt.get('name', 'val')
    for figure, img in draw_all(kernel_stats(net, lq)).items():
        tb_logger.add_image(f'explain_{name}/{figure}', img, current_iter, dataformats='HWC')
