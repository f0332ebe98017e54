"""Checking an option file before BasicSR starts, so a bad key fails in one line, not at hour 3."""
import argparse
import inspect
import os
from typing import Any, Dict, List

import yaml

from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY
from .checkpoint import load_weights


class OptionError(SystemExit):
    """A bad option: exits with its message (no traceback), naming the file and key."""

    def __init__(self, message: str) -> None:
        super().__init__(f'Option error: {message}')


def load_option_file(path: str) -> Dict[str, Any]:
    """Reads a BasicSR YAML option file, with a clear message for a missing or malformed file."""
    if not os.path.isfile(path):
        raise OptionError(f'option file {path} does not exist')
    with open(path) as f:
        try:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
        except yaml.YAMLError as err:
            raise OptionError(f'{path} is not valid YAML: {err}') from err
    if not isinstance(opt, dict):
        raise OptionError(f'{path} must hold a mapping of options')
    return opt


def _has_image(folder: str) -> bool:
    """Whether ``folder`` (or a subfolder) holds an image file; stops at the first one."""
    from .image_io import is_image_file
    return any(is_image_file(name) for _, _, names in os.walk(folder) for name in names)


def _require(opt: Dict[str, Any], dotted: str) -> Any:
    node: Any = opt
    for key in dotted.split('.'):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f'{dotted} is required')
        node = node[key]
    return node


def build_network(net_opt: Dict[str, Any]) -> Any:
    """Builds the ``network_g`` an option file describes; raises KeyError/ValueError naming the key."""
    net_opt = dict(net_opt or {})
    net_type = net_opt.pop('type', None)
    if net_type not in ARCH_REGISTRY:
        raise KeyError(f'network_g.type: {net_type!r} is not a registered arch')
    net_cls = ARCH_REGISTRY.get(net_type)
    try:
        inspect.signature(net_cls).bind(**net_opt)
    except TypeError as err:
        allowed = list(inspect.signature(net_cls).parameters)
        raise KeyError(f'network_g: {err} (keys of {net_type}: {allowed})') from err
    return net_cls(**net_opt)


def check_options(opt: Dict[str, Any], is_train: bool) -> None:
    """Checks the keys BasicSR and the plugin read; raises KeyError/ValueError naming the key.

    The registered dataset and model classes that define ``check_options`` (a staticmethod)
    check their own keys, found through BasicSR's registries.
    """
    for key in ('name', 'model_type', 'num_gpu', 'datasets', 'network_g', 'path'):
        _require(opt, key)
    if is_train:
        for key in ('train.total_iter', 'logger.print_freq', 'logger.save_checkpoint_freq', 'datasets.train'):
            _require(opt, key)
        if opt.get('val') is not None:
            _require(opt, 'val.val_freq')
    for phase_key, dataset_opt in opt['datasets'].items():
        dataset_type = (dataset_opt or {}).get('type')
        if dataset_type not in DATASET_REGISTRY:
            raise KeyError(f'datasets.{phase_key}.type: {dataset_type!r} is not a registered dataset')
        dataset_cls = DATASET_REGISTRY.get(dataset_type)
        if hasattr(dataset_cls, 'check_options'):
            checked = dict(dataset_opt, phase=phase_key.split('_')[0])
            checked.setdefault('name', phase_key)
            dataset_cls.check_options(checked, where=f'datasets.{phase_key}')
            for key in ('dataroot_gt', 'dataroot_lq'):
                path = checked.get(key)
                if not path or '$' in path:
                    continue
                path = os.path.expanduser(path)
                if not os.path.exists(path):
                    raise FileNotFoundError(f'datasets.{phase_key}.{key} does not exist: {path}')
                lists_images = checked.get('image_names') or checked.get('meta_info_file')
                if os.path.isdir(path) and not path.endswith('.lmdb') and not lists_images and not _has_image(path):
                    raise FileNotFoundError(f'datasets.{phase_key}.{key} holds no images: {path}')
    net = build_network(opt['network_g'])  # cheap; surfaces value errors that name their key
    checkpoint = (opt.get('path') or {}).get('pretrain_network_g')  # a file, or the name of shipped weights
    if checkpoint and not (is_train and (opt.get('path') or {}).get('resume_state')):
        try:
            load_weights(net, os.path.expanduser(checkpoint), opt['path'].get('strict_load_g', True),
                         opt['path'].get('param_key_g', 'params'))
        except ValueError as err:
            raise ValueError(f'path.pretrain_network_g: {err}') from err
    model_type = opt['model_type']
    if model_type not in MODEL_REGISTRY:
        raise KeyError(f'model_type: {model_type!r} is not a registered model')
    model_cls = MODEL_REGISTRY.get(model_type)
    if hasattr(model_cls, 'check_options'):
        model_cls.check_options(dict(opt, is_train=is_train))


def apply_force_yml(opt: Dict[str, Any], entries: List[str]) -> None:
    """Applies ``--force_yml a:b=value`` overrides as BasicSR's ``parse_options`` will, so the
    checks see the options that will run. Like BasicSR, only existing keys can be set."""
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries:
        if '=' not in entry:
            raise ValueError(f'--force_yml {entry!r}: expected key:subkey=value')
        keys, value = (part.strip() for part in entry.split('=', 1))
        node = opt
        *parents, last = keys.split(':')
        for key in parents:
            if not isinstance(node, dict) or key not in node:
                raise KeyError(f'--force_yml {entry!r}: {key!r} is not in the option file')
            node = node[key]
        if not isinstance(node, dict) or last not in node:
            raise KeyError(f'--force_yml {entry!r}: {last!r} is not in the option file (it cannot add keys)')
        node[last] = _postprocess_yml_value(value)


def check_option_file(args: List[str], is_train: bool) -> Dict[str, Any]:
    """Loads the ``-opt`` file named in BasicSR-style ``args``, checks it (see ``check_options``)
    and returns it ({} when there is no ``-opt``: BasicSR's own parser reports that)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+', default=[])
    known, _ = parser.parse_known_args(args)
    if known.opt is None:
        return {}
    opt = load_option_file(known.opt)
    try:
        apply_force_yml(opt, known.force_yml)
        check_options(opt, is_train)
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if err.args else str(err)
        raise OptionError(f'{known.opt}: {message}') from err
    return opt
