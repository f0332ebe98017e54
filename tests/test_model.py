"""ArbitraryScaleSRModel: chunked inference and float metrics."""
import pytest
import torch

from basicsr.models import build_model
from conftest import TINY_GAUSSIANSR


def _model(query_chunk, device=torch.device('cpu')):
    opt = dict(model_type='ArbitraryScaleSRModel', num_gpu=int(device.type == 'cuda'), is_train=False, dist=False,
               name='m', network_g=dict(type='GaussianSR', **TINY_GAUSSIANSR), path=dict(),
               val=dict(query_chunk=query_chunk, metrics=dict(psnr=dict(type='calculate_psnr_pt'))))
    torch.manual_seed(0)
    model = build_model(opt)
    for p in model.net_g.decoder.parameters():  # make the decoder matter
        torch.nn.init.normal_(p, std=0.05)
    return model


@pytest.mark.parametrize('out_size', [(23, 31), (40, 40), (7, 9)])
def test_chunked_prediction_equals_one_pass(out_size, device):
    lq = torch.rand(2, 3, 9, 12, device=device)
    whole = _model(query_chunk=10**6, device=device).predict(lq, out_size)
    chunked = _model(query_chunk=97, device=device).predict(lq, out_size)
    assert whole.shape == (2, 3, *out_size)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_test_without_gt_uses_the_scale_for_the_output_size():
    model = _model(query_chunk=1000)
    model.feed_data({'lq': torch.rand(1, 3, 10, 7), 'scale': torch.tensor([2.3])})
    model.test()
    assert model.output.shape == (1, 3, 23, 16)


def test_rejects_uint8_metrics_and_global_scale():
    opt = dict(model_type='ArbitraryScaleSRModel', num_gpu=0, is_train=False, dist=False, name='m',
               network_g=dict(type='GaussianSR', **TINY_GAUSSIANSR), path=dict(),
               val=dict(metrics=dict(psnr=dict(type='calculate_psnr', crop_border=4))))
    with pytest.raises(ValueError, match='val.metrics.psnr.type'):
        build_model(opt)
    with pytest.raises(KeyError, match='scale'):
        build_model(dict(opt, scale=4, val={}))


@pytest.mark.parametrize('pbar', [True, False])
def test_val_pbar_shows_a_progress_bar_over_the_val_images(pbar, tmp_path, capfd):
    from basicsr.data import build_dataset
    from helpers import write_smooth_images
    write_smooth_images(tmp_path, 3, size=(24, 32))
    dataset = build_dataset(dict(name='bar', type='ArbitraryScalePairedDataset', dataroot_gt=str(tmp_path),
                                 phase='val', scale=2))
    model = _model(query_chunk=1000)
    model.opt['val']['pbar'] = pbar
    capfd.readouterr()
    model.validation(torch.utils.data.DataLoader(dataset), current_iter=1, tb_logger=None, save_img=False)
    err = capfd.readouterr().err
    assert ('3/3' in err and 'image' in err) == pbar
