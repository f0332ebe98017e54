"""The Python that scripts/gpu_check.py runs everything with (standard library only).

A GPU machine that is not ours has its own Python and torch and lacks basicsr and lmdb. This
module uses that Python as it is when the plugin, its imports and the ``basicsr`` and
``torchrun`` commands beside its interpreter are all there (the tests look for them there).
Otherwise it makes a virtual environment under the work folder that sees the Python's own
packages (its torch is never touched or reinstalled), installs into it only the wheels of the
``--wheels`` folder (scripts/make_gpu_wheels.sh) whose module is missing, puts the working tree
on its path and writes the two commands into its ``bin``.
"""
import json
import os
import subprocess
from os import path as osp
from typing import Callable, Dict, List, Optional

# What the plugin, its tests and BasicSR import when they run (BasicSR's other requirements,
# addict, future, yapf and tb-nightly, are never imported by it at run time).
REQUIRED = ('torch', 'torchvision', 'numpy', 'cv2', 'yaml', 'scipy', 'skimage', 'PIL', 'tqdm', 'pytest', 'lmdb',
            'basicsr', 'gaussiansr_plugin')
# console script name -> the function it runs
COMMANDS = {'basicsr': 'gaussiansr_plugin.cli:main', 'torchrun': 'torch.distributed.run:main'}

Log = Callable[[str], None]


def _output(cmd: List[str], cwd: str = '/') -> str:
    """stdout of ``cmd`` run outside the working tree (so the tree's package is not found by
    accident); raises RuntimeError with its output when it fails."""
    result = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed (exit {result.returncode}): {result.stdout.strip()[-2000:]}')
    return result.stdout


def missing_modules(python: str) -> List[str]:
    code = ('import importlib.util, json; '
            f'print(json.dumps([m for m in {list(REQUIRED)!r} if importlib.util.find_spec(m) is None]))')
    return json.loads(_output([python, '-c', code]).strip().splitlines()[-1])


def _wheel_modules(wheels: str) -> Dict[str, str]:
    """{module name: wheel path} of a wheel folder (distribution name = module name here)."""
    found = {}
    for name in sorted(os.listdir(wheels)):
        if name.endswith('.whl'):
            found[name.split('-')[0].lower()] = osp.join(wheels, name)
    return found


def _write_command(bin_dir: str, python: str, name: str, target: str) -> None:
    module, func = target.split(':')
    path = osp.join(bin_dir, name)
    with open(path + '.tmp', 'w') as f:
        f.write(f'#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n')
    os.chmod(path + '.tmp', 0o755)
    os.replace(path + '.tmp', path)


def _make_venv(base: str, env: str, log: Log) -> None:
    """``python -m venv --without-pip``; where that module is missing (some distributions split
    it off), the same by hand: a ``pyvenv.cfg`` and a link to the base interpreter."""
    try:
        _output([base, '-m', 'venv', '--without-pip', env])
        return
    except RuntimeError as err:
        log(f'{err}\nmaking the virtual environment by hand')
    executable, version = _output([base, '-c', 'import sys; print(sys._base_executable); '
                                   'print("%d.%d.%d" % sys.version_info[:3])']).split()[-2:]
    os.makedirs(osp.join(env, 'bin'), exist_ok=True)
    os.makedirs(osp.join(env, 'lib', 'python' + version.rsplit('.', 1)[0], 'site-packages'), exist_ok=True)
    for name in ('python', 'python3'):
        os.symlink(executable, osp.join(env, 'bin', name))
    with open(osp.join(env, 'pyvenv.cfg'), 'w') as f:
        f.write(f'home = {osp.dirname(executable)}\ninclude-system-site-packages = false\nversion = {version}\n')


def make_env(base: str, env: str, repo: str, wheels: str, missing: Optional[List[str]], log: Log) -> str:
    """Creates the virtual environment ``env`` over ``base``'s packages, with the wheels of the
    modules in ``missing`` (None: every wheel of the folder); returns its python."""
    available = _wheel_modules(wheels) if wheels and osp.isdir(wheels) else {}
    to_install = [m for m in (list(available) if missing is None else missing) if m != 'gaussiansr_plugin']
    lacking = [m for m in to_install if m not in available]
    if lacking:
        raise RuntimeError(f'{base} lacks {", ".join(lacking)} and the wheel folder {wheels or "(none: --wheels)"} '
                           'has no wheel for it: run scripts/make_gpu_wheels.sh DIR where there is network '
                           'and pass --wheels DIR')
    _make_venv(base, env, log)
    python = osp.join(env, 'bin', 'python')
    site = _output([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).strip()
    base_sites = json.loads(
        _output([base, '-c', 'import json, os, sys; print(json.dumps([p for p in sys.path if os.path.isdir(p) '
                 'and p.rstrip("/").endswith(("site-packages", "dist-packages"))]))']).strip().splitlines()[-1])
    # The working tree first, then the base Python's packages (with their own .pth files).
    lines = [repo] + [f'import site; site.addsitedir({p!r})' for p in base_sites]
    with open(osp.join(site, '_gpu_check_paths.pth'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    log(f'virtual environment {env} over {base} ({", ".join(base_sites)}), working tree {repo}')
    if to_install:
        files = [available[m] for m in to_install]
        log('installing ' + ', '.join(osp.basename(f) for f in files))
        log(_output([base, '-m', 'pip', 'install', '--no-index', '--no-deps', '--no-compile', '--no-cache-dir',
                     '--disable-pip-version-check', '--target', site] + files))
    for name, target in COMMANDS.items():
        _write_command(osp.dirname(python), python, name, target)
    return python


def find_python(base: str, work: str, repo: str, wheels: str, fresh_env: bool, log: Log) -> str:
    """The python to run the check with (see the module docstring)."""
    missing = missing_modules(base)
    bin_dir = osp.dirname(base)
    commands = [c for c in COMMANDS if not osp.exists(osp.join(bin_dir, c))]
    log(f'{base}: missing modules {missing or "none"}, missing commands beside it {commands or "none"}')
    python = base
    if missing or commands or fresh_env:
        # fresh_env (a check of the wheel install itself): every wheel of the folder.
        python = make_env(base, osp.join(work, 'env'), repo, wheels, None if fresh_env else missing, log)
    return python
