"""Checkpoints of LIIF and MetaSR as their authors released them: the LIIF repository's layout.

``train_liif.py`` of the LIIF repository (yinboc/liif; it also holds its MetaSR) saves
``{'model': {'name', 'args', 'sd'}, 'optimizer': {...}, 'epoch': int}`` and its ``test.py``
rebuilds the network from ``name`` and ``args``. ``convert_official`` turns the ``model`` entry
into what ``utils/checkpoint.py`` loads: our state dict and our arch options record
(``ARCH_KEY``), which ``load_weights`` then compares with the network the option file built.

The weights map one to one (the encoder is an EDSR without upsampler in both codes):

* ``encoder.head.0`` -> ``encoder.conv_first``;
* ``encoder.body.i.body.0`` / ``.body.2`` -> ``encoder.body.i.conv1`` / ``.conv2`` (BasicSR's
  ``ResidualBlockNoBN``);
* ``encoder.body.N`` (N = the number of blocks) -> ``encoder.conv_after_body``;
* ``imnet.layers.k`` -> ``imnet.k``;
* ``encoder.sub_mean`` / ``encoder.add_mean`` are dropped: the official EDSR builds these
  mean-shift layers but its ``forward`` never calls them (LIIF normalizes the input to
  ``(x - 0.5) / 0.5`` outside the network, which our encoder does itself).

Args our archs do not implement (another encoder such as RDN, an EDSR with upsampler, LIIF
without MLP, an MLP with another output) fail here with one line naming the file and the arg.
"""
import re
from typing import Any, Dict, Mapping, Tuple

import torch

# Official model names -> our arch names.
OFFICIAL_ARCHS = {'liif': 'LIIF', 'metasr': 'MetaSR'}
# The official encoders our ``EDSRBaselineEncoder`` computes (with no_upsampling), with the
# defaults of their constructors (``make_edsr_baseline``, ``make_edsr``).
EDSR_ENCODERS = {
    'edsr-baseline': dict(n_resblocks=16, n_feats=64, res_scale=1),
    'edsr': dict(n_resblocks=32, n_feats=256, res_scale=0.1),
}
# Encoder args that do not change what an EDSR without upsampler computes: ``scale`` sizes the
# upsampler it does not build, ``rgb_range`` the mean shifts its forward never calls.
INERT_ENCODER_ARGS = ('scale', 'rgb_range')
# LIIF's switches and their defaults in the official constructor.
LIIF_SWITCHES = dict(local_ensemble=True, feat_unfold=True, cell_decode=True)
# The official MetaSR's meta-MLP widths (fixed in its constructor).
METASR_HIDDEN = [256]
MEAN_SHIFT_PREFIXES = ('encoder.sub_mean.', 'encoder.add_mean.')


def is_official_layout(checkpoint: Any) -> bool:
    """Whether a loaded checkpoint has the LIIF repository's layout (a ``model`` entry holding
    ``name``, ``args`` and ``sd``)."""
    model = checkpoint.get('model') if isinstance(checkpoint, dict) else None
    return isinstance(model, dict) and {'name', 'args', 'sd'} <= set(model)


def _encoder_options(spec: Any, where: str) -> Dict[str, Any]:
    """Our encoder options (num_feat, num_block, res_scale) from an official ``encoder_spec``."""
    if not isinstance(spec, dict) or not isinstance(spec.get('args', {}), dict):
        raise ValueError(f'{where}: args.encoder_spec is {spec!r}, not {{"name", "args"}}')
    name, args = spec.get('name'), dict(spec.get('args') or {})
    if name not in EDSR_ENCODERS:
        raise ValueError(f'{where}: its encoder is {name!r}; only the EDSR encoders ({", ".join(EDSR_ENCODERS)}) '
                         'are implemented here (LIIF and MetaSR on RDN or RCAN are not)')
    unknown = sorted(set(args) - set(EDSR_ENCODERS[name]) - {'no_upsampling'} - set(INERT_ENCODER_ARGS))
    if unknown:
        raise ValueError(f'{where}: encoder arg {unknown[0]}={args[unknown[0]]!r} is not one of {name}\'s')
    if args.get('no_upsampling') is not True:
        raise ValueError(f'{where}: encoder {name} has no_upsampling={args.get("no_upsampling", False)!r}; '
                         'only the encoder without upsampler (no_upsampling: true) is implemented here')
    full = dict(EDSR_ENCODERS[name], **{k: v for k, v in args.items() if k in EDSR_ENCODERS[name]})
    return dict(num_feat=full['n_feats'], num_block=full['n_resblocks'], res_scale=float(full['res_scale']))


