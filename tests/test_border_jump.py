"""scripts/measure_border_jump.py: a step at LR pixel borders shows as a ratio well above bicubic's."""
import re
from pathlib import Path

import pytest
import torch

from conftest import TINY_GAUSSIANSR
from gaussiansr_plugin.archs import GaussianSR
from helpers import load_script, write_smooth_images, write_yaml


@pytest.fixture(scope='module')
def script():
    return load_script('measure_border_jump')


def _tiny_net_files(folder: Path, pos_encoding: str):
    """Option file + checkpoint of a tiny GaussianSR with a random (non-zero) decoder."""
    net_opt = dict(TINY_GAUSSIANSR, rgb_skip=False, pos_encoding=pos_encoding)
    torch.manual_seed(0)
    net = GaussianSR(**net_opt)
    for p in net.decoder.parameters():
        torch.nn.init.normal_(p, std=0.3)
    torch.save({'params': net.state_dict()}, folder / f'{pos_encoding}.pth')
    opt = dict(name=pos_encoding, model_type='ArbitraryScaleSRModel', num_gpu=0,
               network_g=dict(type='GaussianSR', **net_opt), path={}, val=dict(query_chunk=500))
    return str(write_yaml(folder / f'{pos_encoding}.yml', opt)), str(folder / f'{pos_encoding}.pth')


def _ratios(output: str):
    """The border step's ratio to the step beside a border (last column), per row."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'^(network|bicubic)\s.*\s(\S+)$', output, re.M)}


def test_lines_put_the_borders_between_adjacent_queries(script):
    coord, cell, straddles = script.border_lines((5, 7), scale=3, density=4, lines=2)
    assert coord.shape == cell.shape == (1, 2 * 7 * 4, 2)
    cols = ((coord[0, :28, 1] + 1) / 2 * 7 - 0.5).double()  # LR pixel units, centres at integers
    nearest = torch.round(cols)
    assert (cols - nearest).abs().max() < 0.5 - 1e-3  # no query on a border
    assert torch.equal(nearest[1:] != nearest[:-1], straddles)
    assert straddles.sum() == 7 - 1
    torch.testing.assert_close(cell[0, 0], torch.tensor([2 / 15, 2 / 21]))


def test_offset_input_jumps_and_fourier_does_not(script, tmp_path, capsys):
    write_smooth_images(tmp_path / 'img', 1, size=(48, 64))
    image = str(tmp_path / 'img' / 'img00.png')
    ratios = {}
    for encoding in ('offset', 'fourier'):
        option_file, checkpoint = _tiny_net_files(tmp_path, encoding)
        assert script.main(['-opt', option_file, '--checkpoint', checkpoint, '--image', image, '--scale', '2',
                            '--density', '32', '--lines', '4']) == 0
        ratios[encoding] = _ratios(capsys.readouterr().out)
    # Bicubic is continuous: the step across a border is the step beside it.
    assert ratios['offset']['bicubic'] == ratios['fourier']['bicubic'] == pytest.approx(1, abs=0.2)
    assert ratios['offset']['network'] > 5
    assert ratios['fourier']['network'] == pytest.approx(1, abs=0.3)


def test_bad_input_fails_with_one_line(script, tmp_path, capsys):
    assert script.main(['-opt', str(tmp_path / 'missing.yml')]) == 1
    assert 'missing.yml does not exist' in capsys.readouterr().err
    option_file, _ = _tiny_net_files(tmp_path, 'offset')
    assert script.main(['-opt', option_file, '--image', str(tmp_path / 'none.png')]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'none.png does not exist' in err
