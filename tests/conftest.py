"""Shared test set-up: few threads (the CI machine has 2 cores), the plugin registered, tiny configs."""
import os

os.environ.setdefault('OMP_NUM_THREADS', '2')

from pathlib import Path  # noqa: E402

import gaussiansr_plugin  # noqa: E402,F401  (compat shim + registration)
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))

SHARED_DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'
# A GaussianSR small enough for unit tests; every feature of the full model is exercised. rgb_skip
# (ours, off by default) is on, as it was before it became an option: these nets start at bicubic.
TINY_GAUSSIANSR = dict(num_feat=16, num_block=2, num_kernels=16, num_gs_feat=4, hidden_list=[32, 32], rgb_skip=True)


# Tests that take ``device`` run on the CPU and, where CUDA is present, on the GPU too
# (scripts/gpu_check.sh runs the suite there).
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f'shared data not found at {SHARED_DATA}')
    return SHARED_DATA
