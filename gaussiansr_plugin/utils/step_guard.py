"""Skipping a training step whose loss is not finite, in step on every rank."""
from typing import Optional, Sequence

import torch

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info


def skip_non_finite_step(loss: torch.Tensor, current_iter: int, batch_files: Optional[Sequence[str]] = None) -> bool:
    """Whether this step must be skipped because the loss is NaN/inf on this rank or any other.

    Stepping on a non-finite loss would poison the weights (and EMA). In a distributed run the
    ranks must agree: a rank that skips ``backward`` alone leaves the others waiting forever in
    DDP's gradient all-reduce. So every rank contributes its flag to one all-reduce (a small
    tensor on the loss's device, every step) and all skip, or none. When a step is skipped the
    ranks exchange their losses and batch files, and each rank logs which rank(s) failed, the
    iteration and the files (rank 0 to the log file, the others to stderr).

    Args:
        loss (Tensor): This rank's scalar loss.
        current_iter (int): The iteration, for the log.
        batch_files (Sequence[str], optional): This rank's batch files, for the log.

    Returns:
        bool: True on every rank when any rank's loss is not finite.
    """
    rank, world_size = get_dist_info()
    files = ', '.join(batch_files or [])
    if world_size == 1:
        if torch.isfinite(loss):
            return False
        get_root_logger().error(f'Non-finite loss {loss.item()} at iter {current_iter}; step skipped. '
                                f'Batch files: {files}')
        return True
    flags = torch.zeros(world_size, device=loss.device)
    flags[rank] = (~torch.isfinite(loss.detach())).float()
    torch.distributed.all_reduce(flags)
    bad = flags.nonzero().flatten().tolist()
    if not bad:
        return False
    reports = [None] * world_size
    torch.distributed.all_gather_object(reports, (loss.item(), files))
    details = '; '.join(f'rank {r}: loss {reports[r][0]}, batch files: {reports[r][1]}' for r in bad)
    get_root_logger().error(f'Non-finite loss at iter {current_iter} on rank(s) {bad} of {world_size} ({details}); '
                            f'step skipped on every rank (rank {rank} skips it too).')
    return True