def _liif_options(args: Dict[str, Any], where: str) -> Dict[str, Any]:
    imnet = args.get('imnet_spec')
    if imnet is None:
        raise ValueError(f'{where}: args.imnet_spec is None (LIIF without MLP, a nearest-neighbour lookup of the '
                         'features), which is not implemented here')
    imnet_args = imnet.get('args') if isinstance(imnet, dict) else None
    if not isinstance(imnet_args, dict) or imnet.get('name') != 'mlp':
        raise ValueError(f'{where}: args.imnet_spec is {imnet!r}; only an "mlp" with args is implemented here')
    unknown = sorted(set(imnet_args) - {'in_dim', 'out_dim', 'hidden_list'})
    if unknown:
        raise ValueError(f'{where}: imnet arg {unknown[0]}={imnet_args[unknown[0]]!r} is not one of mlp\'s')
    if imnet_args.get('out_dim') != 3:
        raise ValueError(f'{where}: imnet out_dim={imnet_args.get("out_dim")!r}; LIIF here predicts RGB (out_dim 3)')
    hidden = imnet_args.get('hidden_list')
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) for h in hidden):
        raise ValueError(f'{where}: imnet hidden_list={hidden!r} is not a list of widths')
    switches = {k: bool(args.get(k, default)) for k, default in LIIF_SWITCHES.items()}
    return dict(hidden_list=list(hidden), **switches)


def official_arch_options(model: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """Our arch options record (``{'type': 'LIIF' | 'MetaSR', option: value}``, as
    ``ImplicitSRNet.arch_options`` returns it) of the official ``model`` entry.

    Raises:
        ValueError: A model, encoder or arg not implemented here; the message starts with ``where``.
    """
    name, args = model.get('name'), model.get('args')
    if name not in OFFICIAL_ARCHS:
        raise ValueError(f'{where}: of the models saved in this layout only {" and ".join(OFFICIAL_ARCHS)} are '
                         'implemented here')
    if not isinstance(args, dict):
        raise ValueError(f'{where}: model args is {args!r}, not a dict')
    known = {'encoder_spec', 'imnet_spec', *LIIF_SWITCHES} if name == 'liif' else {'encoder_spec'}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f'{where}: arg {unknown[0]}={args[unknown[0]]!r} is not one of {name}\'s')
    options = _encoder_options(args.get('encoder_spec'), where)
    if name == 'liif':
        options.update(_liif_options(args, where))
    else:
        options['hidden_list'] = list(METASR_HIDDEN)
    return {'type': OFFICIAL_ARCHS[name], **options, 'rgb_skip': False}


def rename_key(key: str, num_block: int) -> str:
    """Our name of an official state-dict key (unchanged when it has no counterpart)."""
    rules = [(r'encoder\.head\.0\.', 'encoder.conv_first.'),
             (r'encoder\.body\.(\d+)\.body\.0\.', r'encoder.body.\1.conv1.'),
             (r'encoder\.body\.(\d+)\.body\.2\.', r'encoder.body.\1.conv2.'),
             (rf'encoder\.body\.{num_block}\.', 'encoder.conv_after_body.'),
             (r'imnet\.layers\.', 'imnet.')]
    for pattern, replacement in rules:
        renamed, count = re.subn('^' + pattern, replacement, key)
        if count:
            return renamed
    return key


def convert_official(checkpoint: Mapping[str, Any], load_path: str) -> Tuple[Dict[str, torch.Tensor],
                                                                              Dict[str, Any], str]:
    """(our state dict, our arch options record, what was done) of an official checkpoint.

    Raises:
        ValueError: Not implemented here (``official_arch_options``) or ``sd`` is not a state
            dict; the message names ``load_path``.
    """
    model = checkpoint['model']
    where = f'Checkpoint {load_path} (LIIF repository layout, model {model.get("name")!r})'
    arch = official_arch_options(model, where)
    sd = model['sd']
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f'{where}: model.sd is not a state dict of tensors')
    state, dropped = {}, 0
    for key, value in sd.items():
        key = key[7:] if key.startswith('module.') else key
        if key.startswith(MEAN_SHIFT_PREFIXES):
            dropped += 1
            continue
        state[rename_key(key, arch['num_block'])] = value
    epoch = checkpoint.get('epoch')
    epoch = f' (epoch {epoch})' if isinstance(epoch, int) else ''
    note = (f'converted from the official {model["name"]} layout of the LIIF repository{epoch}: {len(state)} tensors '
            f'mapped to ours, {dropped} unused mean-shift tensors dropped, its args checked against the network')
    return state, arch, note
