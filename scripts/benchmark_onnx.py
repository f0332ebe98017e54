"""onnxruntime against PyTorch eager on the same networks: speed, and with ``--parity`` the pixels.

    python scripts/benchmark_onnx.py --threads 2 [--repeats 5] [--sizes 256 512] [--chunks 3000 12000]
    python scripts/benchmark_onnx.py --parity [--images woman bird] [--tile 32]

Each network (the shipped ``gaussiansr`` and ``liif`` weights; MetaSR as built by
``options/train_metasr.yml`` with seeded random weights, as none are shipped and the cost does not
depend on them) is exported with ``basicsr export``'s code into a temporary folder, then:

* speed: a ``--lq``² LR image of smooth noise rendered to every ``--sizes``² output in one tile
  (``render/tiling.render_image``, queries in chunks of ``tiling.CPU_QUERY_CHUNK``, the render
  loop's size on the CPU, or of each ``--chunks`` size in turn, above it too; and the encoder
  alone, ``encoder only``), by PyTorch (``--threads`` threads) and by onnxruntime's CPU
  provider (``--threads`` intra-op threads), each runtime in a worker process of its own, taking
  turns case by case so that a change of background load hits both alike. Not in one process:
  there, once onnxruntime had run, PyTorch's OpenMP threads (default wait policy) took 10x longer
  for the encoder at 2 threads (1.5 s instead of 0.11-0.3 s), with or without onnxruntime's
  spinning. The table gives the median wall time of ``--repeats`` rounds after one warm-up round
  and the median of the rounds' ratios onnxruntime / PyTorch (below 1: onnxruntime is faster);
* ``--parity``: the LR x4 images of Set5 (``../shared/data``) at x2, x2.5, x3.6 and 2.5x3,
  rendered whole by PyTorch and by onnxruntime whole and in ``--tile`` tiles (exact padding):
  the largest |onnxruntime - PyTorch whole| per arch, scale and tiling, float32, [0, 1] units.
"""
import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from os import path as osp
from typing import Any, Dict, List, Tuple

import torch
import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from gaussiansr_plugin.export.onnx_export import export_model  # noqa: E402
from gaussiansr_plugin.export.onnx_runtime import OnnxNet  # noqa: E402
from gaussiansr_plugin.render import tiling  # noqa: E402
from gaussiansr_plugin.render.tiling import CPU_QUERY_CHUNK, render, render_image  # noqa: E402
from gaussiansr_plugin.utils.image_io import decode_rgb  # noqa: E402
from gaussiansr_plugin.utils.loading import load_net  # noqa: E402
from gaussiansr_plugin.utils.options import build_network  # noqa: E402

SET5_LR = osp.join(ROOT, '..', 'shared', 'data', 'benchmark', 'Set5', 'LR_bicubic', 'X4')
SIDES = ('PyTorch', 'onnxruntime')
ARCHS = ('GaussianSR', 'LIIF', 'MetaSR')
SCALES = [('x2', 2.0, 2.0), ('x2.5', 2.5, 2.5), ('x3.6', 3.6, 3.6), ('2.5x3', 3.0, 2.5)]  # label, height, width


def metasr_model(folder: str) -> str:
    """``OPTION_FILE:CHECKPOINT`` of options/train_metasr.yml's MetaSR with seeded random weights."""
    with open(osp.join(ROOT, 'options', 'train_metasr.yml')) as f:
        network_g = yaml.safe_load(f)['network_g']
    torch.manual_seed(0)
    net = build_network(network_g)
    option_file, checkpoint = osp.join(folder, 'metasr.yml'), osp.join(folder, 'metasr.pth')
    with open(option_file, 'w') as f:
        yaml.safe_dump(dict(name='metasr_random', model_type='ArbitraryScaleSRModel', network_g=network_g), f)
    torch.save({'params': net.state_dict()}, checkpoint)
    return f'{option_file}:{checkpoint}'


def exported_models(folder: str, archs: List[str]) -> Dict[str, Tuple[str, str]]:
    """{arch: (model argument, export folder)} of ``archs``, each exported with ``basicsr export``'s code."""
    models = {}
    for name in archs:
        model_arg = metasr_model(folder) if name == 'MetaSR' else name.lower()
        start = time.perf_counter()
        out = osp.join(folder, name)
        export_model(model_arg, out)
        print(f'exported {name} in {time.perf_counter() - start:.1f} s', flush=True)
        models[name] = (model_arg, out)
    return models


def load_side(side: str, models: Dict[str, Tuple[str, str]], threads: int) -> Dict[str, Any]:
    """{arch: network} of one runtime: PyTorch's (eval, float32) or onnxruntime's (``OnnxNet``)."""
    if side == 'PyTorch':
        return {name: load_net(arg, torch.device('cpu')).net for name, (arg, _) in models.items()}
    return {name: OnnxNet(folder, threads) for name, (_, folder) in models.items()}


