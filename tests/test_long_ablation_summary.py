"""scripts/summarize_long_ablation.py: rows evaluated one at a time give the pairs of one joint run."""
import csv
from pathlib import Path

import cv2
import pytest

from gaussiansr_plugin.benchmark import pairs, report
from helpers import load_script

IMAGES = [f'img{i:02d}' for i in range(32)]  # more than the curve's 30: the 12k evaluation covers all of B100


@pytest.fixture(scope='module')
def script():
    return load_script('summarize_long_ablation')


def _psnr(method: str, scale: str, index: int, iteration: int) -> float:
    """A made-up but uneven PSNR: the methods' differences vary from image to image."""
    base = {'Bicubic': 27.0, 'GaussianSR': 29.0, 'Bicubic-64': 29.02, 'LIIF': 29.05}[method]
    return round(base - float(scale) + 0.37 * ((index * 7 + len(method) * 3) % 5) + iteration * 1e-5, 6)


def _write_row_folder(folder: Path, methods, iteration: int, bicubic_shift: float = 0.0) -> list:
    """A benchmark output folder (per_image.csv) of ``methods`` plus Bicubic; returns its rows."""
    rows = [dict(method=m, set='B100', scale=s, image=image,
                 psnr=_psnr(m, s, i, iteration) + (bicubic_shift if m == 'Bicubic' else 0.0), ssim=0.8)
            for m in ['Bicubic', *methods] for s in ('2', '4') for i, image in enumerate(IMAGES)]
    folder.mkdir(parents=True)
    (folder / 'per_image.csv').write_text(report.csv_text(rows, report.PER_IMAGE_COLUMNS))
    return rows


def test_rows_evaluated_apart_merge_to_the_joint_runs_pairs(tmp_path, script, capsys):
    iter_dir = tmp_path / 'iter_1500'
    joint = _write_row_folder(iter_dir / 'GaussianSR+Bicubic-64', ['GaussianSR', 'Bicubic-64'], 1500)
    joint += [r for r in _write_row_folder(iter_dir / 'LIIF', ['LIIF'], 1500) if r['method'] == 'LIIF']
    (iter_dir / 'kernel_usage.txt').write_text(
        'x/Set14/LR_bicubic/X2/barbarax2.png: 103,680 LR pixels select 3 of 100 kernels; the 1 most selected '
        'cover 90% of them; kernel_max_prob 0.9290. 4 figures in y\n')
    _write_row_folder(tmp_path / 'iter_3000' / 'GaussianSR', ['GaussianSR'], 3000)

    assert script.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out

    with open(iter_dir / 'per_image.csv', newline='') as f:
        merged = list(csv.DictReader(f))
    assert len(merged) == len(joint)  # Bicubic once
    expected = pairs.pair_rows(joint, [('GaussianSR', 'Bicubic-64'), ('GaussianSR', 'LIIF'), ('Bicubic-64', 'LIIF')])
    with open(iter_dir / 'pairs.csv', newline='') as f:
        written = list(csv.DictReader(f))
    assert [(r['method_a'], r['method_b'], r['scale'], int(r['images'])) for r in written] == \
        [(r['method_a'], r['method_b'], r['scale'], r['images']) for r in expected]
    assert [float(r['psnr_diff']) for r in written] == pytest.approx([r['psnr_diff'] for r in expected], abs=1e-6)

    means = (iter_dir / 'metrics.md').read_text().splitlines()
    assert means[0] == '| | Bicubic | GaussianSR | Bicubic-64 | LIIF |'
    liif_x4 = [r['psnr'] for r in joint if r['method'] == 'LIIF' and r['scale'] == '4']
    assert means[3].startswith('| B100 x4 (32 images) |') and f'{sum(liif_x4) / len(liif_x4):.2f} / 0.8000 |' in means[3]

    # The curve: the first 30 images only, the kernel usage parsed; 3,000 has no pair yet.
    curve = {(r['method_a'], r['method_b'], r['scale']): r for r in script.curve_rows(
        [dict(r, psnr=float(r['psnr'])) for r in merged])}
    assert {r['images'] for r in curve.values()} == {30}
    first30 = [r for r in joint if r['image'] in IMAGES[:30]]
    for (a, b, scale), row in curve.items():
        assert row['psnr_diff'] == pytest.approx(
            [r for r in pairs.pair_rows(first30, [(a, b)]) if r['scale'] == scale][0]['psnr_diff'])
    lines = {line.split(' |')[0]: line for line in table.splitlines() if line.startswith('| ')}
    g_b64_x2 = curve[('GaussianSR', 'Bicubic-64', '2')]
    assert f'{g_b64_x2["psnr_diff"]:+.3f} ± {g_b64_x2["ci95"]:.3f}' in lines['| 1,500']
    assert '3 (1) / 0.929' in lines['| 1,500']
    assert lines['| 3,000'].count('—') == 5  # no pair, no kernel usage
    figure = cv2.imread(str(tmp_path / 'convergence.png'))
    assert figure is not None and figure.shape == (400, 1100, 3)


