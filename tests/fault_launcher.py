"""``basicsr`` that stops or dies at one chosen point of training, for the kill/resume tests: the
fault lands at the same place on every machine, however fast or loaded (no sleep, no race).

    FAULT_AT=iter:18 FAULT_ACTION=stop python tests/fault_launcher.py train -opt X.yml
    FAULT_AT=state:20 FAULT_ACTION=kill FAULT_RANKS=1 \\
        torchrun --standalone --nproc_per_node=2 tests/fault_launcher.py train -opt X.yml --launcher pytorch

``FAULT_AT``:
    ``iter:N``: at the start of iteration N (in ``update_learning_rate``, BasicSR's first call of
    an iteration, for every model type): iteration N-1 is complete and logged, N has not begun.
    ``state:N``: right after the training state of iteration N is saved; in a distributed run
    after a barrier, so the file is complete on disk whichever rank the fault hits.
``FAULT_ACTION``:
    ``stop``: the process writes its pid to ``FAULT_DIR/stopped-<rank>`` and SIGSTOPs itself; the
    test then SIGKILLs the whole job at once (a lost node; see ``job_control.kill_job``).
    ``kill``: the process SIGKILLs itself (one rank lost; torchrun sees it fail).
``FAULT_RANKS``: comma-separated ranks the fault hits (default: every rank).

The fault is armed only in the first attempt of a torchrun job (``TORCHELASTIC_RESTART_COUNT``
0 or unset): the attempts torchrun restarts after it run to the end. Without ``FAULT_AT`` this is
plain ``basicsr``.
"""
import os
import signal
from pathlib import Path

from gaussiansr_plugin.cli import main  # first: the plugin patches BasicSR before it is imported
from basicsr.models.base_model import BaseModel


def _rank() -> int:
    return int(os.environ.get('RANK', '0'))


def _fault() -> None:
    ranks = os.environ.get('FAULT_RANKS')
    if ranks is not None and str(_rank()) not in ranks.split(','):
        return
    if os.environ['FAULT_ACTION'] == 'stop':
        marker = Path(os.environ['FAULT_DIR']) / f'stopped-{_rank()}'
        marker.with_suffix('.tmp').write_text(str(os.getpid()))
        os.replace(marker.with_suffix('.tmp'), marker)  # the test never reads a half-written pid
        os.kill(os.getpid(), signal.SIGSTOP)
        raise AssertionError('continued after SIGSTOP: the test must SIGKILL the job')
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, iteration: int) -> None:
    if point == 'iter':
        update_learning_rate = BaseModel.update_learning_rate

        def update_learning_rate_then_fault(self, current_iter, warmup_iter=-1):
            if current_iter == iteration:
                _fault()
            return update_learning_rate(self, current_iter, warmup_iter)

        BaseModel.update_learning_rate = update_learning_rate_then_fault
    elif point == 'state':
        save_training_state = BaseModel.save_training_state

        def save_training_state_then_fault(self, epoch, current_iter):
            save_training_state(self, epoch, current_iter)  # rank 0 writes; every rank calls it
            if current_iter == iteration:
                import torch.distributed as dist
                if dist.is_initialized():
                    dist.barrier()  # rank 0 has written the state before any rank faults
                _fault()

        BaseModel.save_training_state = save_training_state_then_fault
    else:
        raise ValueError(f'FAULT_AT: unknown point {point!r} (iter:N or state:N)')


if __name__ == '__main__':
    if os.environ.get('FAULT_AT') and os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0':
        # Armed on every rank (the barrier of state:N needs them all); _fault picks the ranks.
        point, iteration = os.environ['FAULT_AT'].split(':')
        _arm(point, int(iteration))
    main()
