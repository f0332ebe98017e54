"""The comparison harness (gaussiansr_plugin.benchmark) and the peer/EDSR option files."""
import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr.data import build_dataset
from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.benchmark import cli, cost, figure, memory, sets
from gaussiansr_plugin.benchmark.methods import BICUBIC, load_method, parse_model_arg
from gaussiansr_plugin.tools import extract_subimages, make_benchmark_lr
from gaussiansr_plugin.utils.options import check_options, load_option_file
from gaussiansr_plugin.utils.resize import imresize_matlab
from helpers import write_smooth_images, write_yaml

REPO = Path(__file__).resolve().parents[1]
HR_SIZE = (60, 70)  # exact at x2 and x2.5: no HR crop, so the reference below needs no rounding rule
SCALES = (2, 2.5)
CROP = (4, 6, 20, 16)  # x, y, w, h
ZOOM = 2
TINY_NETS = {
    'GaussianSR': ('ArbitraryScaleSRModel', dict(type='GaussianSR', **TINY_GAUSSIANSR)),
    'LIIF': ('ArbitraryScaleSRModel', dict(type='LIIF', num_feat=8, num_block=1, hidden_list=[16])),
    'EDSRx2': ('SRModel', dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)),
}


def _tiny_method(folder: Path, name: str) -> str:
    """A freshly initialized tiny net saved as a BasicSR checkpoint, with its option file."""
    model_type, net_opt = TINY_NETS[name]
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(net_opt)).state_dict()}, folder / f'{name}.pth')
    opt = dict(name=name, model_type=model_type, num_gpu=0, network_g=net_opt, path={})
    if model_type == 'SRModel':
        opt['scale'] = 2
    else:
        opt['val'] = dict(query_chunk=700)  # several chunks per image
    write_yaml(folder / f'{name}.yml', opt)
    return f'{name}={folder / f"{name}.yml"}:{folder / f"{name}.pth"}'


