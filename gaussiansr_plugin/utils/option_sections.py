"""The sections of a BasicSR option file: tables of the keys BasicSR and this plugin read, and
their checks (used by ``utils/options.py``'s ``check_options``).

Datasets: BasicSR's loader keys for every dataset, then the dataset's own keys through its
``check_options`` hook or the table of BasicSR's ``PairedImageDataset``. ``network_g``: against the
arch's signature (and, for our archs, type hints and ranges), then built. ``train``: optimizer and
scheduler keyword arguments against their signatures, then built on a dummy parameter; losses
against theirs. ``val``, ``logger``, ``path``, ``dist_params``: kinds of BasicSR's keys. Unknown
keys are rejected in the sections the plugin owns and in keyword arguments passed to a signature;
elsewhere BasicSR's own keys pass as BasicSR accepts them.
"""
import copy
import difflib
import importlib.util
import inspect
import os
from typing import Any, Collection, Dict

import torch

from basicsr.utils.file_client import FileClient
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from .option_rules import (BOOL, ITERATIONS, MAPPING, NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, STRING, Kind,
                           check_kwargs, check_section, check_typed_kwargs, integer, list_of, number, one_of,
                           optional)

NUM_GPU = Kind("'auto' or a non-negative integer", lambda v: v == 'auto' or NON_NEGATIVE_INT.test(v))
TOP_RULES = {
    'name': STRING, 'model_type': STRING, 'num_gpu': NUM_GPU, 'manual_seed': optional(integer(0, 2**32 - 1)),
    'scale': POSITIVE_INT, 'find_unused_parameters': BOOL, 'datasets': MAPPING, 'network_g': MAPPING,
    'path': MAPPING, 'train': MAPPING, 'val': optional(MAPPING), 'logger': MAPPING, 'dist_params': optional(MAPPING),
}
# Read by BasicSR for every dataset (build_dataset, build_dataloader, EnlargedSampler, train.py).
LOADER_RULES = {
    'name': STRING, 'type': STRING, 'phase': one_of('train', 'val', 'test'), 'scale': number(0, low_open=True),
    'batch_size_per_gpu': POSITIVE_INT, 'num_worker_per_gpu': NON_NEGATIVE_INT, 'use_shuffle': BOOL,
    'dataset_enlarge_ratio': POSITIVE_NUMBER, 'prefetch_mode': one_of(None, 'cpu', 'cuda'),
    'num_prefetch_queue': POSITIVE_INT, 'pin_memory': BOOL, 'persistent_workers': BOOL,
}
IO_BACKEND_RULES = {'type': one_of(*FileClient._backends)}
# BasicSR's datasets with a table here: (key kinds, keys always required, keys required to train).
HOST_DATASETS = {
    'PairedImageDataset': ({
        'dataroot_gt': STRING, 'dataroot_lq': STRING, 'io_backend': MAPPING, 'filename_tmpl': STRING,
        'meta_info_file': optional(STRING), 'scale': POSITIVE_INT, 'gt_size': POSITIVE_INT, 'use_hflip': BOOL,
        'use_rot': BOOL, 'mean': list_of(number(), 3), 'std': list_of(POSITIVE_NUMBER, 3), 'color': one_of('y'),
    }, ('dataroot_gt', 'dataroot_lq', 'io_backend', 'scale'), ('gt_size', 'use_hflip', 'use_rot')),
}
# Ranges of arch arguments, by name (the same meaning in BasicSR's archs and ours).
ARCH_RANGES = {
    'num_in_ch': POSITIVE_INT, 'num_out_ch': POSITIVE_INT, 'num_feat': POSITIVE_INT, 'num_block': NON_NEGATIVE_INT,
    'upscale': POSITIVE_INT, 'res_scale': POSITIVE_NUMBER, 'img_range': POSITIVE_NUMBER,
    'rgb_mean': list_of(number(), 3), 'num_kernels': POSITIVE_INT, 'num_gs_feat': NON_NEGATIVE_INT,
    'sigma_range': list_of(POSITIVE_NUMBER, 2), 'tau': POSITIVE_NUMBER, 'hidden_list': list_of(POSITIVE_INT),
}
PATH_RULES = {'strict_load_g': BOOL, 'param_key_g': STRING}
TRAIN_RULES = {
    'total_iter': ITERATIONS, 'warmup_iter': integer(-1, whole_floats=True), 'ema_decay': number(0, 1, high_open=True),
    'optim_g': MAPPING, 'scheduler': MAPPING, 'pixel_opt': optional(MAPPING), 'perceptual_opt': optional(MAPPING),
}
OPTIMIZER_RULES = {
    'type': STRING, 'lr': POSITIVE_NUMBER, 'betas': list_of(number(0, 1, high_open=True), 2),
    'eps': POSITIVE_NUMBER, 'weight_decay': number(0), 'momentum': number(0), 'amsgrad': BOOL, 'nesterov': BOOL,
}
SCHEDULERS = {'MultiStepLR': 'MultiStepRestartLR', 'MultiStepRestartLR': 'MultiStepRestartLR',
              'CosineAnnealingRestartLR': 'CosineAnnealingRestartLR'}  # as BaseModel.setup_schedulers
