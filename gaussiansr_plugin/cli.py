"""The ``basicsr`` command: BasicSR's own train/test pipelines with the plugin registered.

    basicsr train -opt options/train_gaussiansr.yml [--launcher ...] [--auto_resume] [--debug]
                  [--force_yml k=v ...] [--root DIR]
    basicsr test  -opt options/test_gaussiansr.yml [--root DIR]
    basicsr prepare extract_subimages|create_lmdb|make_benchmark_lr ...  (see datasets/README.md)
    basicsr prepare convert_official IN.pth OUT.pth  (released LIIF/MetaSR files, docs/COMPARE.md)
    basicsr benchmark --model NAME=OPTION_FILE[:CHECKPOINT] ... --sets SET=DIR ...  (docs/COMPARE.md)
    basicsr upscale -i IMAGE_OR_DIR -o DIR [-s 2 3 4] [--size WxH] [--model OPTION_FILE:CHECKPOINT] ...
    basicsr explain [--model OPTION_FILE:CHECKPOINT] -i IMAGE -o DIR  (figures of the Gaussians)
    basicsr export [--model OPTION_FILE:CHECKPOINT] -o DIR  (ONNX graphs; upscale --model DIR runs them)

Every flag except ``--root`` goes to BasicSR's ``parse_options`` unchanged. Outputs
(``experiments/``, ``tb_logger/``, ``results/``) go under ``--root`` (default: the current
directory). ``train`` and ``test`` check the option file first (``utils/options.py``): a bad
key or value ends the command with one line naming the file and the key (exit status 1)
before BasicSR parses the file or creates any folder.
"""
import argparse
import os
import sys
from typing import List, Optional

USAGE = __doc__


def _split_root(args: List[str]) -> tuple:
    """Removes ``--root DIR`` / ``--root=DIR`` from ``args``; returns (root, remaining args)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--root', default=os.getcwd())
    known, rest = parser.parse_known_args(args)
    return os.path.abspath(known.root), rest


def _prepare(args: List[str]) -> int:
    """Runs a data preparation tool: ``basicsr prepare NAME ARGS`` = ``python -m gaussiansr_plugin.tools.NAME ARGS``."""
    import importlib
    tools = ('extract_subimages', 'create_lmdb', 'make_benchmark_lr', 'convert_official')
    name = args[0].replace('-', '_') if args else ''
    if name not in tools:
        print(f'usage: basicsr prepare {{{",".join(tools)}}} ... (got {args[0] if args else "nothing"!r})',
              file=sys.stderr)
        return 2
    return importlib.import_module(f'gaussiansr_plugin.tools.{name}').main(args[1:])


def _init_dist(args: List[str], opt: dict) -> None:
    """Starts torch.distributed with the option file's ``dist_params`` when ``--launcher`` asks
    for it: BasicSR's ``parse_options`` passes them to ``init_dist`` for slurm only, and its own
    call then finds the process group started (see ``compat._init_dist``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--launcher', default='none')
    launcher = parser.parse_known_args(args)[0].launcher
    if opt and launcher in ('pytorch', 'slurm'):
        from basicsr.utils import dist_util
        dist_params = dict(opt.get('dist_params') or {})
        if opt.get('num_gpu') == 0:
            # A CPU run on a machine that has GPUs: nccl would need CUDA tensors.
            dist_params.setdefault('backend', 'gloo')
        dist_util.init_dist(launcher, **dist_params)


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ('train', 'test', 'prepare', 'benchmark', 'upscale', 'explain', 'export'):
        print(USAGE, file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ('-h', '--help') else 2)
    command, rest = argv[0], argv[1:]
    if command == 'prepare':
        sys.exit(_prepare(rest))
    if command in ('upscale', 'explain'):
        import importlib
        sys.exit(importlib.import_module(f'gaussiansr_plugin.inference.{command}').main(rest))
    if command == 'export':
        from gaussiansr_plugin.export.onnx_export import main as export_main
        sys.exit(export_main(rest))
    if command == 'benchmark':
        from gaussiansr_plugin.benchmark.cli import main as benchmark_main
        sys.exit(benchmark_main(rest))
    root, rest = _split_root(rest)

    import gaussiansr_plugin  # noqa: F401  (patches BasicSR, registers our classes)
    from gaussiansr_plugin.utils.options import check_option_file

    opt = check_option_file(rest, is_train=command == 'train')
    _init_dist(rest, opt)
    os.makedirs(root, exist_ok=True)
    sys.argv = [f'basicsr {command}'] + rest  # parse_options reads sys.argv
    if command == 'train':
        from basicsr.train import train_pipeline
        train_pipeline(root)
    else:
        from basicsr.test import test_pipeline
        test_pipeline(root)
    _shut_down_dist()


def _shut_down_dist() -> None:
    """Ends the process group after a finished run. BasicSR never does: the group is then torn
    down at interpreter exit, where gloo's threads can abort the process ("terminate called
    without an active exception", SIGABRT) after a run that completed and saved everything."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while another still communicates
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
