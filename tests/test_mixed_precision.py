"""Mixed precision (train.mixed_precision / val.mixed_precision) and channels_last (ours)."""
import pytest
import torch

from basicsr.models import build_model
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.utils.coord import make_cell, make_coord

TRAIN = dict(ema_decay=0, optim_g=dict(type='Adam', lr=1e-3, weight_decay=0, betas=[0.9, 0.999]),
             scheduler=dict(type='MultiStepLR', milestones=[10**6], gamma=0.5), total_iter=10,
             pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean'))


def _model(is_train=False, train_precision=None, val_precision=None, device=torch.device('cpu'), **top):
    train = dict(TRAIN, **({'mixed_precision': train_precision} if train_precision else {}))
    val = dict(query_chunk=500, **({'mixed_precision': val_precision} if val_precision else {}))
    opt = dict(model_type='ArbitraryScaleSRModel', num_gpu=int(device.type == 'cuda'), is_train=is_train,
               dist=False, name='m', network_g=dict(type='GaussianSR', **TINY_GAUSSIANSR), path=dict(), val=val,
               **top)
    if is_train:
        opt['train'] = train
    torch.manual_seed(0)
    model = build_model(opt)
    for p in model.get_bare_model(model.net_g).decoder.parameters():  # make the decoder matter
        torch.nn.init.normal_(p, std=0.05)
    return model


def _batch(device):
    gen = torch.Generator().manual_seed(1)
    coord = make_coord((24, 24))[torch.randperm(576, generator=gen)[:200]]
    batch = dict(lq=torch.rand(2, 3, 12, 12, generator=gen), gt=torch.rand(2, 200, 3, generator=gen),
                 coord=coord.expand(2, -1, -1), cell=make_cell((24, 24), 200).expand(2, -1, -1))
    return {key: value.to(device) for key, value in batch.items()}


def test_bf16_inference_is_close_to_fp32(device):
    lq = torch.rand(1, 3, 11, 13, device=device)
    fp32 = _model(device=device).predict(lq, (30, 35))
    bf16 = _model(val_precision='bf16', device=device).predict(lq, (30, 35))
    assert bf16.dtype == torch.float32
    difference = (bf16 - fp32).abs()
    assert 0 < difference.max() < 0.05  # autocast did run, with bfloat16's ~3 significant digits
    assert difference.mean() < 0.01


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_mixed_precision_training_step_matches_fp32(precision, device):
    models = {p: _model(is_train=True, train_precision=p, device=device) for p in ('fp32', precision)}
    for model in models.values():
        model.feed_data(_batch(device))
        model.optimize_parameters(1)
    assert models[precision].grad_scaler.is_enabled() == (precision == 'fp16')
    loss = {p: m.log_dict['l_pix'] for p, m in models.items()}
    assert 0 < abs(loss[precision] - loss['fp32']) < 0.02 * loss['fp32']  # autocast ran, and is close
    # Weights stay float32 and take the same Adam step (its size is the learning rate, its sign
    # the gradient's) for nearly every parameter.
    before = _model(device=device).net_g.state_dict()  # the same initial weights
    steps = {p: torch.cat([(v - before[k]).flatten() for k, v in m.get_bare_model(m.net_g).state_dict().items()])
             for p, m in models.items()}
    assert all(v.dtype == torch.float32 for v in models[precision].get_bare_model(models[precision].net_g).parameters())
    assert (torch.sign(steps[precision]) == torch.sign(steps['fp32'])).float().mean() > 0.9


@pytest.mark.parametrize('section', ['train', 'val'])
def test_bad_mixed_precision_names_the_key(section):
    kwargs = {f'{section}_precision': 'bfloat16'}
    with pytest.raises(ValueError, match=rf"{section}\.mixed_precision must be one of \['fp32', 'bf16', 'fp16'\], "
                                         r"got 'bfloat16'"):
        _model(is_train=True, **kwargs)


def test_channels_last_gives_the_same_output(device):
    lq = torch.rand(1, 3, 11, 13, device=device)
    model = _model(device=device, channels_last=True)
    assert model.net_g.encoder.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model.predict(lq, (30, 35)), _model(device=device).predict(lq, (30, 35)), atol=1e-5)
    with pytest.raises(ValueError, match='channels_last must be true or false'):
        _model(channels_last='yes')
