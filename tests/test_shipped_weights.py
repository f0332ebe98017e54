"""The weights shipped in gaussiansr_plugin/weights: found by name from anywhere, each loads into the
network its name says, and reproduces its row of the 12,000-iteration ablation table
(docs/ablation12k/iter_12000/per_image.csv)."""
import csv
import hashlib
import re
from pathlib import Path

import pytest
import torch

from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.archs.liif_arch import LIIF
from gaussiansr_plugin.benchmark.cli import main as benchmark_main
from gaussiansr_plugin.utils.loading import load_net
from gaussiansr_plugin.utils.checkpoint import ARCH_KEY
from gaussiansr_plugin.weights import WEIGHTS_DIR, shipped_names

DOCS = Path(__file__).resolve().parents[1] / 'docs' / 'ablation12k' / 'iter_12000'
# name -> (the method's column in the ablation table, its class, its Gaussian channels)
SHIPPED = {
    'gaussiansr': ('GaussianSR', GaussianSR, 8),
    'bicubic64': ('Bicubic-64', GaussianSR, 0),
    'liif': ('LIIF', LIIF, None),
}
CHECK_SET, CHECK_IMAGE, CHECK_SCALE = 'Set14', 'baboon', 4.0  # Set14's first image (the harness keeps the first N)


def test_the_three_central_rows_are_shipped_fp32_and_small():
    assert set(SHIPPED) <= set(shipped_names())
    readme = (Path(WEIGHTS_DIR) / 'README.md').read_text()
    for name in SHIPPED:
        data = (Path(WEIGHTS_DIR) / f'{name}.pth').read_bytes()
        assert len(data) < 7 * 2**20, name
        assert re.search(rf'{name}\.pth.*{hashlib.sha256(data).hexdigest()}', readme), f'{name}: sha256 in README'
        checkpoint = torch.load(Path(WEIGHTS_DIR) / f'{name}.pth', map_location='cpu', weights_only=True)
        assert all(v.dtype == torch.float32 for v in checkpoint['params'].values()), name


@pytest.mark.parametrize('name', list(SHIPPED))
def test_each_file_loads_by_name_into_the_network_its_name_says(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: the installed package finds its files
    _, arch, gs_channels = SHIPPED[name]
    loaded = load_net(name, torch.device('cpu'))
    assert type(loaded.net) is arch and loaded.net.rgb_skip is False  # the paper's output, no skip
    if gs_channels is not None:
        assert loaded.net.num_gs_feat == gs_channels
        assert (loaded.net.classifier is None) == (gs_channels == 0)  # Bicubic-64: no splatting stream
    checkpoint = torch.load(loaded.checkpoint, map_location='cpu', weights_only=True)
    assert checkpoint[ARCH_KEY] == loaded.net.arch_options()


def test_each_reproduces_its_psnr_of_the_ablation_table(shared_data, tmp_path):
    expected = {}
    with open(DOCS / 'per_image.csv') as f:
        for row in csv.DictReader(f):
            if (row['set'], float(row['scale']), row['image']) == (CHECK_SET, CHECK_SCALE, CHECK_IMAGE):
                expected[row['method']] = float(row['psnr'])
    args = [f'--model={label}={name}' for name, (label, _, _) in SHIPPED.items()]
    out = tmp_path / 'out'
    assert benchmark_main(args + ['--sets', f'{CHECK_SET}={shared_data / "benchmark" / CHECK_SET}', '--scales', '4',
                                  '--max-images', '1', '--no-speed', '--no-figure', '--out', str(out)]) == 0
    with open(out / 'per_image.csv') as f:
        got = {row['method']: float(row['psnr']) for row in csv.DictReader(f) if row['image'] == CHECK_IMAGE}
    for label, _, _ in SHIPPED.values():
        assert got[label] == pytest.approx(expected[label], abs=2e-3), label
