"""basicsr export (issue 20): ONNX graphs with a dynamic LR size and query count, run by onnxruntime
through the one render loop, equal to PyTorch within 1e-4 at any scale, whole and tiled."""
import json
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from gaussiansr_plugin import cli  # noqa: E402
from gaussiansr_plugin.export import manifest, onnx_export  # noqa: E402
from gaussiansr_plugin.export.onnx_runtime import OnnxNet  # noqa: E402
from gaussiansr_plugin.inference import upscale  # noqa: E402
from gaussiansr_plugin.render.receptive_field import receptive_field  # noqa: E402
from gaussiansr_plugin.render.tiling import render  # noqa: E402
from gaussiansr_plugin.utils.image_io import decode_rgb  # noqa: E402
from gaussiansr_plugin.utils.loading import load_net  # noqa: E402
from test_upscale import SMALL, SMALL_GAUSSIANSR, write_model  # noqa: E402

TOLERANCE = 1e-4  # issue 20: fp32, max |onnxruntime - PyTorch|
# The scales: (height, width) factors; the last is -s 2.5x3 (x2.5 in width, x3 in height).
SCALES = [(2.0, 2.0), (2.5, 2.5), (3.6, 3.6), (3.0, 2.5)]
ARCHS = {
    'gaussiansr': dict(type='GaussianSR', **SMALL_GAUSSIANSR, rgb_skip=True),
    'liif': dict(type='LIIF', **SMALL),
    'metasr': dict(type='MetaSR', num_feat=8, num_block=1, hidden_list=[16]),
}
TILE = 20  # LR pixels: several tiles, most of them away from the image's origin


@pytest.fixture(scope='module')
def exports(tmp_path_factory) -> Dict[str, Tuple[str, Path]]:
    """{arch: (model argument, export folder)}, each exported once for the module."""
    done = {}
    for name, network_g in ARCHS.items():
        root = tmp_path_factory.mktemp(name)
        model_arg = write_model(root / 'model', network_g)
        onnx_export.export_model(model_arg, str(root / 'onnx'))
        done[name] = (model_arg, root / 'onnx')
    return done


def render_sizes(net, lq: torch.Tensor, sizes: Sequence[Tuple[int, int]], tile: int) -> List[torch.Tensor]:
    outputs = [torch.full((h, w, 3), float('nan')) for h, w in sizes]

    def sink(k, r0, r1, c0, c1, rgb):
        outputs[k][r0:r1, c0:c1] = rgb

    render(net, lq, sizes, sink, tile=tile, chunk=5000)
    return outputs


def max_differences(model_arg: str, folder: Path, lq: torch.Tensor) -> Dict[Tuple[str, int], float]:
    """{(scale, tile): max |onnxruntime - PyTorch's whole image|} at every scale of ``SCALES``."""
    net = load_net(model_arg, torch.device('cpu')).net
    runtime = OnnxNet(str(folder))
    h, w = lq.shape[-2:]
    sizes = [(round(h * sh), round(w * sw)) for sh, sw in SCALES]
    reference = render_sizes(net, lq, sizes, tile=0)
    found = {}
    for tile in (0, TILE):
        for (sh, sw), ref, out in zip(SCALES, reference, render_sizes(runtime, lq, sizes, tile)):
            assert not torch.isnan(out).any()
            found[(f'{sw:g}x{sh:g}', tile)] = (out - ref).abs().max().item()
    return found


@pytest.mark.parametrize('arch', list(ARCHS))
def test_onnxruntime_equals_pytorch_on_set5(arch, exports, shared_data):
    model_arg, folder = exports[arch]
    for image in ('woman', 'baby'):  # 57x86 (not square) and 128x128, the LR of Set5 at x4
        path = shared_data / 'benchmark' / 'Set5' / 'LR_bicubic' / 'X4' / f'{image}x4.png'
        lq = decode_rgb(path.read_bytes(), str(path))[None]
        found = max_differences(model_arg, folder, lq)
        print(arch, image, {f'{s} tile {t}': f'{d:.2e}' for (s, t), d in found.items()})
        assert max(found.values()) <= TOLERANCE, found


