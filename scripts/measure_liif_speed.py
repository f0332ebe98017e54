"""LIIF's speed against an earlier revision of its arch, measured side by side in one process.

    python scripts/measure_liif_speed.py [--ref REV] [--only eval|train] [--repeats 3] [--threads 1]

Loads ``gaussiansr_plugin/archs/liif_arch.py`` and ``latent_util.py`` as they are at git
revision ``--ref`` (default HEAD; once the change under test is committed, pass the revision
before it) next to the working tree's LIIF, copies the working tree's weights into it (a strict
``load_state_dict``, so the checkpoint format is checked too) and times, alternating the two
so that load from other processes hits both alike:

* eval: a random 64x64 image to 256x256 and 512x512 through ``render/tiling.render_image`` as
  ``ArbitraryScaleSRModel.predict`` does it (``encode`` once, ``query`` in chunks of
  ``QUERY_CHUNK``, no_grad);
* train: one training step (forward, L1 loss, backward, Adam step) at batch 8, 48x48 LR,
  2304 queries per image.

Prints the median of ``--repeats`` runs of each, old / new ratios and the largest output
difference between the two (float32 rounding only, as the change is exact).
"""
import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch.nn import functional as F

import gaussiansr_plugin  # noqa: F401  (patches BasicSR, registers the archs)
from gaussiansr_plugin.archs.liif_arch import LIIF
from gaussiansr_plugin.render.tiling import render_image

REPO = Path(__file__).resolve().parents[1]
ARCHS = 'gaussiansr_plugin/archs'


def load_reference_liif(rev: str) -> type:
    """The LIIF class of ``rev``, importable beside the current one (not registered in BasicSR)."""

    def source(name: str) -> str:
        return subprocess.run(['git', 'show', f'{rev}:{ARCHS}/{name}'],
                              cwd=REPO, check=True, capture_output=True, text=True).stdout

    latent = types.ModuleType('reference_latent_util')
    latent_source = source('latent_util.py').replace('from .arch_util', 'from gaussiansr_plugin.archs.arch_util')
    exec(compile(latent_source, f'{rev}:latent_util.py', 'exec'), latent.__dict__)
    sys.modules[latent.__name__] = latent
    liif_source = (source('liif_arch.py').replace('from .latent_util', 'from reference_latent_util')
                   .replace('from .arch_util', 'from gaussiansr_plugin.archs.arch_util')
                   .replace('@ARCH_REGISTRY.register()\n', ''))  # the name LIIF is taken by the current class
    module = types.ModuleType('reference_liif_arch')
    exec(compile(liif_source, f'{rev}:liif_arch.py', 'exec'), module.__dict__)
    return module.LIIF


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(label: str, runs: Dict[str, Callable[[], object]], repeats: int, per: float, unit: str) -> None:
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():  # alternated, so that outside load hits both alike
            times[name].append(timed(fn))
    old, new = (statistics.median(times[n]) for n in ('old', 'new'))
    ratios = [o / n for o, n in zip(times['old'], times['new'])]
    print(f'{label}: old {old:.3f} s ({old / per * 1e6:.2f} us/{unit}), new {new:.3f} s '
          f'({new / per * 1e6:.2f} us/{unit}); old/new {old / new:.2f} '
          f'(per round: {", ".join(f"{r:.2f}" for r in ratios)})', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ref', default='HEAD', help='git revision of the old arch (default: HEAD)')
    parser.add_argument('--only', choices=['eval', 'train'], help='run one of the two measurements')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    nets = {'old': load_reference_liif(args.ref)(), 'new': LIIF()}
    nets['old'].load_state_dict(nets['new'].state_dict())

    if args.only in (None, 'eval'):
        lq = torch.rand(1, 3, 64, 64)
        for net in nets.values():
            net.eval()
        for out_size in [(256, 256), (512, 512)]:
            diff = (render_image(nets['old'], lq, out_size) - render_image(nets['new'], lq, out_size)).abs().max()
            print(f'eval 64x64 -> {out_size[0]}x{out_size[1]}: max |old - new| = {diff:.2e}')
            runs = {name: (lambda net=net, size=out_size: render_image(net, lq, size)) for name, net in nets.items()}
            compare(f'eval 64x64 -> {out_size[0]}x{out_size[1]}', runs, args.repeats, out_size[0] * out_size[1],
                    'output pixel')

    if args.only in (None, 'train'):
        batch, lr, num_q = 8, 48, 2304
        lq = torch.rand(batch, 3, lr, lr)
        coord = torch.rand(batch, num_q, 2) * 2 - 1
        cell = torch.full((batch, num_q, 2), 2 / (lr * 3))
        gt = torch.rand(batch, num_q, 3)
        optimizers = {}
        for name, net in nets.items():
            net.train()
            optimizers[name] = torch.optim.Adam(net.parameters(), lr=0)  # lr 0: both keep the same weights

        def step(name: str) -> torch.Tensor:
            optimizers[name].zero_grad()
            out = nets[name](lq, coord, cell)
            F.l1_loss(out, gt).backward()
            optimizers[name].step()
            return out.detach()

        diff = (step('old') - step('new')).abs().max()
        grad_diff = max((a.grad - b.grad).abs().max().item()
                        for a, b in zip(nets['old'].parameters(), nets['new'].parameters()))
        print(f'train step: max |old - new| output {diff:.2e}, gradient {grad_diff:.2e}')
        compare(f'train step (batch {batch}, LR {lr}, {num_q} queries)', {n: (lambda n=n: step(n)) for n in nets},
                args.repeats, batch * num_q, 'query')


if __name__ == '__main__':
    main()
