"""Before/after timing of the Gaussian renderer: another revision's ``gaussian_splat.py`` against
the working tree's, alone and inside GaussianSR, with LIIF as the yardstick, in one process.

    git show HEAD:gaussiansr_plugin/archs/gaussian_splat.py > /tmp/old_splat.py
    python scripts/benchmark_renderer.py --old /tmp/old_splat.py --threads 2 --train

Every timed case runs once per round, the cases taking turns (a change of background load hits
them alike); the table gives the median wall time of ``--repeats`` rounds after one warm-up
round, and the ratio to LIIF's. Untrained weights (cost does not depend on them), one
``--lq-size``² input of uniform noise, queries in chunks of ``--chunk`` (default
``QUERY_CHUNK``), the networks through ``render/tiling.render_image`` (as
``ArbitraryScaleSRModel.predict``). Rows:

* ``splat old|new``: the renderer alone (``build_splat_table`` + ``splat_query`` over every
  chunk) on the GaussianSR's own Gaussians, without the encoder;
* ``GaussianSR old|new``: encoder + every query chunk, the arch using the old or new renderer;
* ``LIIF``: the same for EDSR-baseline-LIIF;
* with ``--train``, one training step (forward, L1 loss, backward, Adam) of each network on a
  batch shaped like the training data (``--train-batch`` x ``--train-lq``², 2304 queries);
* with ``--channels-last``, GaussianSR's encoder alone on the input (``encoder NCHW|NHWC``), the
  weights in the default or the channels_last memory format (the ``channels_last`` option), and
  with ``--train`` its forward + backward on the training batch.
"""
import argparse
import importlib.util
import statistics
import sys
import time
from os import path as osp

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from gaussiansr_plugin.archs import gaussian_splat, gaussiansr_arch  # noqa: E402
from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR  # noqa: E402
from gaussiansr_plugin.archs.liif_arch import LIIF  # noqa: E402
from gaussiansr_plugin.render.tiling import QUERY_CHUNK, render_image  # noqa: E402
from gaussiansr_plugin.utils.coord import make_cell, make_coord  # noqa: E402


