"""basicsr upscale (issue 13): exact tiles, one encoder pass for several sizes, image formats, bad input."""
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gaussiansr_plugin import weights
from gaussiansr_plugin.archs import GaussianSR, LIIF, MetaSR
from gaussiansr_plugin.inference import upscale
from gaussiansr_plugin.render.receptive_field import encoder_reach, receptive_field
from gaussiansr_plugin.render.tiling import plan_spans, render
from gaussiansr_plugin.utils import loading
from gaussiansr_plugin.utils.coord import make_cell, make_coord
from gaussiansr_plugin.utils.file_io import is_temp_file
from gaussiansr_plugin.utils.precision import serving_precision

SMALL = dict(num_feat=8, num_block=1, hidden_list=[16, 16])
SMALL_GAUSSIANSR = dict(SMALL, num_kernels=8, num_gs_feat=4)
NETS = {
    'gaussiansr': lambda: GaussianSR(**SMALL_GAUSSIANSR),
    'gaussiansr_fourier_skip': lambda: GaussianSR(**SMALL_GAUSSIANSR, pos_encoding='fourier', rgb_skip=True),
    'gaussiansr_no_splat': lambda: GaussianSR(**dict(SMALL, num_gs_feat=0)),
    'liif': lambda: LIIF(**SMALL, rgb_skip=True),
    'metasr': lambda: MetaSR(num_feat=8, num_block=1, hidden_list=[16]),
}