def smooth_noise(size: int) -> torch.Tensor:
    small = torch.rand(1, 3, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(small, size=(size, size), mode='bicubic', align_corners=False).clamp(0, 1)


def serve(conn: Any, side: str, models: Dict[str, Tuple[str, str]], threads: int, lq_size: int,
          largest_chunk: int) -> None:
    """A worker process of one runtime: times each case (arch, output side, queries per call; side
    0: the encoder alone) the parent sends, until None."""
    torch.set_num_threads(threads)
    tiling.CPU_QUERY_CHUNK = max(largest_chunk, CPU_QUERY_CHUNK)  # the render loop's cap, lifted to measure above it
    nets, lq = load_side(side, models, threads), smooth_noise(lq_size)
    while True:
        case = conn.recv()
        if case is None:
            return
        name, size, chunk = case
        start = time.perf_counter()
        with torch.no_grad():
            if size:
                render_image(nets[name], lq, (size, size), chunk)
            else:
                nets[name].encode(lq)
        conn.send(time.perf_counter() - start)


def speed(models: Dict[str, Tuple[str, str]], threads: int, lq_size: int, sizes: List[int], chunks: List[int],
          repeats: int) -> None:
    """The timing rounds, each runtime in a process of its own (see the module docstring)."""
    context = multiprocessing.get_context('spawn')
    workers = {}
    for side in SIDES:
        conn, child = context.Pipe()
        process = context.Process(target=serve, args=(child, side, models, threads, lq_size, max(chunks)),
                                  daemon=True)
        process.start()
        workers[side] = (process, conn)
    cases = [(name, 0, 0) for name in models]
    cases += [(name, size, chunk) for name in models for size in sizes for chunk in chunks]
    cases.sort(key=lambda case: ARCHS.index(case[0]))
    times: Dict[Tuple[str, int, int, str], List[float]] = {case + (side,): [] for case in cases for side in SIDES}
    try:
        for round_index in range(repeats + 1):  # round 0 warms up
            for case in cases:
                for side in SIDES:
                    workers[side][1].send(case)
                    seconds = workers[side][1].recv()
                    if round_index:
                        times[case + (side,)].append(seconds)
            print(f'round {round_index} done', flush=True)
    finally:
        for process, conn in workers.values():
            conn.send(None)
            process.join()
    print(f'\n| arch | {lq_size}² -> | queries per call | PyTorch eager (ms) | onnxruntime (ms) | '
          'onnxruntime / PyTorch |')
    print('|---|---|---|---|---|---|')
    for case in cases:
        name, size, chunk = case
        torch_t, ort_t = times[case + ('PyTorch',)], times[case + ('onnxruntime',)]
        ratio = statistics.median(o / t for o, t in zip(ort_t, torch_t))
        print(f'| {name} | {f"{size}²" if size else "encoder only"} | {chunk or ""} | '
              f'{1000 * statistics.median(torch_t):.0f} | {1000 * statistics.median(ort_t):.0f} | {ratio:.2f} |')


def parity(models: Dict[str, Tuple[str, str]], images: List[str], tile: int, threads: int) -> None:
    print(f'\n| arch | image | {" | ".join(f"{label} whole | {label} tiles" for label, _, _ in SCALES)} |')
    print('|---|---|' + '---|' * (2 * len(SCALES)))
    worst = 0.0
    nets, runtimes = load_side('PyTorch', models, threads), load_side('onnxruntime', models, threads)
    for name in models:
        net, runtime = nets[name], runtimes[name]
        for image in images:
            path = osp.join(SET5_LR, f'{image}x4.png')
            with open(path, 'rb') as f:
                lq = decode_rgb(f.read(), path)[None]
            h, w = lq.shape[-2:]
            sizes = [(round(h * sh), round(w * sw)) for _, sh, sw in SCALES]
            outputs = {}
            for key, model, tiles in (('torch', net, 0), ('whole', runtime, 0), ('tiles', runtime, tile)):
                found = [torch.zeros(s, s2, 3) for s, s2 in sizes]

                def sink(k, r0, r1, c0, c1, rgb, found=found):
                    found[k][r0:r1, c0:c1] = rgb

                render(model, lq, sizes, sink, tile=tiles, chunk=CPU_QUERY_CHUNK)
                outputs[key] = found
            cells = []
            for k in range(len(SCALES)):
                for key in ('whole', 'tiles'):
                    diff = (outputs[key][k] - outputs['torch'][k]).abs().max().item()
                    worst = max(worst, diff)
                    cells.append(f'{diff:.1e}')
            print(f'| {name} | {image} ({w}x{h}) | {" | ".join(cells)} |', flush=True)
    print(f'\nlargest |onnxruntime - PyTorch|: {worst:.2e}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--lq', type=int, default=64, help='LR side (default 64)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[256, 512], help='output sides (default 256 512)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--chunks', type=int, nargs='+', default=[CPU_QUERY_CHUNK],
                        help=f'queries per network call, each in turn (default {CPU_QUERY_CHUNK}, '
                        'the render loop\'s on the CPU)')
    parser.add_argument('--parity', action='store_true', help='max |difference| on Set5 instead of speed')
    parser.add_argument('--images', nargs='+', default=['baby', 'bird', 'butterfly', 'head', 'woman'])
    parser.add_argument('--tile', type=int, default=32, help='tile side of --parity (default 32)')
    parser.add_argument('--archs', nargs='+', choices=ARCHS, default=list(ARCHS), help='default: all three')
    args = parser.parse_args()
    if min(args.chunks) < 1:
        parser.error(f'--chunks: queries per call must be >= 1, got {min(args.chunks)}')
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {args.threads} threads; onnxruntime CPU, {args.threads} intra-op threads')
    with tempfile.TemporaryDirectory() as folder:
        models = exported_models(folder, args.archs)
        if args.parity:
            parity(models, args.images, args.tile, args.threads)
        else:
            speed(models, args.threads, args.lq, args.sizes, args.chunks, args.repeats)


if __name__ == '__main__':
    main()