SCHEDULER_RULES = {
    'type': one_of(*SCHEDULERS), 'milestones': list_of(ITERATIONS), 'gamma': POSITIVE_NUMBER,
    'restarts': list_of(integer(0, whole_floats=True)), 'restart_weights': list_of(number(0)),
    'periods': list_of(ITERATIONS),
    'eta_min': number(0), 'last_epoch': integer(-1),
}
LOSS_RULES = {'type': STRING, 'loss_weight': number(0), 'reduction': one_of('none', 'mean', 'sum')}
VAL_RULES = {'val_freq': ITERATIONS, 'save_img': BOOL, 'suffix': optional(STRING), 'pbar': BOOL,
             'metrics': optional(MAPPING)}
METRIC_RULES = {'type': STRING, 'crop_border': NON_NEGATIVE_INT, 'test_y_channel': BOOL,
                'input_order': one_of('HWC', 'CHW'), 'better': one_of('higher', 'lower')}
LOGGER_RULES = {'print_freq': ITERATIONS, 'save_checkpoint_freq': ITERATIONS, 'use_tb_logger': BOOL,
                'wandb': optional(MAPPING)}
WANDB_RULES = {'project': optional(STRING), 'resume_id': optional(STRING)}
DIST_RULES = {'backend': optional(one_of('nccl', 'gloo', 'mpi')), 'port': integer(1, 65535)}


def _has_image(folder: str) -> bool:
    """Whether ``folder`` (or a subfolder) holds an image file; stops at the first one."""
    from .image_io import is_image_file
    return any(is_image_file(name) for _, _, names in os.walk(folder) for name in names)


def registered(registry: Any, name: Any, where: str, what: str) -> Any:
    """The class or function registered as ``name``; ValueError naming ``where`` if there is none."""
    if not isinstance(name, str) or name not in registry:
        close = difflib.get_close_matches(str(name), list(registry._obj_map), n=1)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        raise ValueError(f'{where}: {name!r} is not a registered {what}{hint}')
    return registry.get(name)


def build_network(net_opt: Dict[str, Any]) -> Any:
    """Builds the ``network_g`` an option file describes, after checking its keys against the
    arch's signature, the kinds of its parameters (type hints, else defaults) and ``ARCH_RANGES``;
    raises KeyError or ValueError naming the key."""
    check_section(net_opt, {'type': STRING}, 'network_g', required=('type', ))
    kwargs = {k: v for k, v in net_opt.items() if k != 'type'}
    net_cls = registered(ARCH_REGISTRY, net_opt['type'], 'network_g.type', 'arch')
    check_kwargs(net_cls, kwargs, 'network_g')
    check_section(kwargs, ARCH_RANGES, 'network_g')
    check_typed_kwargs(net_cls, kwargs, 'network_g')
    try:
        return net_cls(**copy.deepcopy(kwargs))
    except ValueError as err:
        if str(err).startswith('network_g.'):
            raise  # our archs name the key
        raise ValueError(f'network_g: {net_opt["type"]} rejects these options: {err}') from err
    except Exception as err:  # an arch failing deep in torch on values whose kinds are right
        raise ValueError(f'network_g: building {net_opt["type"]} failed: {type(err).__name__}: {err}') from err