def test_row_folders_that_disagree_on_bicubic_are_refused(tmp_path, script, capsys):
    iter_dir = tmp_path / 'iter_1500'
    _write_row_folder(iter_dir / 'GaussianSR', ['GaussianSR'], 1500)
    _write_row_folder(iter_dir / 'LIIF', ['LIIF'], 1500, bicubic_shift=0.01)
    assert script.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'LIIF/per_image.csv: Bicubic B100 x2 img00 differs' in err
    assert not (iter_dir / 'pairs.csv').exists()


def test_an_iteration_kept_only_as_its_merged_file_stays_on_the_curve(tmp_path, script, capsys):
    # docs/ablation12k keeps 1,500-6,000 as merged files only, and 12,000 as row folders: the curve
    # must hold them all, and the merged file must not be rewritten.
    kept = tmp_path / 'iter_1500'
    rows = _write_row_folder(kept / 'all', ['GaussianSR', 'Bicubic-64', 'LIIF'], 1500)
    (kept / 'all' / 'per_image.csv').rename(kept / 'per_image.csv')
    (kept / 'all').rmdir()
    before = (kept / 'per_image.csv').read_text()
    _write_row_folder(tmp_path / 'iter_12000' / 'GaussianSR', ['GaussianSR'], 12000)

    assert script.main([str(tmp_path)]) == 0
    lines = {line.split(' |')[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')}
    first30 = [r for r in rows if r['image'] in IMAGES[:30]]
    g_b64_x2 = [r for r in pairs.pair_rows(first30, [('GaussianSR', 'Bicubic-64')]) if r['scale'] == '2'][0]
    assert f'{g_b64_x2["psnr_diff"]:+.3f} ± {g_b64_x2["ci95"]:.3f}' in lines['| 1,500']
    assert '| 12,000' in lines
    assert (kept / 'per_image.csv').read_text() == before


def test_a_row_evaluated_later_joins_an_iteration_kept_as_its_merged_file(tmp_path, script, capsys):
    # docs/ablation12k/iter_6000 holds GaussianSR and Bicubic-64 as a merged file only; LIIF's 6,000
    # checkpoint came later, evaluated into its own folder: the iteration then has all three rows.
    iter_dir = tmp_path / 'iter_6000'
    rows = _write_row_folder(iter_dir / 'old', ['GaussianSR', 'Bicubic-64'], 6000)
    (iter_dir / 'old' / 'per_image.csv').rename(iter_dir / 'per_image.csv')
    (iter_dir / 'old').rmdir()
    rows += [r for r in _write_row_folder(iter_dir / 'LIIF', ['LIIF'], 6000) if r['method'] == 'LIIF']

    assert script.main([str(tmp_path)]) == 0
    with open(iter_dir / 'per_image.csv', newline='') as f:
        merged = list(csv.DictReader(f))
    assert sorted((r['method'], r['scale'], r['image'], float(r['psnr'])) for r in merged) == \
        sorted((r['method'], r['scale'], r['image'], r['psnr']) for r in rows)
    with open(iter_dir / 'pairs.csv', newline='') as f:
        assert {(r['method_a'], r['method_b']) for r in csv.DictReader(f)} == {
            ('GaussianSR', 'Bicubic-64'), ('GaussianSR', 'LIIF'), ('Bicubic-64', 'LIIF')}
    # Summarized again (the merged file now holds LIIF too, and the folder still does): the same rows.
    before = (iter_dir / 'per_image.csv').read_text()
    assert script.main([str(tmp_path)]) == 0
    assert (iter_dir / 'per_image.csv').read_text() == before

    # A LIIF folder whose Bicubic disagrees with the kept file is refused.
    (iter_dir / 'LIIF' / 'per_image.csv').unlink()
    (iter_dir / 'LIIF').rmdir()
    _write_row_folder(iter_dir / 'LIIF', ['LIIF'], 6000, bicubic_shift=0.01)
    (iter_dir / 'per_image.csv').write_text(report.csv_text(
        [r for r in rows if r['method'] != 'LIIF'], report.PER_IMAGE_COLUMNS))
    capsys.readouterr()
    assert script.main([str(tmp_path)]) == 1
    assert 'iter_6000/per_image.csv: Bicubic B100 x2 img00 differs' in capsys.readouterr().err
