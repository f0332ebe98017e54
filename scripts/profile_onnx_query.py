"""Where an exported model's query graph spends its time: onnxruntime's profiler, node by node.

    python scripts/profile_onnx_query.py [--model gaussiansr] [--threads 1] [--queries 12000] [--top 25]

Exports ``--model`` (a shipped name or ``OPTION_FILE:CHECKPOINT``) with ``basicsr export``'s code
into a temporary folder, encodes a ``--lq``² LR image of smooth noise, and runs the query graph
``--runs`` times (after 3 warm-up calls) on the first ``--queries`` pixel centres of a
``--out``² output, row by row, as ``basicsr upscale``'s chunks do. Prints the mean wall time of a
call, then the ``--top`` nodes by time per call with their operator and output shape; with
``--torch``, also PyTorch's ``net.query`` on the same state and queries, timed the same way.
"""
import argparse
import collections
import json
import sys
import tempfile
import time
from os import path as osp
from typing import Any, Callable

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from gaussiansr_plugin.export.manifest import ENCODE_INPUT, GRAPH_FILES  # noqa: E402
from gaussiansr_plugin.export.onnx_export import export_model  # noqa: E402
from gaussiansr_plugin.export.onnx_runtime import session_options  # noqa: E402
from gaussiansr_plugin.utils.loading import load_net  # noqa: E402

WARMUP = 3


def query_feeds(lq_size: int, out_size: int, queries: int) -> dict:
    """The query graph's own inputs for the first ``queries`` pixel centres of an ``out_size``² output."""
    centres = (2 * np.arange(out_size) + 1) / out_size - 1
    coord = np.stack(np.meshgrid(centres, centres, indexing='ij'), -1).reshape(1, -1, 2)[:, :queries]
    coord = np.ascontiguousarray(coord, dtype=np.float32)
    return {'coord': coord, 'cell': np.full_like(coord, 2 / out_size),
            'placement': np.array([0, 0, lq_size, lq_size], dtype=np.int64)}


def time_calls(call: Callable[[], Any], runs: int) -> float:
    """Mean seconds of ``call`` over ``runs`` calls after ``WARMUP`` ones."""
    for _ in range(WARMUP):
        call()
    start = time.perf_counter()
    for _ in range(runs):
        call()
    return (time.perf_counter() - start) / runs


def torch_query_seconds(model: str, lq: Any, feeds: dict, threads: int, runs: int) -> float:
    """PyTorch's ``net.query`` (eval, float32, CPU) on the inputs the query graph gets."""
    import torch
    torch.set_num_threads(threads)
    net = load_net(model, torch.device('cpu')).net
    coord, cell = torch.from_numpy(feeds['coord']), torch.from_numpy(feeds['cell'])
    with torch.no_grad():
        state = net.encode(torch.from_numpy(lq))
        return time_calls(lambda: net.query(state, coord, cell), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='gaussiansr')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--lq', type=int, default=64, help='LR side (default 64)')
    parser.add_argument('--out', type=int, default=512, help='output side (default 512)')
    parser.add_argument('--queries', type=int, default=12000, help='queries per call (default 12000)')
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--top', type=int, default=25)
    parser.add_argument('--torch', action='store_true', help="also time PyTorch's query call")
    args = parser.parse_args()
    import onnxruntime as ort
    import torch
    small = torch.rand(1, 3, args.lq // 8, args.lq // 8, generator=torch.Generator().manual_seed(0))
    lq = torch.nn.functional.interpolate(small, size=(args.lq, args.lq), mode='bicubic', align_corners=False).clamp(0, 1).numpy()
    with tempfile.TemporaryDirectory() as folder:
        export_model(args.model, osp.join(folder, 'model'))
        options = session_options(args.threads)  # as basicsr upscale's
        encode = ort.InferenceSession(osp.join(folder, 'model', GRAPH_FILES['encode']), options,
                                      providers=['CPUExecutionProvider'])
        state = dict(zip([o.name for o in encode.get_outputs()], encode.run(None, {ENCODE_INPUT: lq})))
        options.enable_profiling, options.profile_file_prefix = True, osp.join(folder, 'profile')
        query = ort.InferenceSession(osp.join(folder, 'model', GRAPH_FILES['query']), options,
                                     providers=['CPUExecutionProvider'])
        feeds = {'lq': lq, **query_feeds(args.lq, args.out, args.queries), **state}
        seconds = time_calls(lambda: query.run(None, feeds), args.runs)
        with open(query.end_profiling()) as f:
            events = json.load(f)
    # The profile holds the warm-up calls too: per-call figures divide by every call.
    calls = WARMUP + args.runs
    total, shapes = collections.Counter(), {}
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            key = (event['args']['op_name'], event['name'][:-len('_kernel_time')])
            total[key] += event['dur']
            shapes[key] = event['args'].get('output_type_shape')
    print(f'{args.model}: {args.queries} queries of a {args.lq}² -> {args.out}² output, {args.threads} thread(s): '
          f'{1000 * seconds:.1f} ms per call (mean of {args.runs}); nodes {sum(total.values()) / calls / 1000:.1f} ms')
    if args.torch:
        torch_seconds = torch_query_seconds(args.model, lq, feeds, args.threads, args.runs)
        print(f'PyTorch eager: {1000 * torch_seconds:.1f} ms per call (mean of {args.runs}); onnxruntime / PyTorch '
              f'{seconds / torch_seconds:.2f}')
    for (op, node), microseconds in total.most_common(args.top):
        print(f'{microseconds / calls / 1000:7.2f} ms  {op:12s} {node:45s} {json.dumps(shapes[(op, node)])}')


if __name__ == '__main__':
    main()
