"""Paired PSNR differences of the benchmark (``--pairs A:B``, gaussiansr_plugin.benchmark.pairs)."""
import contextlib
import csv
import io
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from basicsr.archs import build_network
from gaussiansr_plugin.benchmark import cli, pairs, report
from gaussiansr_plugin.benchmark.methods import BICUBIC
from helpers import write_yaml

T_975_DF3 = 3.182446305284263  # Student's t, 97.5% quantile, 3 degrees of freedom (statistical tables)
# Fixed-scale nets (each evaluated at its own scale only, bicubic at both): the pairs table has holes.
SCALES = {'EDSRx2': 2, 'EDSRx3': 3}
PAIRS = ['EDSRx2:Bicubic', 'Bicubic:EDSRx3']


def _rows(method, set_name, scale, values):
    return [dict(method=method, set=set_name, scale=scale, image=image, psnr=psnr) for image, psnr in values.items()]


def test_mean_difference_interval_and_counts_on_a_hand_made_table():
    per_image = (_rows('A', 'S', '2', {'a': 30.0, 'b': 31.0, 'c': 32.0, 'd': 33.0, 'only_a': 99.0})
                 # B listed in another order, as text (as read from the CSV); 'b' equal to 6 decimals: a tie.
                 + _rows('B', 'S', '2', {'d': '32.0', 'c': '32.2', 'b': '31.0000001', 'a': '29.5'})
                 + _rows('A', 'S', '3', {'a': 25.0}) + _rows('B', 'S', '3', {'a': 25.5})
                 + _rows('A', 'T', '2', {'a': 20.0}))  # B not evaluated on T
    rows = pairs.pair_rows(per_image, [('A', 'B')])
    assert [(r['set'], r['scale'], r['images']) for r in rows] == [('S', '2', 4), ('S', '3', 1)]
    diffs = np.array([0.5, 0.0, -0.2, 1.0])
    x2 = rows[0]
    assert x2['psnr_diff'] == pytest.approx(diffs.mean(), abs=1e-9)
    assert x2['ci95'] == pytest.approx(T_975_DF3 * diffs.std(ddof=1) / 2, abs=1e-9)
    assert (x2['a_higher'], x2['ties']) == (2, 1)
    assert rows[1]['ci95'] is None and (rows[1]['a_higher'], rows[1]['ties']) == (0, 0)

    section = pairs.render_pairs([('A', 'B'), ('B', 'A')], rows)
    assert '| | A − B | B − A |' in section
    assert f'| S x2 | +0.325 ± {T_975_DF3 * diffs.std(ddof=1) / 2:.3f} (2/4, 1 tied) | — |' in section
    assert '| S x3 | -0.500 (0/1) | — |' in section
    assert '| T x2 |' not in section  # no pair evaluated there


def test_bad_pair_specs_name_the_pair_and_the_methods():
    names = [BICUBIC, 'GaussianSR', 'LIIF']
    assert pairs.parse_pairs(['GaussianSR:LIIF', 'LIIF:Bicubic', 'GaussianSR:LIIF'], names) == [
        ('GaussianSR', 'LIIF'), ('LIIF', BICUBIC)]
    assert pairs.parse_pairs(['x:y:LIIF'], ['x:y', 'LIIF']) == [('x:y', 'LIIF')]  # a name holding ':'
    listed = ' (methods: Bicubic, GaussianSR, LIIF)'
    for text, message in (('GaussianSR:MetaSR', "'MetaSR' is not a method name" + listed),
                          ('GaussianSR-LIIF', 'expected A:B with two method names' + listed),
                          ('LIIF:LIIF', 'a method compared with itself')):
        with pytest.raises(ValueError) as err:
            pairs.parse_pairs([text], names)
        assert str(err.value) == f'--pairs {text!r}: {message}'


def test_unknown_pair_name_fails_before_any_method_is_loaded(tmp_path, capsys):
    (tmp_path / 'HR').mkdir()
    cv2.imwrite(str(tmp_path / 'HR' / 'img.png'), np.zeros((16, 16, 3), np.uint8))
    # The option file does not exist: loading the method would fail with another message.
    argv = ['--model', f'LIIF={tmp_path / "missing.yml"}', '--sets', f'S={tmp_path}', '--pairs', 'LIIF:EDSR',
            '--out', str(tmp_path / 'out')]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == "Error: --pairs 'LIIF:EDSR': 'EDSR' is not a method name (methods: Bicubic, LIIF)\n"
    assert cli.main(argv[:2] + argv[4:]) == 1
    assert 'PSNR differences need --sets' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def _tiny_method(folder: Path, name: str) -> str:
    """A freshly initialized tiny EDSR saved as a BasicSR checkpoint, with its option file."""
    scale = SCALES[name]
    net_opt = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=scale)
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(net_opt)).state_dict()}, folder / f'{name}.pth')
    write_yaml(folder / f'{name}.yml', dict(name=name, model_type='SRModel', num_gpu=0, scale=scale, network_g=net_opt,
                                            path={}))
    return f'{name}={folder / f"{name}.yml"}:{folder / f"{name}.pth"}'


