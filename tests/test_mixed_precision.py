"""Mixed precision (train.mixed_precision / val.mixed_precision) and channels_last (ours)."""
import pytest
import skimage.data
import torch

from basicsr.metrics.psnr_ssim import calculate_psnr_pt
from basicsr.models import build_model
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.archs.metasr_arch import MetaSR
from gaussiansr_plugin.utils.loading import load_net
from gaussiansr_plugin.utils.coord import make_cell, make_coord
from gaussiansr_plugin.utils.precision import autocast, serving_precision
from gaussiansr_plugin.utils.resize import imresize_matlab

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


def _wide_photo_pair():
    """(LR (1, 3, 32, 512), HR (1, 3, 64, 1024)): rows 350-413 of scikit-image's astronaut beside its
    mirror image (1,024 wide and continuous at the seam; a textured band), LR by MATLAB's bicubic.

    The LR is 512 pixels wide: bfloat16 spaces the normalized coordinates of its right half by 2^-8,
    one LR pixel, so a coordinate rounded to it lands up to half a pixel off.
    """
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    hr = torch.cat([photo, photo.flip(-1)], dim=-1)[:, 350:414]
    return imresize_matlab(hr, (32, 512)).clamp(0, 1)[None], hr[None]


def _net_for_precision_test(name):
    """The shipped weights of GaussianSR and LIIF; MetaSR (none shipped) at a fixed-seed random init
    with the RGB skip, its output layer drawn small so that the predicted residual matters (about
    -0.6 dB from bicubic here) without swamping the image."""
    if name != 'MetaSR':
        return load_net(name.lower(), torch.device('cpu')).net
    torch.manual_seed(0)
    net = MetaSR(rgb_skip=True).eval()
    for param in net.imnet[-1].parameters():
        torch.nn.init.normal_(param, std=1e-3)
    return net


@torch.no_grad()
def _upscale(net, lq, out_size, precision, chunk=16384):
    coord = make_coord(out_size, device=lq.device)[None]
    cell = make_cell(out_size, coord.shape[1], device=lq.device)[None]
    with autocast(lq.device, precision):
        state = net.encode(lq)
        out = torch.cat([net.query(state, coord[:, i:i + chunk], cell[:, i:i + chunk])
                         for i in range(0, coord.shape[1], chunk)], dim=1)
    return out.float().transpose(1, 2).reshape(1, 3, *out_size)


@pytest.mark.parametrize('name', ['GaussianSR', 'LIIF', 'MetaSR'])
def test_half_precision_keeps_the_psnr_of_fp32_on_a_wide_image(name, device):
    # Coordinates, cells, positions and sampling weights stay float32 under autocast; only the heavy
    # matrix work runs in half precision. Casting the query grid to the encoder's bfloat16 cost the
    # shipped GaussianSR 1.86 dB here. fp16 where the device is meant for it: on the CPU, fp16
    # autocast runs (convolutions and linear layers give float16) but was 70-200x slower than fp32.
    precisions = ['bf16'] if device.type == 'cpu' else ['fp16'] + (['bf16'] if torch.cuda.is_bf16_supported() else [])
    net = _net_for_precision_test(name).to(device)
    lq, hr = (t.to(device) for t in _wide_photo_pair())

    def psnr(precision):
        out = _upscale(net, lq, hr.shape[-2:], precision).clamp(0, 1)
        return float(calculate_psnr_pt(out, hr, crop_border=2, test_y_channel=True))

    fp32 = psnr('fp32')
    assert fp32 > 25  # a real upscale, so that the comparison means something
    for precision in precisions:
        assert psnr(precision) == pytest.approx(fp32, abs=0.02), precision


def test_serving_precision_is_decided_in_one_place(monkeypatch):
    cpu = torch.device('cpu')
    for requested in ('fp32', 'bf16', 'fp16'):  # asked for: served as asked
        assert serving_precision(cpu, requested) == requested
    # auto: fp32 on the CPU, even with native bfloat16 (bf16 falls short of the 2x target there)
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: True, raising=False)
    assert serving_precision(cpu) == 'fp32'
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False, raising=False)
    assert serving_precision(cpu) == 'fp32'
    # on CUDA: bf16 where the GPU has it, else fp16 (the device is not touched)
    for native, expected in ((True, 'bf16'), (False, 'fp16')):
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True, n=native: n)
        assert serving_precision(torch.device('cuda'), 'auto') == expected
    with pytest.raises(ValueError, match=r"--precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\], got 'bf32'"):
        serving_precision(cpu, 'bf32')


def test_upscale_refuses_contradicting_precision_flags(tmp_path, capsys):
    from gaussiansr_plugin.inference import upscale
    (tmp_path / 'a.png').write_bytes(b'')  # never read: the flags are checked first
    status = upscale.main(['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--fp32', '--precision', 'bf16'])
    err = capsys.readouterr().err
    assert status == 1 and err.count('\n') == 1 and '--fp32 and --precision bf16 contradict' in err, err
    assert not (tmp_path / 'o').exists()