def check_metric_options(metric_opt: Any, where: str, supplied: Collection[str] = (), closed: bool = False) -> None:
    """Checks one ``val.metrics`` entry: a registered metric, its keys' kinds and its signature.

    Args:
        supplied: Arguments the model passes itself (not required in the file).
        closed: Reject keys that are not the metric's named arguments (for models that own ``val``).
    """
    check_section(metric_opt, METRIC_RULES, where, required=('type', ))
    metric = registered(METRIC_REGISTRY, metric_opt['type'], f'{where}.type', 'metric')
    kwargs = {k: v for k, v in metric_opt.items() if k not in ('type', 'better')}
    check_kwargs(metric, kwargs, where, skip=('img', 'img2', *supplied), closed=closed)


def check_top(opt: Dict[str, Any], is_train: bool) -> Any:
    """Checks the top-level keys (the sections present, ``num_gpu`` against the visible GPUs) and
    returns the registered model class of ``model_type``."""
    required = ['name', 'model_type', 'num_gpu', 'datasets', 'network_g', 'path']
    required += ['train', 'logger'] if is_train else ['val']
    check_section(opt, TOP_RULES, '', required=required)
    visible = torch.cuda.device_count()
    if opt['num_gpu'] != 'auto' and opt['num_gpu'] > visible:
        raise ValueError(f'num_gpu asks for {opt["num_gpu"]} GPUs but {visible} CUDA GPUs are visible; '
                         'use auto (all visible GPUs, or the CPU) or 0 (the CPU)')
    return registered(MODEL_REGISTRY, opt['model_type'], 'model_type', 'model')


def check_datasets(opt: Dict[str, Any], is_train: bool) -> None:
    """Checks every dataset: its name (BasicSR takes the phase from it), BasicSR's loader keys,
    the dataset's own keys (its ``check_options`` hook, or ``HOST_DATASETS``) and its folders."""
    datasets = opt['datasets']
    if not datasets:
        raise KeyError('datasets is empty: name at least one dataset')
    if is_train and 'train' not in datasets:
        raise KeyError('datasets.train is required for training')
    for key, dataset_opt in datasets.items():
        where, phase = f'datasets.{key}', str(key).split('_')[0]
        if not ((key == 'train' or phase == 'val') if is_train else phase in ('train', 'val', 'test')):
            raise KeyError(f'{where}: a dataset is named train, val or val_<suffix> for training, and '
                           f'test_<suffix> (or val_<suffix>) for testing; BasicSR takes the phase from the name')
        needs = ('batch_size_per_gpu', 'num_worker_per_gpu') if phase == 'train' else ()
        check_section(dataset_opt, LOADER_RULES, where, required=('name', 'type', *needs))
        dataset_cls = registered(DATASET_REGISTRY, dataset_opt['type'], f'{where}.type', 'dataset')
        if dataset_opt.get('persistent_workers') and not (phase == 'train' and dataset_opt['num_worker_per_gpu']):
            raise ValueError(f'{where}.persistent_workers needs data workers (num_worker_per_gpu > 0 in the '
                             f'train phase), got {dataset_opt.get("num_worker_per_gpu", 0)!r} workers')
        if dataset_opt.get('prefetch_mode') == 'cuda' and dataset_opt.get('pin_memory') is not True:
            raise ValueError(f'{where}.pin_memory must be true with prefetch_mode cuda, got '
                             f'{dataset_opt.get("pin_memory")!r}')
        checked = dict(dataset_opt, phase=phase)
        if 'scale' in opt:  # parse_options copies the top-level scale into every dataset
            checked['scale'] = opt['scale']
        if 'io_backend' in checked:
            check_section(checked['io_backend'], IO_BACKEND_RULES, f'{where}.io_backend', required=('type', ))
        if hasattr(dataset_cls, 'check_options'):
            dataset_cls.check_options(checked, where=where)
        elif dataset_opt['type'] in HOST_DATASETS:
            _check_host_dataset(checked, where)
        _check_data_folders(checked, where)


