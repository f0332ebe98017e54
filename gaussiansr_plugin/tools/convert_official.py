"""Convert a LIIF or MetaSR checkpoint as its authors released it into this plugin's layout.

    basicsr prepare convert_official IN.pth OUT.pth
    (= python -m gaussiansr_plugin.tools.convert_official IN.pth OUT.pth)

IN is a file in the LIIF repository's layout (``{'model': {'name', 'args', 'sd'}, ...}``, e.g.
``edsr-baseline-liif.pth`` or ``edsr-baseline-metasr.pth`` from its README). OUT gets the
BasicSR layout the plugin writes (``params`` plus the arch options record), and ``OUT.yml``
beside it an option file whose ``network_g`` builds the matching network, so that the pair is
used like shipped weights: ``basicsr upscale --model OUT.yml:OUT.pth``,
``basicsr benchmark --model LIIF=OUT.yml:OUT.pth``, or ``network_g`` + ``path.pretrain_network_g``
in a test option file. The ``network_g`` section is printed too.

Every command that takes a model also reads IN directly (converted on loading); converting
once saves the conversion and gives the option file. The file is checked by loading it into the
network before anything is written; existing outputs are never overwritten; each file is
written under its final name only once complete.
"""
import io
import os
import sys
from os import path as osp
from typing import Any, Dict, List, Optional

import yaml

import gaussiansr_plugin  # noqa: F401  (patches BasicSR, registers our archs)
from gaussiansr_plugin.render.tiling import QUERY_CHUNK
from gaussiansr_plugin.utils.checkpoint import ARCH_KEY, arch_options_of, atomic_torch_save, load_weights, read_weights
from gaussiansr_plugin.utils.command_line import command_parser
from gaussiansr_plugin.utils.file_io import atomic_write
from gaussiansr_plugin.utils.options import build_network


def option_file_text(network_g: Dict[str, Any], source: str) -> str:
    """The option file written beside the converted checkpoint (YAML)."""
    opt = dict(name=osp.splitext(osp.basename(source))[0], model_type='ArbitraryScaleSRModel', num_gpu='auto',
               network_g=network_g, path=dict(param_key_g='params', strict_load_g=True),
               val=dict(query_chunk=QUERY_CHUNK))
    stream = io.StringIO()
    yaml.safe_dump(opt, stream, sort_keys=False, default_flow_style=None)
    return f'# Converted by `basicsr prepare convert_official` from {source}\n' + stream.getvalue()


def convert_official_file(source: str, target: str) -> Dict[str, Any]:
    """Writes ``target`` (BasicSR layout) and ``target``'s ``.yml`` from the official ``source``;
    returns the ``network_g`` section.

    Raises:
        ValueError: ``source`` is not an official LIIF / MetaSR file this plugin implements, or
            ``target`` does not end in ``.pth``; one line naming the file.
        FileExistsError: An output exists (nothing is written).
    """
    stem, ext = osp.splitext(target)
    if ext != '.pth':
        raise ValueError(f'Output {target} must end in .pth (its option file is written beside it as .yml)')
    option_path = stem + '.yml'
    for path in (target, option_path):
        if osp.exists(path):
            raise FileExistsError(f'Output {path} exists; remove it or choose another name (never overwritten)')
    weights = read_weights(source)
    if weights.converted is None:
        raise ValueError(f'Checkpoint {source} is not in the official layout of the LIIF repository '
                         "({'model': {'name', 'args', 'sd'}, ...}); it needs no conversion")
    network_g = dict(weights.arch)
    net = build_network(network_g)
    load_weights(net, weights, strict=True)
    atomic_write(option_file_text(network_g, source).encode(), option_path)
    try:
        atomic_torch_save({'params': net.state_dict(), ARCH_KEY: arch_options_of(net)}, target)
    except BaseException:
        os.remove(option_path)  # no option file without its checkpoint
        raise
    return network_g


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = command_parser('gaussiansr_plugin.tools.convert_official', __doc__)
    parser.add_argument('input', help='official checkpoint (LIIF repository layout)')
    parser.add_argument('output', help='converted checkpoint to write (.pth; the option file goes beside it as .yml)')
    args = parser.parse_args(argv)
    try:
        network_g = convert_official_file(args.input, args.output)
    except (ValueError, FileExistsError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    option_path = osp.splitext(args.output)[0] + '.yml'
    print(f'Wrote {args.output} and {option_path} ({network_g["type"]}); its network_g:')
    print(yaml.safe_dump({'network_g': network_g}, sort_keys=False, default_flow_style=None), end='')
    print(f'Use it as: basicsr upscale --model {option_path}:{args.output} ...')
    return 0


if __name__ == '__main__':
    sys.exit(main())