def load_renderer(path: str):
    """Imports a ``gaussian_splat.py`` from ``path`` as a sibling of the current one."""
    spec = importlib.util.spec_from_file_location('gaussiansr_plugin.archs._renderer_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use_renderer(module) -> None:
    gaussiansr_arch.build_splat_table, gaussiansr_arch.splat_query = module.build_splat_table, module.splat_query


def chunks(size: int, chunk: int):
    coord = make_coord((size, size)).unsqueeze(0)
    cell = make_cell((size, size), coord.shape[1]).unsqueeze(0)
    return [(coord[:, s:s + chunk], cell[:, s:s + chunk]) for s in range(0, coord.shape[1], chunk)]


@torch.no_grad()
def splat_only(module, gaussians, parts) -> None:
    table = module.build_splat_table(*gaussians)
    for coord, _ in parts:
        module.splat_query(table, coord)


@torch.no_grad()
def encode_only(encoder, lq) -> None:
    encoder(lq)


def train_step(net, optimizer, batch) -> None:
    optimizer.zero_grad()
    lq, coord, cell, gt = batch
    torch.nn.functional.l1_loss(net(lq, coord, cell), gt).backward()
    optimizer.step()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--old', required=True, help='the gaussian_splat.py to compare against')
    parser.add_argument('--lq-size', type=int, default=64)
    parser.add_argument('--sizes', type=int, nargs='+', default=[128, 256, 384, 512])
    parser.add_argument('--chunk', type=int, default=QUERY_CHUNK)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--train', action='store_true')
    parser.add_argument('--train-batch', type=int, default=16)
    parser.add_argument('--train-lq', type=int, default=48)
    parser.add_argument('--channels-last', action='store_true')
    args = parser.parse_args(argv)
    if not osp.isfile(args.old):
        parser.error(f'--old {args.old} does not exist')
    torch.set_num_threads(args.threads)
    old, new = load_renderer(args.old), gaussian_splat
    torch.manual_seed(0)
    gs, liif = GaussianSR().eval(), LIIF().eval()
    for net in (gs, liif):  # a non-zero decoder output layer, so that the outputs can be compared
        torch.nn.init.normal_(list(net.parameters())[-2], std=0.01)
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(1, 3, args.lq_size, args.lq_size, generator=gen)
    with torch.no_grad():
        feat = gs.encoder(lq)
        sigma_x, sigma_y, rho, opacity = gs.kernel_params(feat).unbind(1)
    gaussians = (opacity.unsqueeze(1) * feat[:, :gs.num_gs_feat], sigma_x, sigma_y, rho, gs.radius)

    cases, rows = {}, []
    for size in args.sizes:
        parts = chunks(size, args.chunk)

        def upscale(net, size=size):
            return render_image(net, lq, (size, size), args.chunk)

        cases[('splat old', size)] = lambda parts=parts: splat_only(old, gaussians, parts)
        cases[('splat new', size)] = lambda parts=parts: splat_only(new, gaussians, parts)
        cases[('GaussianSR old', size)] = lambda upscale=upscale: (use_renderer(old), upscale(gs))
        cases[('GaussianSR new', size)] = lambda upscale=upscale: (use_renderer(new), upscale(gs))
        cases[('LIIF', size)] = lambda upscale=upscale: upscale(liif)
        use_renderer(old)
        before = upscale(gs)
        use_renderer(new)
        rows.append(f'{size}²: max |new - old| output {float((upscale(gs) - before).abs().max()):.2e}')
    if args.train:
        b, s = args.train_batch, args.train_lq
        batch = (torch.rand(b, 3, s, s, generator=gen), 2 * torch.rand(b, 2304, 2, generator=gen) - 1,
                 torch.full((b, 2304, 2), 2 / (2.5 * s)), torch.rand(b, 2304, 3, generator=gen))
        optimizers = {net: torch.optim.Adam(net.parameters(), lr=1e-4) for net in (gs, liif)}
        cases[('GaussianSR old', 'train')] = lambda: (use_renderer(old), train_step(gs.train(), optimizers[gs], batch))
        cases[('GaussianSR new', 'train')] = lambda: (use_renderer(new), train_step(gs.train(), optimizers[gs], batch))
        cases[('LIIF', 'train')] = lambda: train_step(liif.train(), optimizers[liif], batch)

    if args.channels_last:
        nhwc = GaussianSR().encoder.to(memory_format=torch.channels_last)
        nhwc.load_state_dict(gs.encoder.state_dict())
        for name, encoder in (('encoder NCHW', gs.encoder), ('encoder NHWC', nhwc)):
            cases[(name, args.lq_size)] = lambda encoder=encoder: encode_only(encoder, lq)
            if args.train:
                cases[(name, 'train')] = lambda encoder=encoder: encoder(batch[0]).square().mean().backward()
    times = {key: [] for key in cases}
    for round_ in range(args.repeats + 1):
        for key, run in cases.items():
            start = time.perf_counter()
            run()
            if round_:
                times[key].append(time.perf_counter() - start)
            gs.eval(), liif.eval()
    columns = list(dict.fromkeys(column for _, column in cases))
    print(f'{args.lq_size}² input, {args.threads} threads, median of {args.repeats} rounds (ms; x = ratio to LIIF; '
          f'encoder rows: to NCHW)')
    print('| case | ' + ' | '.join(f'{c}²' if isinstance(c, int) else c for c in columns) + ' |')
    print('|---|' + '---|' * len(columns))
    for name in dict.fromkeys(name for name, _ in cases):
        reference = 'encoder NCHW' if name.startswith('encoder') else 'LIIF'
        cells = []
        for column in columns:
            if (name, column) not in times:
                cells.append('')
                continue
            ms = 1000 * statistics.median(times[(name, column)])
            cells.append(f'{ms:.0f} (x{ms / (1000 * statistics.median(times[(reference, column)])):.3f})')
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