def _check_host_dataset(dataset_opt: Dict[str, Any], where: str) -> None:
    rules, required, train_required = HOST_DATASETS[dataset_opt['type']]
    train = dataset_opt['phase'] == 'train'
    check_section(dataset_opt, rules, where, required=(*required, *(train_required if train else ())),
                  owner=dataset_opt['type'])
    template = dataset_opt.get('filename_tmpl', '{}')
    try:
        names = template.format('a'), template.format('b')
    except (IndexError, KeyError, ValueError):
        names = ('', '')
    if names[0] == names[1]:
        raise ValueError(f"{where}.filename_tmpl must hold '{{}}' for the file name (e.g. '{{}}x2'), got {template!r}")
    if train and dataset_opt['gt_size'] % dataset_opt['scale']:
        raise ValueError(f'{where}.gt_size must be a multiple of the scale ({dataset_opt["scale"]}), '
                         f'got {dataset_opt["gt_size"]}')


def _check_data_folders(dataset_opt: Dict[str, Any], where: str) -> None:
    for key in ('dataroot_gt', 'dataroot_lq'):
        path = dataset_opt.get(key)
        if not isinstance(path, str) or not path or '$' in path:
            continue  # absent, or expanded by the dataset itself ($SKIMAGE_DATA)
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f'{where}.{key} does not exist: {path}')
        lists_images = dataset_opt.get('image_names') or dataset_opt.get('meta_info_file')
        if os.path.isdir(path) and not path.endswith('.lmdb') and not lists_images and not _has_image(path):
            raise FileNotFoundError(f'{where}.{key} holds no images: {path}')


def check_path(opt: Dict[str, Any], is_train: bool) -> None:
    """Checks ``path``: checkpoint keys are paths or ~, and a resume state to train from exists."""
    path_opt = opt['path']
    # parse_options expands `~` in these keys: they must be strings (or ~).
    paths = [k for k in path_opt if 'resume_state' in k or 'pretrain_network' in k]
    rules = dict(PATH_RULES, **{k: optional(STRING) for k in paths})
    check_section(path_opt, rules, 'path')
    resume_state = path_opt.get('resume_state')
    if is_train and resume_state and not os.path.isfile(os.path.expanduser(resume_state)):
        raise FileNotFoundError(f'path.resume_state does not exist: {resume_state}')


def check_train(opt: Dict[str, Any], model_cls: Any) -> None:
    """Checks ``train``: iteration counts, the optimizer and scheduler (built on a dummy parameter)
    and the losses against their signatures."""
    from basicsr.models.sr_model import SRModel
    train = check_section(opt['train'], TRAIN_RULES, 'train', required=('total_iter', 'optim_g', 'scheduler'))
    _check_optimizer(train['optim_g'], model_cls, 'train.optim_g')
    _check_scheduler(train['scheduler'], 'train.scheduler')
    for key in ('pixel_opt', 'perceptual_opt'):
        if train.get(key):
            loss_opt = check_section(train[key], LOSS_RULES, f'train.{key}', required=('type', ))
            loss_cls = registered(LOSS_REGISTRY, loss_opt['type'], f'train.{key}.type', 'loss')
            check_kwargs(loss_cls, loss_opt, f'train.{key}', extra=('type', ))
    if issubclass(model_cls, SRModel) and not (train.get('pixel_opt') or train.get('perceptual_opt')):
        raise KeyError(f'train.pixel_opt or train.perceptual_opt is required by {model_cls.__name__}')


def _dummy_parameter() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(1))


