"""Checking an option file before BasicSR starts, so a bad key fails in one line, not at hour 3.

``check_option_file`` (run by the ``basicsr`` command before BasicSR parses the file or creates
any folder) loads the file, applies ``--force_yml`` and runs ``check_options``: every key that
BasicSR's train/test pipelines and this plugin read, section by section (``option_sections.py``),
then the model's own ``check_options`` hook and the pretrained weights. A bad value ends the
command with one line naming the file, the key, the value and what is expected.
"""
import argparse
import os
from typing import Any, Dict, List

import yaml

from basicsr.utils.options import ordered_yaml
from .checkpoint import load_weights, param_key_of
from .option_sections import (build_network, check_datasets, check_dist, check_logger, check_path, check_top,
                              check_train, check_val)


class OptionError(SystemExit):
    """A bad option: exits with its one-line message (no traceback), naming the file and key."""

    def __init__(self, message: str) -> None:
        super().__init__('Option error: ' + ' '.join(str(message).split()))


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


def check_options(opt: Dict[str, Any], is_train: bool) -> None:
    """Checks the keys BasicSR and the plugin read; raises KeyError/ValueError/FileNotFoundError
    whose one-line message names the key, the value and what is expected.

    The registered dataset and model classes that define ``check_options`` (a staticmethod)
    check their own keys, found through BasicSR's registries.
    """
    model_cls = check_top(opt, is_train)
    check_datasets(opt, is_train)
    net = build_network(opt['network_g'])  # cheap; surfaces value errors that name their key
    check_path(opt, is_train)
    if is_train:
        check_train(opt, model_cls)
        check_logger(opt)
    check_val(opt, is_train, model_cls)
    check_dist(opt)
    if hasattr(model_cls, 'check_options'):
        model_cls.check_options(dict(opt, is_train=is_train))
    checkpoint = opt['path'].get('pretrain_network_g')  # a file, or the name of shipped weights
    if checkpoint and not (is_train and opt['path'].get('resume_state')):
        try:
            load_weights(net, os.path.expanduser(checkpoint), opt['path'].get('strict_load_g', True),
                         param_key_of(opt['path']))
        except ValueError as err:
            raise ValueError(f'path.pretrain_network_g: {err}') from err


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
