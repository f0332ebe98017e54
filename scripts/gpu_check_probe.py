"""Run by scripts/gpu_check.py with the Python it checks: imports what the steps need and prints
one JSON line describing the machine (GPU, torch, CUDA, cuDNN, NCCL, Python, the distributed
backend the plugin picks). A version that cannot be read is reported as null, not an error."""
import json
import os
import platform

import torch

import gaussiansr_plugin  # noqa: I100  (first: its shim makes `import basicsr` work with a recent torchvision)
import basicsr  # noqa: E402,I100
import lmdb  # noqa: E402
from gaussiansr_plugin.compat import choose_dist_backend  # noqa: E402


def _read(get):
    try:
        return get()
    except Exception:  # noqa: BLE001  (an unreadable version is reported as unknown)
        return None


def describe() -> dict:
    cuda = torch.cuda.is_available()
    info = {'gpu': None, 'capability': None, 'gpu_memory_gib': None, 'nccl': None, 'bf16': False}
    if cuda:
        info.update(gpu=torch.cuda.get_device_name(0),
                    capability='sm_%d%d' % torch.cuda.get_device_capability(0),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    gpus=torch.cuda.device_count(),
                    nccl=_read(lambda: '.'.join(map(str, torch.cuda.nccl.version()))),
                    bf16=_read(torch.cuda.is_bf16_supported))
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cudnn=_read(torch.backends.cudnn.version),
                dist_backend=choose_dist_backend(None), python=platform.python_version(), cpus=os.cpu_count(),
                basicsr=basicsr.__version__, lmdb=lmdb.__version__, plugin=gaussiansr_plugin.__file__)
    return info


if __name__ == '__main__':
    print(json.dumps(describe()))