def _check_optimizer(optim_opt: Any, model_cls: Any, where: str) -> None:
    """Checks ``train.optim_g`` against the model's ``get_optimizer`` and the torch optimizer's
    signature, then builds it on a dummy parameter (torch checks its ranges)."""
    check_section(optim_opt, OPTIMIZER_RULES, where, required=('type', ))
    optim_type, kwargs = optim_opt['type'], {k: v for k, v in optim_opt.items() if k != 'type'}
    optimizer_cls = getattr(torch.optim, optim_type, None)
    if not (inspect.isclass(optimizer_cls) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        raise ValueError(f'{where}.type must name a torch.optim optimizer, got {optim_type!r}')
    check_kwargs(model_cls.get_optimizer, kwargs, where, skip=('self', 'optim_type', 'params'), closed=False)
    check_kwargs(optimizer_cls, kwargs, where, skip=('params', ))
    stub = object.__new__(model_cls)  # get_optimizer reads nothing of the model
    try:
        model_cls.get_optimizer(stub, optim_type, [_dummy_parameter()], **copy.deepcopy(kwargs))
    except NotImplementedError as err:
        raise ValueError(f'{where}.type: {model_cls.__name__}.get_optimizer does not build {optim_type!r} '
                         f'({err})') from err
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where}: {optim_type} rejects these options: {err}') from err


def _check_scheduler(scheduler_opt: Any, where: str) -> None:
    """Checks ``train.scheduler`` against the signature of the BasicSR scheduler its type selects,
    then builds it on a dummy optimizer (BasicSR's own assertions run)."""
    from basicsr.models import lr_scheduler
    check_section(scheduler_opt, SCHEDULER_RULES, where, required=('type', ))
    scheduler_cls = getattr(lr_scheduler, SCHEDULERS[scheduler_opt['type']])
    kwargs = {k: v for k, v in scheduler_opt.items() if k != 'type'}
    check_kwargs(scheduler_cls, kwargs, where, skip=('optimizer', ))
    try:
        scheduler_cls(torch.optim.SGD([_dummy_parameter()], lr=1.0), **copy.deepcopy(kwargs))
    except (AssertionError, TypeError, ValueError) as err:
        raise ValueError(f'{where}: {scheduler_cls.__name__} rejects these options: {err}') from err


def check_val(opt: Dict[str, Any], is_train: bool, model_cls: Any) -> None:
    """Checks ``val`` (required by ``basicsr test``) and, for models without a ``check_options``
    hook of their own, its metrics."""
    from basicsr.models.sr_model import SRModel
    val = opt.get('val')
    if val is None:
        if not is_train:
            raise KeyError('val is required by basicsr test (val.save_img at least)')
        return
    required = ['save_img'] + (['val_freq'] if is_train else [])
    if not is_train and val.get('save_img') and model_cls.nondist_validation is SRModel.nondist_validation:
        required.append('suffix')  # SRModel reads val.suffix when it saves test images
    check_section(val, VAL_RULES, 'val', required=required)
    if not hasattr(model_cls, 'check_options'):  # a model with its own check owns its metrics
        for name, metric_opt in (val.get('metrics') or {}).items():
            check_metric_options(metric_opt, f'val.metrics.{name}')


def check_logger(opt: Dict[str, Any]) -> None:
    """Checks ``logger`` for training, and that the loggers it turns on are installed."""
    logger = check_section(opt['logger'], LOGGER_RULES, 'logger',
                           required=('print_freq', 'save_checkpoint_freq', 'use_tb_logger'))
    wandb = logger.get('wandb') or {}
    check_section(wandb, WANDB_RULES, 'logger.wandb')
    if 'debug' in opt['name']:
        return  # BasicSR starts neither logger in debug runs
    if wandb.get('project') is not None:
        if not logger['use_tb_logger']:
            raise ValueError('logger.use_tb_logger must be true when logger.wandb.project is set (wandb syncs '
                             'tensorboard), got false')
        if importlib.util.find_spec('wandb') is None:
            raise ValueError(f'logger.wandb.project is {wandb["project"]!r} but wandb is not installed '
                             '(pip install wandb, or set the project to ~)')
    if logger['use_tb_logger'] and importlib.util.find_spec('tensorboard') is None:
        raise ValueError('logger.use_tb_logger is true but tensorboard is not installed (pip install tensorboard, '
                         'or set it to false)')


def check_dist(opt: Dict[str, Any]) -> None:
    """Checks ``dist_params``: the keys BasicSR's ``init_dist`` takes (backend, port)."""
    check_section(opt.get('dist_params') or {}, DIST_RULES, 'dist_params', closed=True)
