"""The plugin's imports point one way (core packages never import a command module) and form no cycle."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'check_import_graph.py'


def test_core_packages_import_no_command_module_and_there_is_no_cycle():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'forbidden edges: none; cycles: none' in done.stdout


def test_the_check_finds_a_forbidden_edge(tmp_path):
    # A copy of the package with one core module importing a command module must fail the check.
    import shutil
    root = tmp_path / 'repo'
    shutil.copytree(SCRIPT.parents[1] / 'gaussiansr_plugin', root / 'gaussiansr_plugin',
                    ignore=shutil.ignore_patterns('*.pth', '__pycache__'))
    (root / 'scripts').mkdir()
    shutil.copy(SCRIPT, root / 'scripts')
    coord = root / 'gaussiansr_plugin' / 'utils' / 'coord.py'
    coord.write_text(coord.read_text() + '\nfrom ..inference import upscale  # noqa\n')
    done = subprocess.run([sys.executable, str(root / 'scripts' / SCRIPT.name)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and 'utils.coord' in done.stdout and 'inference' in done.stdout
