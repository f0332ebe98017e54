"""basicsr explain and the validation figures (issue 13): GaussianSR's bank and kernel choices, drawn."""
import cv2
import numpy as np
import pytest
import torch

from basicsr.models import build_model
from gaussiansr_plugin.archs import GaussianSR
from gaussiansr_plugin.inference import explain
from gaussiansr_plugin.visual.figures import FIGURE_SIZES, principal_axes
from gaussiansr_plugin.visual.kernels import kernel_stats
from test_upscale import SMALL, SMALL_GAUSSIANSR, write_model


def test_explain_writes_every_figure_at_its_size(tmp_path, capsys):
    model_arg = write_model(tmp_path / 'model', dict(type='GaussianSR', **SMALL_GAUSSIANSR))
    image = tmp_path / 'photo.png'
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (21, 27, 3), dtype=np.uint8))
    assert explain.main(['--model', model_arg, '-i', str(image), '-o', str(tmp_path / 'fig'), '--tile', '8']) == 0
    out = capsys.readouterr().out
    assert f'{21 * 27:,} LR pixels select' in out and 'kernel_max_prob 0.' in out
    for name, (width, height) in FIGURE_SIZES.items():
        img = cv2.imread(str(tmp_path / 'fig' / f'photo_{name}.png'))
        assert img is not None and img.shape == (height, width, 3), name
        assert img.std() > 10, f'{name} is blank'


def test_kernel_choices_are_the_same_in_tiles():
    torch.manual_seed(0)
    net = GaussianSR(**SMALL_GAUSSIANSR).eval().double()
    lq = torch.rand(1, 3, 23, 19, dtype=torch.float64)
    whole = kernel_stats(net, lq, tile=0)
    tiled = kernel_stats(net, lq, tile=5)
    assert np.array_equal(whole.labels, tiled.labels)
    expected = net.classifier(net.encoder(lq)).argmax(1)[0].numpy()
    assert np.array_equal(whole.labels, expected) and whole.counts.sum() == 23 * 19
    # The classifier's confidence is validation's kernel_max_prob: the one the net tallies in eval.
    net.pop_kernel_max_prob()
    net.encode(lq)
    assert np.allclose(tiled.max_prob, whole.max_prob, rtol=0, atol=1e-12)
    assert abs(whole.max_prob.mean() - net.pop_kernel_max_prob()) < 1e-12


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_kernel_choices_run_at_the_precision_asked(precision):
    torch.manual_seed(0)
    net = GaussianSR(**SMALL_GAUSSIANSR).eval()
    ran = set()
    net.classifier.register_forward_hook(lambda module, args, out: ran.add(out.dtype))
    stats = kernel_stats(net, torch.rand(1, 3, 12, 10), tile=0, precision=precision)
    assert ran == {dict(fp32=torch.float32, bf16=torch.bfloat16)[precision]} and stats.counts.sum() == 12 * 10


def test_explain_refuses_a_network_without_gaussians(tmp_path, capsys):
    model_arg = write_model(tmp_path / 'model', dict(type='LIIF', **SMALL))
    image = tmp_path / 'a.png'
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert explain.main(['--model', model_arg, '-i', str(image), '-o', str(tmp_path / 'fig')]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'LIIF' in err


def test_principal_axes_are_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    sx, sy, rho = rng.uniform(0.1, 1, 50), rng.uniform(0.1, 1, 50), rng.uniform(-0.9, 0.9, 50)
    major, minor, angle = principal_axes(sx, sy, rho)
    for i in range(50):
        cov = np.array([[sx[i]**2, rho[i] * sx[i] * sy[i]], [rho[i] * sx[i] * sy[i], sy[i]**2]])
        values, vectors = np.linalg.eigh(cov)
        assert np.allclose([minor[i]**2, major[i]**2], values)
        direction = np.array([np.cos(np.radians(angle[i])), np.sin(np.radians(angle[i]))])
        assert abs(abs(direction @ vectors[:, 1]) - 1) < 1e-9


class RecordingLogger:
    """Stands in for BasicSR's SummaryWriter."""

    def __init__(self):
        self.images = {}

    def add_scalar(self, *args, **kwargs):
        pass

    def add_image(self, tag, img, step, dataformats='CHW'):
        self.images[tag] = (img, step, dataformats)


@pytest.mark.parametrize('arch', ['GaussianSR', 'LIIF'])
def test_validation_logs_the_figures_to_tensorboard(arch, tmp_path):
    from basicsr.data import build_dataset
    from helpers import write_smooth_images
    write_smooth_images(tmp_path, 1, size=(24, 32))
    dataset = build_dataset(dict(name='val_x2', type='ArbitraryScalePairedDataset', dataroot_gt=str(tmp_path),
                                 phase='val', scale=2))
    network_g = dict(type='GaussianSR', **SMALL_GAUSSIANSR) if arch == 'GaussianSR' else dict(type='LIIF', **SMALL)
    model = build_model(dict(model_type='ArbitraryScaleSRModel', num_gpu=0, is_train=False, dist=False, name='m',
                             network_g=network_g, path=dict(),
                             val=dict(query_chunk=1000, metrics=dict(psnr=dict(type='calculate_psnr_pt')))))
    logger = RecordingLogger()
    model.validation(torch.utils.data.DataLoader(dataset), current_iter=7, tb_logger=logger, save_img=False)
    if arch != 'GaussianSR':
        assert logger.images == {}
        return
    assert set(logger.images) == {f'explain_val_x2/{name}' for name in FIGURE_SIZES}
    for name, (width, height) in FIGURE_SIZES.items():
        img, step, dataformats = logger.images[f'explain_val_x2/{name}']
        assert img.shape == (height, width, 3) and img.dtype == np.uint8 and step == 7 and dataformats == 'HWC'