@pytest.mark.parametrize('arch', list(ARCHS))
def test_onnxruntime_equals_pytorch_on_a_synthetic_image(arch, exports):
    model_arg, folder = exports[arch]
    lq = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(3))
    found = max_differences(model_arg, folder, lq)
    assert max(found.values()) <= TOLERANCE, found


def test_the_graphs_bicubic_taps_are_grid_samples_bicubic():
    # The export's sample_bicubic (gathers + a product) against grid_sample, also beyond the map
    # (the 'border' taps) and at tile-like sizes of one pixel.
    from gaussiansr_plugin.archs.arch_util import _bicubic_taps, sample_bicubic
    generator = torch.Generator().manual_seed(4)
    for size in ((9, 13), (1, 5), (2, 1)):
        feat = torch.rand(2, 5, *size, generator=generator)
        coord = torch.rand(2, 300, 2, generator=generator) * 2.4 - 1.2
        assert (_bicubic_taps(feat, coord) - sample_bicubic(feat, coord)).abs().max() < 1e-5


def test_the_graphs_are_checked_and_dynamic(exports):
    import onnx
    for model_arg, folder in exports.values():
        said = json.loads((folder / manifest.MANIFEST).read_text())
        for name, file in manifest.GRAPH_FILES.items():
            onnx.checker.check_model(str(folder / file), full_check=True)
            assert said['graphs'][name]['sha256'] == manifest.sha256_of(str(folder / file))
        query = said['graphs']['query']['inputs']
        assert query['coord']['shape'] == [1, 'queries', 2] and query['lq']['shape'] == [1, 3, 'h', 'w']
        assert said['graphs']['encode']['inputs']['lq']['shape'] == [1, 3, 'h', 'w']
        checkpoint = model_arg.rsplit(':', 1)[1]
        assert said['source']['checkpoint_sha256'] == manifest.sha256_of(checkpoint)
        assert said['format_version'] == manifest.FORMAT_VERSION
        # The reach recorded for tiles gives the tile padding of the PyTorch network at every scale.
        net, runtime = load_net(model_arg, torch.device('cpu')).net, OnnxNet(str(folder))
        for m in (0.2, 0.5, 1.0):
            assert receptive_field(runtime, m) == receptive_field(net, m)


def write_image(path: Path, size=(30, 26)) -> Path:
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), cv2.resize(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), size[::-1]))
    return path


def test_upscale_runs_an_export_like_the_pytorch_model(exports, tmp_path, capsys):
    model_arg, folder = exports['gaussiansr']
    image = write_image(tmp_path / 'a.png')
    args = ['-i', str(image), '-s', '2', '2.5x3', '--tile', '12', '--ext', 'tif']
    assert upscale.main(args + ['-o', str(tmp_path / 'torch'), '--model', model_arg, '--fp32', '--quiet']) == 0
    assert upscale.main(args + ['-o', str(tmp_path / 'onnx'), '--model', str(folder)]) == 0
    out = capsys.readouterr().out
    assert 'exported to ONNX' in out and 'float32' in out
    names = sorted(p.name for p in (tmp_path / 'torch').iterdir())
    assert names == sorted(p.name for p in (tmp_path / 'onnx').iterdir()) and len(names) == 2
    for name in names:
        a = cv2.imread(str(tmp_path / 'torch' / name), cv2.IMREAD_UNCHANGED).astype(int)
        b = cv2.imread(str(tmp_path / 'onnx' / name), cv2.IMREAD_UNCHANGED).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1  # 8-bit rounding of values within 1e-4


def run_upscale(model: str, tmp_path: Path, capsys) -> Tuple[int, str]:
    tmp_path.mkdir(exist_ok=True)
    image = write_image(tmp_path / 'in.png')
    status = upscale.main(['-i', str(image), '-o', str(tmp_path / 'out'), '--model', model, '--quiet'])
    return status, capsys.readouterr().err