def _read_csv(path: Path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _write_textured_images(folder: Path, count: int) -> None:
    """Noise upsampled x2: detail at the scale SR works on, so bicubic PSNR is moderate (~25 dB) and
    BasicSR's 1e-8 guard in the MSE is negligible against it."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, (HR_SIZE[0] // 2, HR_SIZE[1] // 2, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f'img{i:02d}.png'), cv2.resize(small, HR_SIZE[::-1], interpolation=cv2.INTER_CUBIC))


@pytest.fixture(scope='module')
def harness(tmp_path_factory):
    root = tmp_path_factory.mktemp('compare')
    _write_textured_images(root / 'tiny' / 'HR', 2)
    argv = ['--sets', f'tiny={root / "tiny"}', '--scales', *map(str, SCALES), '--out', str(root / 'out'),
            '--quick', '--threads', '1', '--probe-jobs', '2', '--crop', ','.join(map(str, CROP)), '--zoom', str(ZOOM)]
    for name in TINY_NETS:
        argv += ['--model', _tiny_method(root, name)]
    assert cli.main(argv) == 0
    return root


def _bicubic_psnr_y(hr_bgr: np.ndarray, scale: float) -> float:
    """Independent reference: MATLAB-bicubic LR (8-bit), bicubic back up, Y channel, shave, float64 MSE."""
    height, width = hr_bgr.shape[:2]
    lr_size = (math.floor(height / scale), math.floor(width / scale))
    hr = torch.from_numpy(np.ascontiguousarray(hr_bgr[:, :, ::-1].transpose(2, 0, 1)))  # RGB uint8
    lr = imresize_matlab(hr, lr_size).double() / 255
    sr = imresize_matlab(lr, (height, width)).clamp(0, 1).numpy()
    ref = hr.double().numpy() / 255

    def luma(img):
        return (65.481 * img[0] + 128.553 * img[1] + 24.966 * img[2]) / 255 + 16 / 255

    shave = math.ceil(scale)
    diff = (luma(sr) - luma(ref))[shave:-shave, shave:-shave]
    return 10 * math.log10(1 / np.mean(diff**2))


def test_harness_writes_tables_and_bicubic_matches_independent_psnr(harness):
    out = harness / 'out'
    for name in ('compare.md', 'metrics.csv', 'per_image.csv', 'speed.csv'):
        assert (out / name).is_file(), name
    assert not list(out.glob('.*tmp*'))
    per_image = _read_csv(out / 'per_image.csv')
    for scale in SCALES:
        for image in ('img00', 'img01'):
            hr = cv2.imread(str(harness / 'tiny' / 'HR' / f'{image}.png'))
            row = next(r for r in per_image
                       if (r['method'], r['scale'], r['image']) == (BICUBIC, f'{scale:g}', image))
            assert float(row['psnr']) == pytest.approx(_bicubic_psnr_y(hr, scale), abs=1e-4)
    summary = _read_csv(out / 'metrics.csv')
    for row in summary:
        values = [float(r['psnr']) for r in per_image if (r['method'], r['scale']) == (row['method'], row['scale'])]
        assert float(row['psnr']) == pytest.approx(np.mean(values), abs=1e-5)
        assert row['shave'] == str(math.ceil(float(row['scale'])))
        assert row['protocol'].startswith('Y')
    report = (out / 'compare.md').read_text()
    assert '| | Bicubic | GaussianSR | LIIF | EDSRx2 |' in report
    assert 'Latency 64²→128² (ms)' in report and 'Extra peak memory 64²→128² (MiB)' in report
    assert 'Ratios to LIIF' in report


def test_fixed_scale_model_only_at_its_own_scale(harness):
    out = harness / 'out'
    for file_name in ('metrics.csv', 'per_image.csv'):
        rows = _read_csv(out / file_name)
        assert {r['scale'] for r in rows if r['method'] == 'EDSRx2'} == {'2'}
        assert {r['scale'] for r in rows if r['method'] == 'LIIF'} == {'2', '2.5'}
    report = (out / 'compare.md').read_text()
    assert '| tiny x2.5 PSNR / SSIM |' in report
    assert [line for line in report.splitlines() if line.startswith('| tiny x2.5')][0].rstrip().endswith('| — |')
    speed = _read_csv(out / 'speed.csv')
    assert {(r['method'], r['out_size']) for r in speed} == {(n, '128') for n in [BICUBIC, *TINY_NETS]}
    for row in speed:
        assert float(row['latency_ms']) > 0 and float(row['extra_peak_mib']) >= 0
        assert row['threads'] == '1'


def test_figure_has_one_zoomed_crop_per_method(harness):
    figures = list((harness / 'out').glob('figure_*.png'))
    assert [f.name for f in figures] == ['figure_tiny_img00_x2.png']  # default: the first scale without x4
    img = cv2.imread(str(figures[0]))
    panels = 2 + len(TINY_NETS)  # HR, bicubic and every method evaluated at x2
    _, _, w, h = CROP
    assert img.shape[1] == panels * w * ZOOM + (panels + 1) * figure.MARGIN
    assert img.shape[0] > h * ZOOM + 2 * figure.MARGIN  # captions below the panels
    # The HR panel is the HR crop, enlarged with nearest neighbour.
    hr = cv2.imread(str(harness / 'tiny' / 'HR' / 'img00.png'))
    x, y = CROP[:2]
    m = figure.MARGIN
    expected = cv2.resize(hr[y:y + h, x:x + w], (w * ZOOM, h * ZOOM), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(img[m:m + h * ZOOM, m:m + w * ZOOM], expected)


def test_train_speed_runs_the_models_own_training_step(harness):
    specs = [parse_model_arg(f'{n}={harness / f"{n}.yml"}') for n in ('GaussianSR', 'LIIF')]
    results = cost.measure_train_speed(specs, torch.device('cpu'), batch=2, lq_size=12, sample_q=64, warmup=1,
                                       iters=1)
    assert [r['iters'] for r in results] == [1, 1]
    assert all(r['iters_per_s'] > 0 for r in results)


def test_cost_at_each_precision_with_the_mean_latency(tmp_path):
    # What scripts/gpu_check.sh asks for: fp32 and bf16 rows, the mean (paper Table 3), no memory probes.
    out = tmp_path / 'out'
    argv = ['--model', _tiny_method(tmp_path, 'LIIF'), '--lq-size', '8', '--sizes', '16', '--warmup', '1', '--repeats',
            '2', '--latency-stat', 'mean', '--precision', 'fp32', 'bf16', '--no-memory', '--threads', '1', '--out',
            str(out)]
    assert cli.main(argv) == 0
    speed = _read_csv(out / 'speed.csv')
    assert sorted((r['method'], r['precision']) for r in speed) == sorted(
        (m, p) for m in (BICUBIC, 'LIIF') for p in ('fp32', 'bf16'))
    assert all(r['latency_stat'] == 'mean' and float(r['latency_ms']) > 0 and r['extra_peak_mib'] == '' for r in speed)
    table = (out / 'compare.md').read_text()
    assert '| Latency 8²→16² fp32 (ms) |' in table and '| Latency 8²→16² bf16 (ms) |' in table
    assert '| Extra peak memory' not in table and 'mean of 2 runs' in table


@pytest.mark.parametrize('option_precision', ['fp32', 'bf16'])
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_the_measured_call_runs_the_decoders_at_the_precision_asked(tmp_path, device, precision, option_precision):
    # The query archs' predict used to open an fp32 autocast of its own inside the benchmark's
    # bf16 one, which switched it off: their decoders ran in fp32 while the row said bf16. Now the
    # precision asked is passed down to the one autocast (utils/precision.py), whatever the option
    # file's val.mixed_precision says (an option-file bf16 used to win over --precision fp32).
    if 'bf16' in (precision, option_precision) and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        pytest.skip('no bf16 on this GPU')
    expected = {'fp32': torch.float32, 'bf16': torch.bfloat16}[precision]
    decoders = {'GaussianSR': dict(TINY_GAUSSIANSR), 'LIIF': dict(num_feat=8, num_block=1, hidden_list=[16, 16]),
                'MetaSR': dict(num_feat=8, num_block=1, hidden_list=[16, 16])}
    for name, net_opt in decoders.items():
        option_file = write_yaml(tmp_path / f'{name}.yml', dict(
            name=name, model_type='ArbitraryScaleSRModel', num_gpu=0, network_g=dict(type=name, **net_opt), path={},
            val=dict(query_chunk=100, mixed_precision=option_precision)))
        method = load_method(parse_model_arg(f'{name}={option_file}'), device)
        mlp = getattr(method.net, 'decoder', None) or method.net.imnet
        ran = {}  # Linear layer -> dtypes of its outputs
        hooks = [layer.register_forward_hook(lambda module, args, out: ran.setdefault(module, set()).add(out.dtype))
                 for layer in mlp if isinstance(layer, torch.nn.Linear)]
        cost.measure_latency([method], 16, 8, device, warmup=0, repeats=1, precision=precision)
        if device.type == 'cuda':
            memory.measure_cuda_memory(method, 16, 8, device, precision)
        else:
            memory.probe_cpu_memory(method, 16, 8, precision)
        for hook in hooks:
            hook.remove()
        # Float32 under autocast by design: the colour output layer of GaussianSR and LIIF
        # (archs/arch_util.MLP) and MetaSR's thin first layer (its 3 inputs are the offset and the
        # scale); every other Linear that ran is heavy work, in the precision asked. (MetaSR's
        # output layer runs as its per-pixel filter projection, a convolution in encode.)
        thin = mlp[-1] if getattr(mlp, 'float32_output', False) else mlp[0] if name == 'MetaSR' else None
        heavy = {layer: dtypes for layer, dtypes in ran.items() if layer is not thin}
        assert heavy and all(dtypes == {expected} for dtypes in heavy.values()), (name, list(heavy.values()))
        if thin is not None:
            assert ran[thin] == {torch.float32}, name


def test_set_protocols_and_lr_sources(tmp_path):
    write_smooth_images(tmp_path / 'Bench' / 'HR', 1, size=(48, 48))
    for scale in (2, 2.4):  # LR files for both; only x2/x3/x4 read them
        assert make_benchmark_lr.main(['-i', str(tmp_path / 'Bench' / 'HR'), '--scales', str(scale)]) == 0
    bench = sets.parse_set_arg(f'Bench={tmp_path / "Bench"}', [])
    dataset, source = sets.make_dataset(bench, 2.0)
    assert source.startswith('files') and dataset.shave == 2 and dataset.opt['test_y_channel']
    dataset, source = sets.make_dataset(bench, 2.4)
    assert source.startswith('on the fly') and dataset.shave == 3
    write_smooth_images(tmp_path / 'valid', 1, size=(48, 48))  # DIV2K-style: the folder holds the HR images
    for text, names in ((f'DIV2K={tmp_path / "valid"}', []), (f'Mine={tmp_path / "valid"}', ['Mine'])):
        div2k = sets.parse_set_arg(text, names)
        dataset, source = sets.make_dataset(div2k, 3.0)
        assert div2k.div2k and dataset.shave == 3 + 6 and not dataset.opt['test_y_channel']
        assert source.startswith('on the fly')


def test_worst_bicubic_crop_finds_the_largest_error():
    hr = torch.zeros(3, 40, 50)
    bicubic = hr.clone()
    bicubic[:, 20:28, 30:38] = 0.5
    assert figure.worst_bicubic_crop(bicubic, hr, 8, border=2) == (30, 20, 8, 8)


def test_bad_arguments_fail_with_one_line(tmp_path, capsys):
    assert cli.main(['--model', f'X={tmp_path / "missing.yml"}', '--out', str(tmp_path)]) == 1
    assert 'missing.yml does not exist' in capsys.readouterr().err
    assert cli.main(['--sets', f'S={tmp_path}', '--out', str(tmp_path)]) == 1
    assert 'neither an HR/ folder nor images' in capsys.readouterr().err
    with pytest.raises(ValueError, match='NAME=OPTION_FILE'):
        parse_model_arg('no_equals_sign.yml')
    spec = parse_model_arg('LIIF=options/train_liif.yml:models/net_g_1000.pth')
    assert (spec.name, spec.option_file, spec.checkpoint) == ('LIIF', 'options/train_liif.yml', 'models/net_g_1000.pth')
    assert parse_model_arg('LIIF=options/train_liif.yml').checkpoint is None


# ----------------------------------------------------------------------------- option files
PEER_FILES = ['train_liif.yml', 'train_metasr.yml', 'train_liif_demo.yml', 'train_metasr_demo.yml',
              'results291/train_liif_291.yml', 'results291/train_metasr_291.yml']
EDSR_FILES = ['train_edsr_x2.yml', 'train_edsr_x3.yml', 'train_edsr_x4.yml']


@pytest.mark.parametrize('file_name', PEER_FILES + EDSR_FILES + ['results291/train_gaussiansr_291.yml'])
def test_option_files_pass_the_check(file_name, tmp_path):
    write_smooth_images(tmp_path / 'images', 1, size=(64, 64))
    opt = load_option_file(str(REPO / 'options' / file_name))
    for dataset in opt['datasets'].values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            if key in dataset and '$' not in dataset[key]:
                dataset[key] = str(tmp_path / 'images')  # the real DIV2K / benchmark folders are not here
        if (dataset.get('io_backend') or {}).get('type') == 'lmdb':
            dataset['io_backend'] = {'type': 'disk'}
    check_options(opt, is_train=True)


@pytest.mark.parametrize('peer, reference', [('train_liif.yml', 'train_gaussiansr.yml'),
                                             ('train_metasr.yml', 'train_gaussiansr.yml'),
                                             ('train_liif_demo.yml', 'train_gaussiansr_demo.yml'),
                                             ('train_metasr_demo.yml', 'train_gaussiansr_demo.yml'),
                                             ('results291/train_liif_291.yml', 'results291/train_gaussiansr_291.yml'),
                                             ('results291/train_metasr_291.yml',
                                              'results291/train_gaussiansr_291.yml')])
def test_peer_option_files_have_the_same_data_recipe_and_budget(peer, reference):
    peer_opt, ref_opt = (yaml.safe_load((REPO / 'options' / f).read_text()) for f in (peer, reference))
    assert peer_opt['network_g']['type'] in ('LIIF', 'MetaSR')
    assert peer_opt['name'] != ref_opt['name']
    for key in set(peer_opt) | set(ref_opt):
        if key not in ('name', 'network_g'):
            assert peer_opt.get(key) == ref_opt.get(key), key


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_edsr_files_read_lr_made_by_our_tools(scale, tmp_path):
    """extract_subimages + make_benchmark_lr output pairs up under the option file's filename_tmpl."""
    write_smooth_images(tmp_path / 'HR', 2, size=(48, 60))
    assert extract_subimages.main(['-i', str(tmp_path / 'HR'), '-o', str(tmp_path / 'sub'), '--crop-size', '24',
                                   '--step', '24', '--thresh-size', '0', '--workers', '1']) == 0
    assert make_benchmark_lr.main(['-i', str(tmp_path / 'sub'), '-o', str(tmp_path / 'lr'), '--scales',
                                   str(scale)]) == 0
    opt = yaml.safe_load((REPO / 'options' / f'train_edsr_x{scale}.yml').read_text())
    train = dict(opt['datasets']['train'], phase='train', scale=opt['scale'], gt_size=12,
                 dataroot_gt=str(tmp_path / 'sub'))
    # The file's LR path, moved under tmp_path: .../LR_bicubic/X{s} as make_benchmark_lr names it.
    lr_tail = Path(opt['datasets']['train']['dataroot_lq']).parts[-2:]
    train['dataroot_lq'] = str(tmp_path / 'lr' / Path(*lr_tail))
    dataset = build_dataset(train)
    assert len(dataset) == 12  # 2 images x (2 rows x 3 columns) of 24x24 crops
    sample = dataset[0]
    assert sample['gt'].shape == (3, 12, 12) and sample['lq'].shape == (3, 12 // scale, 12 // scale)