@pytest.fixture(scope='module')
def paired_run(tmp_path_factory):
    """One harness run on 3 small images at x2 and x3 with --pairs; returns (root, printed)."""
    root = tmp_path_factory.mktemp('pairs')
    (root / 'tiny' / 'HR').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        small = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        cv2.imwrite(str(root / 'tiny' / 'HR' / f'img{i}.png'), cv2.resize(small, (40, 32)))
    argv = ['--sets', f'tiny={root / "tiny"}', '--scales', '2', '3', '--out', str(root / 'out'), '--no-speed',
            '--no-figure', '--threads', '1', '--pairs', *PAIRS]
    for name in SCALES:
        argv += ['--model', _tiny_method(root, name)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(argv) == 0
    return root, printed.getvalue()


def _read_csv(path: Path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_pairs_run_writes_pairs_csv_and_the_compare_section(paired_run):
    root, printed = paired_run
    out = root / 'out'
    per_image = _read_csv(out / 'per_image.csv')
    psnr = {(r['method'], r['scale'], r['image']): float(r['psnr']) for r in per_image}
    rows = _read_csv(out / 'pairs.csv')
    assert [(r['method_a'], r['method_b'], r['scale']) for r in rows] == [('EDSRx2', BICUBIC, '2'),
                                                                         (BICUBIC, 'EDSRx3', '3')]
    for row in rows:
        diffs = [psnr[(row['method_a'], row['scale'], f'img{i}')] - psnr[(row['method_b'], row['scale'], f'img{i}')]
                 for i in range(3)]
        assert row['images'] == '3' and row['set'] == 'tiny'
        assert float(row['psnr_diff']) == pytest.approx(np.mean(diffs), abs=2e-6)
        assert float(row['ci95']) == pytest.approx(4.302652729911275 * np.std(diffs, ddof=1) / math.sqrt(3), abs=2e-6)
        assert int(row['a_higher']) == sum(d > 0 for d in diffs) and row['ties'] == '0'
    compare = (out / 'compare.md').read_text()
    section = compare[compare.index('Paired PSNR differences'):]
    assert '| | EDSRx2 − Bicubic | Bicubic − EDSRx3 |' in section
    lines = {line.split(' | ')[0]: line for line in section.splitlines() if line.startswith('| tiny x')}
    assert lines['| tiny x2'].endswith('| — |') and lines['| tiny x3'].startswith('| tiny x3 | — | ')
    assert section in printed
    assert not list(out.glob('.*tmp*'))


def test_post_hoc_command_reproduces_the_section_and_the_csv(paired_run, tmp_path, capsys):
    root, _ = paired_run
    out = root / 'out'
    compare = (out / 'compare.md').read_text()
    assert pairs.main([str(out), '--pairs', *PAIRS]) == 0
    section = capsys.readouterr().out
    assert section.startswith('Paired PSNR differences') and compare.endswith('\n\n' + section)
    # From the CSV alone, elsewhere; --write puts pairs.csv beside it, identical to the run's.
    shutil.copy(out / 'per_image.csv', tmp_path / 'per_image.csv')
    assert pairs.main([str(tmp_path / 'per_image.csv'), '--pairs', *PAIRS, '--write']) == 0
    assert capsys.readouterr().out.startswith(section)
    assert (tmp_path / 'pairs.csv').read_bytes() == (out / 'pairs.csv').read_bytes()


def test_post_hoc_errors_are_one_line(tmp_path, capsys):
    assert pairs.main([str(tmp_path), '--pairs', 'A:B']) == 1
    assert capsys.readouterr().err == f'Error: {tmp_path / "per_image.csv"} does not exist ' \
                                      '(expected per_image.csv of basicsr benchmark)\n'
    (tmp_path / 'per_image.csv').write_text('method,set,scale,image,ssim\nA,S,2,a,0.9\n')
    assert pairs.main([str(tmp_path), '--pairs', 'A:B']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'missing column(s) psnr' in err
    (tmp_path / 'per_image.csv').write_text('method,set,scale,image,psnr\nA,S,2,a,30\nB,S,2,a,29\n')
    assert pairs.main([str(tmp_path), '--pairs', 'A:C']) == 1
    assert capsys.readouterr().err == "Error: --pairs 'A:C': 'C' is not a method name (methods: A, B)\n"
    assert not (tmp_path / 'pairs.csv').exists()


def test_pairs_csv_only_when_asked(tmp_path):
    (tmp_path / 'pairs.csv').write_text('from an earlier run\n')
    report.write_outputs(str(tmp_path), 'table\n', [], [], [], [], pairs=[])  # asked, nothing in common
    assert (tmp_path / 'pairs.csv').read_text() == ','.join(report.PAIR_COLUMNS) + '\n'
    report.write_outputs(str(tmp_path), 'table\n', [], [], [], [])
    assert not (tmp_path / 'pairs.csv').exists()
