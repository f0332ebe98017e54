"""Training and evaluation of query-based arbitrary-scale SR networks in BasicSR."""
import hashlib
from collections import OrderedDict
from os import path as osp
from typing import Any, Dict, Optional, Sequence

import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import METRIC_REGISTRY, MODEL_REGISTRY
from ..render.tiling import QUERY_CHUNK, render_image
from ..utils.file_io import atomic_imwrite
from ..utils.metrics import metric_options, metric_values
from ..utils.option_rules import POSITIVE_INT, check_value
from ..utils.option_sections import check_metric_options
from ..utils.precision import autocast, check_precision, grad_scaler
from ..utils.resize import imresize_matlab
from ..utils.step_guard import skip_non_finite_step


# The `val` keys BasicSR's pipelines and this model read.
VAL_KEYS = {'val_freq', 'save_img', 'suffix', 'pbar', 'query_chunk', 'metrics', 'mixed_precision'}
# The `train` keys BasicSR's pipelines and this model read (perceptual_opt is refused by name).
TRAIN_KEYS = {'total_iter', 'warmup_iter', 'ema_decay', 'optim_g', 'scheduler', 'pixel_opt', 'perceptual_opt',
              'mixed_precision'}


@MODEL_REGISTRY.register()
class ArbitraryScaleSRModel(SRModel):
    """SRModel for networks called as ``net(lq, coord, cell)`` (see ``archs/arch_util.py``).

    Training feeds query batches (lq, coord, cell, gt) from ``ArbitraryScalePairedDataset``.
    ``test`` runs the encoder once per image and the queries in chunks of ``val.query_chunk``
    (``render/tiling.render``, as ``basicsr upscale``).
    Validation evaluates float outputs (clamped to [0, 1], not rounded) with each val set's own
    scale and shave, shards the images over ranks in distributed runs and reports bicubic
    interpolation beside the network.
    """

    @staticmethod
    def check_options(opt: Dict[str, Any]) -> None:
        """Rejects options this model cannot honour, naming the key, before any work starts."""
        if 'scale' in opt:
            raise KeyError(f'scale: {opt["scale"]!r} at the top level would overwrite every dataset\'s own scale '
                           '(BasicSR copies it into each dataset); remove it and give each val/test dataset a scale.')
        train_opt = opt.get('train') or {}
        if opt.get('is_train', True) and train_opt:
            unknown = sorted(set(train_opt) - TRAIN_KEYS)
            if unknown:
                raise KeyError(f'train.{unknown[0]}: unknown key; allowed: {", ".join(sorted(TRAIN_KEYS))}')
            if not train_opt.get('pixel_opt'):
                raise KeyError('train.pixel_opt is required: ArbitraryScaleSRModel trains with a pixel loss '
                               'on queries.')
            if train_opt.get('perceptual_opt'):
                raise KeyError('train.perceptual_opt is not supported: training queries are scattered pixels, '
                               'not images.')
        val_opt = opt.get('val') or {}
        unknown = sorted(set(val_opt) - VAL_KEYS)
        if unknown:
            raise KeyError(f'val.{unknown[0]}: unknown key; allowed: {", ".join(sorted(VAL_KEYS))}')
        check_value(val_opt.get('query_chunk', QUERY_CHUNK), POSITIVE_INT, 'val.query_chunk')
        for section, section_opt in (('train', train_opt), ('val', val_opt)):  # see utils/precision.py
            check_precision(section_opt.get('mixed_precision', 'fp32'), f'{section}.mixed_precision')
        if not isinstance(opt.get('channels_last', False), bool):
            raise ValueError(f'channels_last must be true or false, got {opt["channels_last"]!r}')
        for name, metric_opt in (val_opt.get('metrics') or {}).items():
            metric_type = metric_opt.get('type') if isinstance(metric_opt, dict) else None
            if not (isinstance(metric_type, str) and metric_type in METRIC_REGISTRY and metric_type.endswith('_pt')):
                raise ValueError(f'val.metrics.{name}.type: {metric_type!r} is not a float-tensor metric; '
                                 'use calculate_psnr_pt or calculate_ssim_pt (outputs are evaluated as float, '
                                 'not rounded to uint8).')
            if 'crop_border' in metric_opt:
                raise KeyError(f'val.metrics.{name}.crop_border: the border is set per val dataset by its '
                               '`shave` key (default: ceil(scale)); remove crop_border.')
            check_metric_options(metric_opt, f'val.metrics.{name}', supplied=('crop_border', ), closed=True)

    def __init__(self, opt: Dict[str, Any]) -> None:
        self.check_options(opt)
        super().__init__(opt)
        self.bicubic_results: Dict[str, Dict[str, float]] = {}
        self.train_precision = (opt.get('train') or {}).get('mixed_precision', 'fp32')
        self.val_precision = (opt.get('val') or {}).get('mixed_precision', 'fp32')
        self.grad_scaler = grad_scaler(self.device, self.train_precision)

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        # Top-level `channels_last: true` (ours): NHWC convolutions, before any DDP wrapping.
        if self.opt.get('channels_last'):
            net = net.to(memory_format=torch.channels_last)
        return super().model_to_device(net)

    def feed_data(self, data: Dict[str, Any]) -> None:
        super().feed_data(data)
        self.coord = data['coord'].to(self.device) if 'coord' in data else None
        self.cell = data['cell'].to(self.device) if 'cell' in data else None
        self.scale = data.get('scale')
        self.batch_files = data.get('gt_path')

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        with autocast(self.device, self.train_precision):
            self.output = self.net_g(self.lq, self.coord, self.cell)
        l_pix = self.cri_pix(self.output.float(), self.gt)
        if skip_non_finite_step(l_pix, current_iter, self.batch_files):
            # Every rank skips together (no weight or EMA update): see skip_non_finite_step.
            self.log_dict = OrderedDict(l_pix=float('nan'))
            return
        self.grad_scaler.scale(l_pix).backward()  # fp16: scaled loss, and no step on inf gradients
        self.grad_scaler.step(self.optimizer_g)
        self.grad_scaler.update()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_pix=l_pix))
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def save(self, epoch: int, current_iter: int) -> None:
        self._log_weight_sync(current_iter)
        super().save(epoch, current_iter)

    def _log_weight_sync(self, current_iter: int) -> None:
        """In distributed runs, checks that every rank holds the same weights (a DDP desync would
        otherwise go unnoticed) and logs the verdict."""
        _, world_size = get_dist_info()
        if world_size == 1:
            return
        digest = hashlib.sha256()
        for param in self.get_bare_model(self.net_g).parameters():
            digest.update(param.detach().cpu().numpy().tobytes())
        digests = [None] * world_size
        torch.distributed.all_gather_object(digests, digest.hexdigest())
        logger = get_root_logger()
        if len(set(digests)) == 1:
            logger.info(f'Weights identical on all {world_size} ranks at iter {current_iter} '
                        f'(sha256 {digests[0][:16]})')
        else:
            logger.error(f'Weights DIFFER between ranks at iter {current_iter}: '
                         + ', '.join(d[:16] for d in digests))

    def _eval_net(self) -> torch.nn.Module:
        """The bare network used for evaluation: EMA when kept, never the DDP wrapper."""
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    @torch.no_grad()
    def predict(self, lq: torch.Tensor, out_size: Sequence[int], net: Optional[torch.nn.Module] = None,
                precision: Optional[str] = None) -> torch.Tensor:
        """Super-resolves ``lq`` (B, 3, h, w) to ``out_size`` (H, W): ``render/tiling.render_image``, the
        render loop of ``basicsr upscale`` in one tile (encoder once per image, queries in chunks).

        Memory beyond the output image is bounded by ``val.query_chunk`` queries (or one output
        row). Precision: ``precision`` when the caller decides it (the benchmark's ``--precision``),
        else ``val.mixed_precision`` (``utils/precision.py``).
        """
        net = net or self._eval_net()
        was_training = net.training
        net.eval()
        chunk = (self.opt.get('val') or {}).get('query_chunk', QUERY_CHUNK)
        output = render_image(net, lq, out_size, chunk, precision or self.val_precision)
        net.train(was_training)
        return output

    def test(self) -> None:
        if hasattr(self, 'gt'):
            out_size = self.gt.shape[-2:]
        else:
            scale = float(self.scale.reshape(-1)[0])
            out_size = [round(n * scale) for n in self.lq.shape[-2:]]
        self.output = self.predict(self.lq, out_size)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self._validate(dataloader, current_iter, tb_logger, save_img)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self._validate(dataloader, current_iter, tb_logger, save_img)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        super().validation(dataloader, current_iter, tb_logger, save_img)
        if tb_logger is not None:  # rank 0; draws GaussianSR's bank and kernel choices (visual/kernels.py)
            from ..visual.kernels import log_validation_figures  # matplotlib only when there is a logger
            log_validation_figures(self._eval_net(), dataloader.dataset, tb_logger, current_iter)

    def _validate(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        """Evaluates one val set; each rank takes every world_size-th image, metrics are summed."""
        dataset = dataloader.dataset
        dataset_name = dataset.opt['name']
        metric_opts = self._metric_opts(dataset)
        rank, world_size = get_dist_info()
        need_bicubic = dataset_name not in self.bicubic_results
        names = list(metric_opts)
        # sums[0]: the network; sums[1]: bicubic; last column: image count.
        sums = torch.zeros(2, len(names) + 1, dtype=torch.float64, device=self.device)
        indices = range(rank, len(dataset), world_size)
        # val.pbar, as BasicSR's SRModel: a progress bar (rank 0's share of the images).
        show_pbar = (self.opt.get('val') or {}).get('pbar') and rank == 0
        pbar = tqdm(total=len(indices), unit='image') if show_pbar else None
        for index in indices:
            val_data = default_collate([dataset[index]])
            self.feed_data(val_data)
            self.test()
            sr = self.output.clamp(0, 1)
            img_name = osp.splitext(osp.basename(val_data['gt_path'][0]))[0]
            if save_img:
                atomic_imwrite(tensor2img(sr), self._visualization_path(dataset_name, img_name, current_iter))
            if hasattr(self, 'gt'):
                sums[0, :-1] += self._metric_values(sr, self.gt, metric_opts)
                if need_bicubic:
                    bicubic = imresize_matlab(self.lq, self.gt.shape[-2:]).clamp(0, 1)
                    sums[1, :-1] += self._metric_values(bicubic, self.gt, metric_opts)
                sums[:, -1] += 1
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar is not None:
            pbar.close()
        if world_size > 1:
            torch.distributed.all_reduce(sums)
        # GaussianSR: how sure its classifier is of each pixel's kernel (1: one-hot, 1/K: uniform).
        max_prob = getattr(self._eval_net(), 'pop_kernel_max_prob', lambda: None)()
        if max_prob is not None:
            get_root_logger().info(f'Validation {dataset_name}: kernel_max_prob {max_prob:.4f}')
            if tb_logger:
                tb_logger.add_scalar(f'kernel_max_prob/{dataset_name}', max_prob, current_iter)
        count = sums[0, -1].item()
        if not names or count == 0:
            return
        means = (sums[:, :-1] / count).tolist()
        if not hasattr(self, 'metric_results'):
            self.metric_results = {}
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = dict(zip(names, means[0]))
        if need_bicubic:
            self.bicubic_results[dataset_name] = dict(zip(names, means[1]))
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        self._log_bicubic_comparison(dataset_name)

    def _metric_opts(self, dataset) -> Dict[str, Dict[str, Any]]:
        """The val metrics with this val set's shave (and Y-channel choice, when it sets one)."""
        return metric_options((self.opt.get('val') or {}).get('metrics') or {}, dataset)

    @staticmethod
    def _metric_values(img: torch.Tensor, gt: torch.Tensor, metric_opts: Dict[str, Dict[str, Any]]) -> torch.Tensor:
        return torch.tensor(metric_values(img, gt, metric_opts), dtype=torch.float64, device=gt.device)

    def _log_bicubic_comparison(self, dataset_name: str) -> None:
        bicubic = self.bicubic_results.get(dataset_name, {})
        parts = []
        for name, value in self.metric_results.items():
            if name in bicubic:
                better_is_higher = self.best_metric_results[dataset_name][name]['better'] == 'higher'
                gain = value - bicubic[name]
                verdict = 'beats' if (gain > 0) == better_is_higher and gain != 0 else 'does NOT beat'
                parts.append(f'{name} {value:.4f} vs bicubic {bicubic[name]:.4f} ({gain:+.4f}): {verdict} bicubic')
        if parts:
            get_root_logger().info(f'Validation {dataset_name} against bicubic: ' + '; '.join(parts))

    def _visualization_path(self, dataset_name: str, img_name: str, current_iter) -> str:
        # One folder per val set: the same image at several scales must not collide.
        suffix = current_iter if self.opt['is_train'] else (self.opt['val'].get('suffix') or self.opt['name'])
        return osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}.png')