def random_net(name: str, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A small net whose every layer matters (the zero-initialized skip layers are randomized too)."""
    torch.manual_seed(0)
    net = NETS[name]()
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.2)
            torch.nn.init.normal_(module.bias, std=0.05)
    return net.eval().requires_grad_(False).to(dtype)


def render_all(net: torch.nn.Module, lq: torch.Tensor, sizes, **kwargs) -> List[torch.Tensor]:
    outputs = [torch.full((h, w, 3), float('nan'), dtype=torch.float64) for h, w in sizes]

    def sink(k, r0, r1, c0, c1, rgb):
        assert torch.isnan(outputs[k][r0:r1, c0:c1]).all(), 'an output pixel was rendered twice'
        outputs[k][r0:r1, c0:c1] = rgb.double().cpu()

    render(net, lq, sizes, sink, **kwargs)
    return outputs


@pytest.mark.parametrize('name, dtype', [(n, torch.float64) for n in NETS] + [('gaussiansr', torch.float32)])
def test_tiles_equal_the_whole_image_at_non_integer_scales(name, dtype):
    net = random_net(name, dtype)
    lq = torch.rand(1, 3, 29, 34, dtype=torch.float64)
    sizes = [(round(29 * 2.5), round(34 * 2.5)), (round(29 * 1.7), round(34 * 3.1))]  # x2.5; per axis
    spans = plan_spans(29, 7, 0)
    # The premise: tile borders do not fall on output pixel borders.
    assert any((s.start * sizes[0][0]) % 29 for s in spans[1:]) and len(spans) >= 4
    whole = render_all(net, lq, sizes, tile=0)
    tiled = render_all(net, lq, sizes, tile=7, chunk=500)
    for a, b in zip(whole, tiled):
        assert not torch.isnan(b).any()
        assert (a - b).abs().max() < 1e-5


@pytest.mark.parametrize('name', ['gaussiansr', 'liif', 'metasr'])
def test_float16_autocast_stays_close_to_float32(name):
    # The CUDA default (--fp32 not given), run on the CPU: layers in float16, positions in float32.
    net = random_net(name, torch.float32)
    lq = torch.rand(1, 3, 29, 34)
    full = render_all(net, lq, [(72, 85)], tile=7)[0]
    half = render_all(net, lq, [(72, 85)], tile=7, precision='fp16')[0]
    assert (full - half).abs().max() < 5e-3


def test_encoder_reach_is_its_receptive_field():
    net = random_net('gaussiansr')
    lq = torch.rand(1, 3, 31, 31, dtype=torch.float64)
    poked = lq.clone()
    poked[..., 15, 15] += 1
    changed = (net.encoder(poked) - net.encoder(lq)).abs().amax(dim=(0, 1)) > 0
    rows, cols = changed.nonzero(as_tuple=True)
    reach = encoder_reach(net.encoder)
    assert reach == (rows.max() - 15) == (15 - rows.min()) == (cols.max() - 15)


@pytest.mark.parametrize('size', [(24, 28), (30, 35)])  # x2; x2.5, every 5th row and column on an LR border
@pytest.mark.parametrize('name', list(NETS))
def test_untiled_render_uses_the_models_coordinates(name, size):
    net = random_net(name)
    lq = torch.rand(1, 3, 12, 14, dtype=torch.float64)
    ours = render_all(net, lq, [size])[0]
    coord = make_coord(size, dtype=torch.float64)[None]
    theirs = net(lq, coord, make_cell(size, coord.shape[1], dtype=torch.float64)[None]).reshape(*size, 3)
    assert torch.equal(ours, theirs)  # make_coord's coordinates, no nudge: the same bits


def test_blended_tiles_weigh_one_in_total():
    # Untrained with rgb_skip, GaussianSR is bicubic interpolation: it sees 2 LR pixels, so tiles
    # with 3 pixels of context beyond their blending band must blend back to the whole image.
    torch.manual_seed(0)
    net = GaussianSR(**SMALL_GAUSSIANSR, rgb_skip=True).eval().double()
    lq = torch.rand(1, 3, 26, 23, dtype=torch.float64)
    assert receptive_field(net) > 6
    sizes = [(65, 58)]
    whole = render_all(net, lq, sizes, tile=0)[0]
    blended = render_all(net, lq, sizes, tile=6, tile_pad=6)[0]
    assert (whole - blended).abs().max() < 1e-5


def test_several_sizes_come_from_one_encoder_pass_per_tile():
    net = random_net('gaussiansr')
    calls = []
    encode = net.encode
    net.encode = lambda lq: calls.append(lq.shape) or encode(lq)
    lq = torch.rand(1, 3, 20, 18, dtype=torch.float64)
    sizes = [(40, 36), (60, 54), (25, 30)]
    together = render_all(net, lq, sizes, tile=8)
    tiles = len(plan_spans(20, 8, 0)) * len(plan_spans(18, 8, 0))
    assert len(calls) == tiles
    for size, output in zip(sizes, together):
        assert torch.equal(output, render_all(net, lq, [size], tile=8)[0])
    assert len(calls) == tiles * (1 + len(sizes))


def write_model(folder: Path, network_g: Dict, seed: int = 0) -> str:
    """An option file and a checkpoint of a random ``network_g``; returns ``OPTION_FILE:CHECKPOINT``."""
    from gaussiansr_plugin.utils.options import build_network
    torch.manual_seed(seed)
    net = build_network(network_g)
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.1)
    folder.mkdir(parents=True, exist_ok=True)
    option_file, checkpoint = folder / 'net.yml', folder / 'net.pth'
    option_file.write_text(yaml.safe_dump(dict(name='t', model_type='ArbitraryScaleSRModel', network_g=network_g,
                                               val=dict(query_chunk=2000))))
    torch.save({'params': net.state_dict()}, checkpoint)
    return f'{option_file}:{checkpoint}'


@pytest.fixture(scope='module')
def model_arg(tmp_path_factory) -> str:
    return write_model(tmp_path_factory.mktemp('model'), dict(type='GaussianSR', **SMALL_GAUSSIANSR))


def run_cli(args: List[str], capsys) -> tuple:
    status = upscale.main(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize('precision_args', [[], ['--fp32'], ['--precision', 'bf16']])
def test_formats_sizes_and_pixels(tmp_path, model_arg, capsys, precision_args):
    rng = np.random.default_rng(0)
    src = tmp_path / 'in'
    src.mkdir()
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (13, 15), dtype=np.uint16)
    rgba = rng.integers(0, 256, (18, 14, 4), dtype=np.uint8)
    for name, img in (('rgb.png', rgb), ('gray16.png', gray16), ('rgba.png', rgba)):
        cv2.imwrite(str(src / name), img)
    out = tmp_path / 'out'
    status, stdout, err = run_cli(['-i', str(src), '-o', str(out), '--model', model_arg, '-s', '2.5x3',
                                   '--size', '40x30', '--tile', '8', '--quiet'] + precision_args, capsys)
    assert status == 0 and err == ''
    assert 'Upscaled 3 of 3 image(s)' in stdout and '6 output(s)' in stdout
    for name, img in (('rgb', rgb), ('gray16', gray16), ('rgba', rgba)):
        h, w = img.shape[:2]
        per_axis = cv2.imread(str(out / f'{name}_out_x2.5x3.png'), cv2.IMREAD_UNCHANGED)
        sized = cv2.imread(str(out / f'{name}_out_40x30.png'), cv2.IMREAD_UNCHANGED)
        assert per_axis.shape[:2] == (round(h * 3), round(w * 2.5)) and sized.shape[:2] == (30, 40)
        assert per_axis.dtype == img.dtype and per_axis.ndim == img.ndim and per_axis.shape[2:] == img.shape[2:]
    alpha = cv2.imread(str(out / 'rgba_out_40x30.png'), cv2.IMREAD_UNCHANGED)[:, :, 3]
    assert np.array_equal(alpha, cv2.resize(rgba[:, :, 3], (40, 30), interpolation=cv2.INTER_CUBIC))
    # The written pixels are the network's output (RGB -> BGR, rounded), tiles and all, at the
    # precision asked, by default the device's serving precision (bf16 on a CPU with AVX512-BF16).
    net = loading.load_net(model_arg, torch.device('cpu')).net
    lq = torch.from_numpy(rgb[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    precision = precision_args[-1].lstrip('-') if precision_args else serving_precision(torch.device('cpu'))
    expected = render_all(net, lq, [(30, 40)], precision=precision)[0].clamp(0, 1).numpy()[:, :, ::-1] * 255
    written = cv2.imread(str(out / 'rgb_out_40x30.png')).astype(np.float64)
    assert np.abs(written - expected).max() <= 0.5 + 1e-3


def test_several_scales_are_named_by_scale(tmp_path, model_arg, capsys):
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((6, 5, 3), 100, np.uint8))
    status, stdout, _ = run_cli(['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--model', model_arg,
                                 '-s', '2', '3', '4', '--quiet'], capsys)
    assert status == 0
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['a_out_x2.png', 'a_out_x3.png', 'a_out_x4.png']
    assert '(10x12, 15x18, 20x24)' in stdout


def test_every_scale_value_is_one_output_and_per_axis_is_spelled_wxh(tmp_path, model_arg, capsys):
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((6, 5, 3), 100, np.uint8))
    status, stdout, _ = run_cli(['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--model', model_arg,
                                 '-s', '2.5', '-s', '3', '-s', '2x3', '--quiet'], capsys)
    assert status == 0
    names = sorted(p.name for p in (tmp_path / 'o').iterdir())
    assert names == ['a_out_x2.5.png', 'a_out_x2x3.png', 'a_out_x3.png']
    assert cv2.imread(str(tmp_path / 'o' / 'a_out_x2x3.png')).shape[:2] == (18, 10)  # height x3, width x2


def test_the_old_two_value_per_axis_form_is_refused_in_one_line(tmp_path, model_arg, capsys):
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((6, 5, 3), 100, np.uint8))
    status, stdout, err = run_cli(['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--model', model_arg,
                                   '-s', '2.5', '3'], capsys)
    assert status == 1 and err.count('\n') == 1
    assert '-s 2.5x3' in err and '-s 2.5 -s 3' in err
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('args, named', [(['-s', '0'], "'0'"), (['-s', 'abc'], "'abc'"), (['-s', '-2'], "'-2'"),
                                         (['-s', 'nan'], "'nan'"), (['-s', '2x3x4'], "'2x3x4'"), (['-s', '2x0'], "'0'"),
                                         (['--size', '0x5'], "'0x5'"),
                                         (['--size', 'big'], "'big'"), (['--tile', '-1'], "'-1'")])
def test_bad_values_fail_in_one_line(args, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        upscale.main(['-i', 'x.png', '-o', str(tmp_path / 'o')] + args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count('\n') == 1 and named in err
    assert not (tmp_path / 'o').exists()


def test_bad_paths_and_checkpoints_fail_in_one_line_before_work(tmp_path, model_arg, capsys, monkeypatch):
    image = tmp_path / 'a.png'
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / 'file').write_text('')
    other = write_model(tmp_path / 'other', dict(type='GaussianSR', **dict(SMALL_GAUSSIANSR, num_feat=12)))
    mismatched = f'{model_arg.split(":")[0]}:{other.rsplit(":", 1)[1]}'
    cases = [(['-i', str(tmp_path / 'missing.png'), '-o', str(tmp_path / 'o1'), '--model', model_arg], 'missing.png'),
             (['-i', str(image), '-o', str(tmp_path / 'file'), '--model', model_arg], 'file'),
             (['-i', str(image), '-o', str(tmp_path / 'o2'), '--model', mismatched], 'does not fit'),
             (['-i', str(image), '-o', str(tmp_path / 'o3'), '--model', 'nowhere.yml:x.pth'], 'nowhere.yml')]
    for args, named in cases:
        status, stdout, err = run_cli(args + ['--quiet'], capsys)
        assert status == 1 and err.count('\n') == 1 and named in err and 'Traceback' not in err, err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(weights, 'WEIGHTS_DIR', str(tmp_path / 'no_weights'))
    status, _, err = run_cli(['-i', str(image), '-o', str(tmp_path / 'o4')], capsys)
    assert status == 1 and err.count('\n') == 1 and '--model OPTION_FILE:CHECKPOINT' in err
    for folder in ('o1', 'o2', 'o3', 'o4'):
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).iterdir())


def test_the_demo_checkpoint_is_the_default(tmp_path, model_arg, capsys, monkeypatch):
    option_file, checkpoint = model_arg.rsplit(':', 1)
    (tmp_path / 'options').mkdir()
    (tmp_path / 'options' / 'train_gaussiansr_demo.yml').write_text(Path(option_file).read_text())
    (tmp_path / 'experiments' / 'GaussianSR_demo' / 'models').mkdir(parents=True)
    (tmp_path / loading.DEMO_CHECKPOINT).write_bytes(Path(checkpoint).read_bytes())
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((5, 4, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(weights, 'WEIGHTS_DIR', str(tmp_path / 'no_weights'))
    status, stdout, _ = run_cli(['-i', 'a.png', '-o', 'o'], capsys)
    assert status == 0 and loading.DEMO_CHECKPOINT in stdout
    assert cv2.imread('o/a_out.png').shape == (20, 16, 3)


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


def write_corpus(folder: Path) -> Dict[str, tuple]:
    """Odd and malformed files; returns {file name: expected output (h, w, channels, dtype) or None (rejected)}."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / 'good.png'), rgb)
    cv2.imwrite(str(folder / 'good.jpg'), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    png, jpg = (folder / 'good.png').read_bytes(), (folder / 'good.jpg').read_bytes()
    (folder / 'zero_bytes.png').write_bytes(b'')
    (folder / 'truncated.png').write_bytes(png[:len(png) // 2])
    (folder / 'truncated_jpeg.jpg').write_bytes(jpg[:len(jpg) * 3 // 4])  # cut inside the scan
    (folder / 'text.png').write_text('this is not an image\n')
    (folder / 'huge_header.png').write_bytes(_png_header_only(100000, 100000))
    cv2.imwrite(str(folder / 'one_pixel.png'), rgb[:1, :1])
    Image.fromarray(rgb).convert('P').save(folder / 'palette.png')
    cv2.imwrite(str(folder / 'gray16.png'), rng.integers(0, 65536, (7, 5), dtype=np.uint16))
    transparent = np.dstack([rgb, rng.integers(0, 256, (9, 12), dtype=np.uint8)])
    cv2.imwrite(str(folder / 'rgba_transparent.png'), transparent)
    cv2.imwrite(str(folder / 'rgba_opaque.png'), np.dstack([rgb, np.full((9, 12), 255, np.uint8)]))
    Image.new('CMYK', (10, 6), (200, 30, 60, 10)).save(folder / 'cmyk.jpg')
    exif_img = Image.fromarray(rgb)
    exif = exif_img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif_img.save(folder / 'exif_rotated.jpg', exif=exif)
    cv2.imwrite(str(folder / 'float.tif'), rng.random((4, 4, 3)).astype(np.float32))
    (folder / 'good.jpg').unlink()
    (folder / 'good.png').unlink()
    return {
        'zero_bytes.png': None, 'truncated.png': None, 'truncated_jpeg.jpg': None, 'text.png': None,
        'huge_header.png': None, 'float.tif': None,
        'one_pixel.png': (2, 2, 3, np.uint8), 'palette.png': (18, 24, 3, np.uint8),
        'gray16.png': (14, 10, None, np.uint16), 'rgba_transparent.png': (18, 24, 4, np.uint8),
        'rgba_opaque.png': (18, 24, 4, np.uint8), 'cmyk.jpg': (12, 20, 3, np.uint8),
        'exif_rotated.jpg': (24, 18, 3, np.uint8),  # stored 9x12, orientation 6: upright 12x9, upscaled
    }


def test_a_corpus_of_odd_files_gives_outputs_or_one_line_each(tmp_path, model_arg, capsys):
    expected = write_corpus(tmp_path / 'corpus')
    assert len(expected) >= 12
    out = tmp_path / 'out'
    status, stdout, err = run_cli(['-i', str(tmp_path / 'corpus'), '-o', str(out), '--model', model_arg, '-s', '2',
                                   '--tile', '8', '--quiet'], capsys)
    bad = [name for name, shape in expected.items() if shape is None]
    assert status == 1 and 'Traceback' not in err and f'{len(bad)} failed' in stdout
    lines = err.strip().splitlines()
    assert len(lines) == len(bad)
    for name in bad:
        assert sum(name in line for line in lines) == 1, (name, lines)
    assert 'claims 100000x100000 pixels' in err and 'truncated JPEG' in err
    written = {p.name for p in out.iterdir()}
    assert not any(is_temp_file(name) for name in written)
    for name, shape in expected.items():
        stem, ext = name.rsplit('.', 1)
        if shape is None:
            assert not any(n.startswith(stem + '_') for n in written)
            continue
        img = cv2.imread(str(out / f'{stem}_out.{ext}'), cv2.IMREAD_UNCHANGED)
        height, width, channels, dtype = shape
        assert img.shape == ((height, width) if channels is None else (height, width, channels)), name
        assert img.dtype == dtype, name


def test_python_m_reports_a_missing_input_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'gaussiansr_plugin', 'upscale', '-i', str(tmp_path / 'nope.png'),
                             '-o', str(tmp_path / 'o')], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f'Error: Input {tmp_path / "nope.png"} does not exist']