def copy_export(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def unrelated_onnx(path: Path) -> Path:
    """A valid ONNX model that has nothing to do with ours (y = x + 1)."""
    import onnx
    from onnx import TensorProto, helper
    one = helper.make_tensor('one', TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node('Add', ['x', 'one'], ['y'])], 'unrelated',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])], [one])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_bad_export_folders_fail_in_one_line_and_write_nothing(exports, tmp_path, capsys, monkeypatch):
    folder = exports['gaussiansr'][1]
    missing = copy_export(folder, tmp_path / 'missing')
    (missing / 'query.onnx').unlink()
    foreign = copy_export(folder, tmp_path / 'foreign')
    shutil.copy(exports['liif'][1] / 'encode.onnx', foreign / 'encode.onnx')
    version = copy_export(folder, tmp_path / 'version')
    said = json.loads((version / 'export.json').read_text())
    said['format_version'] = manifest.FORMAT_VERSION + 1
    (version / 'export.json').write_text(json.dumps(said))
    # An unrelated graph under our name, its hash written into the manifest: the inputs give it away.
    renamed = copy_export(folder, tmp_path / 'renamed')
    unrelated_onnx(renamed / 'query.onnx')
    said = json.loads((renamed / 'export.json').read_text())
    said['graphs']['query']['sha256'] = manifest.sha256_of(str(renamed / 'query.onnx'))
    (renamed / 'export.json').write_text(json.dumps(said))
    no_manifest = copy_export(folder, tmp_path / 'no_manifest')
    (no_manifest / 'export.json').unlink()
    cases = [(missing, 'query.onnx is missing'), (foreign, 'encode.onnx is not the graph export.json describes'),
             (version, f'format version {manifest.FORMAT_VERSION + 1}'), (renamed, 'query.onnx: inputs [\'x\']'),
             (no_manifest, 'has no export.json'),
             # `basicsr upscale -o liif` leaves a folder ./liif behind: why `--model liif` now fails.
             (Path('liif'), 'takes precedence over the shipped weights \'liif\''),
             (unrelated_onnx(tmp_path / 'unrelated.onnx'), 'an ONNX file alone is not enough'),
             (tmp_path / 'nowhere.onnx', 'does not exist')]
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'liif').mkdir()
    (tmp_path / 'liif' / 'photo_x2.png').write_bytes(b'')
    for model, named in cases:
        work = tmp_path / f'run_{model.name}'
        status, err = run_upscale(str(model), work, capsys)
        assert status == 1 and err.count('\n') == 1 and named in err and 'Traceback' not in err, err
        assert not (work / 'out').exists()


def test_export_refuses_bad_input_in_one_line_and_writes_nothing(exports, tmp_path, capsys):
    model_arg = exports['metasr'][0]
    occupied = tmp_path / 'occupied'
    occupied.mkdir()
    (occupied / 'keep.txt').write_text('mine')
    cases = [(['--model', 'nowhere.yml:x.pth', '-o', str(tmp_path / 'a')], 'nowhere.yml'),
             (['--model', model_arg, '-o', str(occupied)], '--overwrite')]
    for args, named in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(['export'] + args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and err.count('\n') == 1 and named in err, err
    assert not (tmp_path / 'a').exists() and [p.name for p in occupied.iterdir()] == ['keep.txt']
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no staging folder left


def test_without_onnxruntime_both_commands_say_what_to_install(exports, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import onnxruntime now raises ImportError
    status, err = run_upscale(str(exports['liif'][1]), tmp_path, capsys)
    assert status == 1 and err.count('\n') == 1 and "pip install -e '.[onnx]'" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['export', '--model', exports['liif'][0], '-o', str(tmp_path / 'x')])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count('\n') == 1 and "pip install -e '.[onnx]'" in err
    assert not (tmp_path / 'x').exists() and not (tmp_path / 'out').exists()
