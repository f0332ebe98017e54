"""Turn a training run's checkpoint into shipped weights: ``NAME.pth`` + ``NAME.yml``.

    python scripts/package_weights.py -opt options/ablation/train_gaussiansr.yml \\
        --checkpoint experiments/Ablation_GaussianSR/models/net_g_1500.pth --name gaussiansr \\
        [--out gaussiansr_plugin/weights] [--overwrite]

``NAME.pth`` holds the fp32 state dict under ``params`` (the EMA weights when the checkpoint
has them, else ``params``) and the arch options (``utils/checkpoint.ARCH_KEY``), so that loading
it into a network built with other behaviour-defining options fails with one line. ``NAME.yml``
is an inference option file: ``model_type`` and ``network_g`` copied from the training option
file, with a header saying where the weights come from. Both are written atomically; the
script prints the size and sha256 of the ``.pth``. Loading the result back into the network
of ``NAME.yml`` (strict, arch options compared) is checked before anything is written.
"""
import argparse
import hashlib
import io
import sys
from os import path as osp
from typing import List, Optional

import torch
import yaml

import gaussiansr_plugin  # noqa: F401  (patches BasicSR, registers the archs)
from gaussiansr_plugin.utils.checkpoint import ARCH_KEY, load_weights
from gaussiansr_plugin.utils.file_io import atomic_write
from gaussiansr_plugin.utils.options import OptionError, build_network, load_option_file
from gaussiansr_plugin.weights import WEIGHTS_DIR


def package(option_file: str, checkpoint_path: str, name: str, out_dir: str, overwrite: bool) -> str:
    """Writes ``out_dir/NAME.pth`` and ``NAME.yml``; returns a one-line summary with the sha256."""
    opt = load_option_file(option_file)
    net = build_network(opt['network_g'])
    # The plugin's loader: EMA weights when the run has them, 'module.' dropped, strict, arch options compared.
    load_weights(net, checkpoint_path, strict=True, param_key='params_ema')
    pth, yml = osp.join(out_dir, f'{name}.pth'), osp.join(out_dir, f'{name}.yml')
    existing = [p for p in (pth, yml) if osp.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f'{existing[0]} exists (pass --overwrite to replace it)')
    buffer = io.BytesIO()
    state = {k: v.float().contiguous() for k, v in net.state_dict().items()}
    torch.save({'params': state, ARCH_KEY: net.arch_options()}, buffer)
    data = buffer.getvalue()
    header = (f'# Shipped weights "{name}": {name}.pth, trained with {option_file}\n'
              f'# ({opt.get("name")}, {opt["train"]["total_iter"]} iterations) and packaged from {checkpoint_path} by\n'
              f'#   python scripts/package_weights.py -opt {option_file} --checkpoint {checkpoint_path} --name {name}\n'
              '# See README.md in this folder for the data, recipe, command, sha256 and PSNR.\n')
    body = {'name': f'{name}_shipped', 'model_type': opt['model_type'], 'num_gpu': 'auto',
            'network_g': dict(opt['network_g']), 'path': {'param_key_g': 'params', 'strict_load_g': True}}
    text = header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)
    atomic_write(data, pth)
    atomic_write(text.encode(), yml)
    params = sum(p.numel() for p in net.parameters())
    return (f'{pth}: {type(net).__name__}, {params:,} parameters, {len(data) / 2**20:.2f} MiB, '
            f'sha256 {hashlib.sha256(data).hexdigest()}')


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='the training option file of the run')
    parser.add_argument('--checkpoint', required=True, help='net_g_*.pth of the run')
    parser.add_argument('--name', required=True, help='the shipped name (file stem)')
    parser.add_argument('--out', default=WEIGHTS_DIR, help=f'output folder (default: {WEIGHTS_DIR})')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    try:
        print(package(args.opt, args.checkpoint, args.name, args.out, args.overwrite))
    except OptionError as err:
        print(err.code, file=sys.stderr)
        return 1
    except (FileExistsError, ValueError, KeyError) as err:
        print(f'Error: {err.args[0] if err.args else err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
