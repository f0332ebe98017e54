"""What rendering several scales from one encoder pass saves against one ``basicsr upscale`` call per scale.

    python scripts/measure_multiscale_upscale.py --model OPTION_FILE:CHECKPOINT -i IMAGE [-s 2 3 4] [--repeats 3]

Times, in one process and alternating, ``render`` of all the scales together (one encoder pass
per tile) and of each scale alone (one encoder pass per tile and scale), with the command's
default tiling; prints the median CPU seconds of each (process time: on a shared machine it
depends less on other jobs than wall time) and their ratio. Image decoding and PNG writing are
left out: they are the same either way.
"""
import argparse
import statistics
import time

import torch

from gaussiansr_plugin.inference.command import return_freed_memory
from gaussiansr_plugin.inference.image_file import read_input
from gaussiansr_plugin.utils.loading import load_net
from gaussiansr_plugin.render.tiling import DEFAULT_TILE, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True)
    parser.add_argument('-i', '--input', required=True)
    parser.add_argument('-s', '--scales', type=float, nargs='+', default=[2, 3, 4])
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    return_freed_memory()  # as the command does
    loaded = load_net(args.model, torch.device('cpu'))
    lq = read_input(args.input).tensor()
    h, w = lq.shape[-2:]
    sizes = [(round(h * s), round(w * s)) for s in args.scales]

    def timed(group):
        start = time.process_time()
        render(loaded.net, lq, group, lambda *chunk: None, tile=DEFAULT_TILE, chunk=loaded.query_chunk)
        return time.process_time() - start

    together, separate = [], []
    for _ in range(args.repeats):
        together.append(timed(sizes))
        separate.append(sum(timed([size]) for size in sizes))
    one, many = statistics.median(together), statistics.median(separate)
    print(f'{args.input} ({w}x{h}) at x{", x".join(f"{s:g}" for s in args.scales)}, {torch.get_num_threads()} '
          f'thread(s), median of {args.repeats}: one encoder pass {one:.1f} CPU s, one call per scale {many:.1f} CPU s; '
          f'separate / together = {many / one:.2f} (saves {1 - one / many:.0%})')


if __name__ == '__main__':
    main()
