"""``basicsr benchmark -h``: the program name as invoked, and examples that point at real run folders."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gaussiansr_plugin.benchmark import cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_usage_names_the_command_as_invoked(capsys):
    with pytest.raises(SystemExit):
        cli.main(['-h'])  # what `basicsr benchmark -h` calls
    assert capsys.readouterr().out.startswith('usage: basicsr benchmark ')
    result = subprocess.run([sys.executable, '-m', 'gaussiansr_plugin.benchmark', '-h'], capture_output=True,
                            text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0
    assert result.stdout.startswith('usage: python -m gaussiansr_plugin.benchmark ')


def test_example_checkpoints_lie_in_the_run_folders_their_option_files_create():
    examples = re.findall(r'=(options/\S+\.yml):experiments/([^/\s]+)/', cli.__doc__)
    assert len(examples) >= 3
    for option_file, run_folder in examples:
        name = yaml.safe_load((REPO_ROOT / option_file).read_text(encoding='utf-8'))['name']
        assert run_folder == name, option_file
