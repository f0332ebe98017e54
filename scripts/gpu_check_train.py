"""The training step of scripts/gpu_check.py: the paper recipe under torchrun, killed, resumed.

Data: photos bundled with scikit-image (no download) cut into sub-images by ``basicsr prepare
extract_subimages`` and packed by ``basicsr prepare create_lmdb``; validation on astronaut and
chelsea (not trained on) at x4. Options: ``options/train_gaussiansr.yml`` (network, optimizer,
batch 16, 48² LR patches, s ~ U(1, 4), 2304 queries, MATLAB bicubic) with that data, 4 data
workers, ``total_iter`` 200, a checkpoint every 100 iterations. ``--quick``: a tiny network,
tiny patches, in-process data loading (each epoch's data workers would take longer to start, as
spawned processes, than the whole quick run), 12 iterations, no validation.

The first run (``torchrun --standalone --nproc_per_node=1 BIN/basicsr train ... --launcher
pytorch``, nccl with CUDA) is told to stop at iteration 130 and is killed with SIGKILL, with
everything it started, once the checkpoint of iteration 100 exists and two more loss lines are
logged (on a machine fast enough to reach 130 first, it ends by itself there: either way the
newest training state is that of 100); ``--auto_resume`` then continues to 200. Checked: the
resumed log says it resumes from iteration 100 and logs iterations 100 < i <= 200 only; the
checkpoints and training state of 200 exist and the final weights load with
``weights_only=True``, are finite and have as many parameters as the log's network; the losses
that both runs logged after 100 agree (relative difference <= ``LOSS_RTOL``: the same samples, up
to GPU non-determinism; a redrawn crop or scale differs by far more).
"""
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
from os import path as osp
from typing import Callable, Dict, List, Set, Tuple

TRAIN_PHOTOS = ['coffee.png', 'rocket.jpg', 'motorcycle_left.png', 'hubble_deep_field.jpg', 'ihc.png', 'retina.jpg',
                'camera.png', 'brick.png', 'grass.png', 'gravel.png', 'moon.png', 'coins.png', 'page.png']
VAL_PHOTOS = ['astronaut.png', 'chelsea.png']
NAME = 'GaussianSR_gpu_check'
LOSS_RTOL = 2e-3
# full / quick: iterations, checkpoint interval, log interval, batch, LR patch, queries, workers, sub-image side
FULL = dict(total_iter=200, checkpoint=100, print_freq=10, batch=16, lq_size=48, sample_q=2304, workers=4, crop=240)
QUICK = dict(total_iter=12, checkpoint=6, print_freq=1, batch=2, lq_size=12, sample_q=64, workers=0, crop=64)
TINY_NET = dict(num_feat=16, num_block=2, num_kernels=16, num_gs_feat=4, hidden_list=[32, 32])
ITER_LINE = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\[epoch:\s*\d+, iter:\s*([\d,]+),.*?l_pix: (\S+)',
                       re.M)

Run = Callable[..., Tuple[int, str]]  # (cmd, timeout, name) -> (exit status or -9 on timeout, output)


def make_data(run: Run, python: str, work: str, cfg: dict, quick: bool, deadline: float) -> Tuple[str, str]:
    """Sub-image LMDB of the training photos and a folder of the validation photos."""
    out = subprocess.run([python, '-c', 'import skimage; print(skimage.data_dir)'], stdout=subprocess.PIPE,
                         text=True, check=True, cwd='/').stdout.strip().splitlines()[-1]
    photos, val = osp.join(work, 'photos'), osp.join(work, 'val')
    # scikit-image's wheels have shipped these for years; a missing one is left out, not fatal.
    present = [n for n in TRAIN_PHOTOS if osp.isfile(osp.join(out, n))]
    if len(present) < 3 or not all(osp.isfile(osp.join(out, n)) for n in VAL_PHOTOS):
        raise RuntimeError(f'{out} lacks scikit-image\'s photos: has {present} of {TRAIN_PHOTOS + VAL_PHOTOS}')
    for folder, names in ((photos, present[:3] if quick else present), (val, VAL_PHOTOS)):
        os.makedirs(folder, exist_ok=True)
        for name in names:
            shutil.copy(osp.join(out, name), folder)
    sub, lmdb = osp.join(work, 'sub'), osp.join(work, 'train_sub.lmdb')
    workers = str(max(1, cfg['workers']))
    extract = ['-i', photos, '-o', sub, '--crop-size', str(cfg['crop']), '--step', str(cfg['crop']), '--workers',
               workers, '--overwrite']
    pack = ['-i', sub, '-o', lmdb, '--workers', workers, '--overwrite']
    # = basicsr prepare extract_subimages ... && basicsr prepare create_lmdb ..., in one process
    code = ('import sys; from gaussiansr_plugin.tools import create_lmdb, extract_subimages; '
            f'sys.exit(extract_subimages.main({extract!r}) or create_lmdb.main({pack!r}))')
    rc, _ = run([python, '-c', code], timeout=deadline - time.monotonic(), name='extract_subimages + create_lmdb')
    if rc != 0:
        raise RuntimeError(f'extract_subimages / create_lmdb failed (exit {rc})')
    return lmdb, val


def write_options(repo: str, work: str, lmdb: str, val: str, cfg: dict, quick: bool) -> str:
    """The recipe's option file with the check's data, workers, iterations and checkpoints.

    The few sub-images are repeated (``dataset_enlarge_ratio``) so that one epoch outlasts the
    run, as one of DIV2K's does (2,000 iterations): BasicSR starts new data workers every epoch.
    """
    import yaml  # PyYAML: BasicSR's own requirement, present wherever the check runs
    with open(osp.join(repo, 'options', 'train_gaussiansr.yml')) as f:
        opt = yaml.safe_load(f)
    opt['name'] = NAME
    train = opt['datasets']['train']
    with open(osp.join(lmdb, 'meta_info.txt')) as f:
        images = sum(1 for line in f if line.strip())
    train.update(name='skimage_photos_sub', dataroot_gt=lmdb, io_backend={'type': 'lmdb'},
                 num_worker_per_gpu=cfg['workers'], batch_size_per_gpu=cfg['batch'], lq_size=cfg['lq_size'],
                 sample_q=cfg['sample_q'],
                 dataset_enlarge_ratio=math.ceil(cfg['total_iter'] * cfg['batch'] / images))
    opt['datasets'] = {'train': train, 'val': dict(name='photos_x4', type='ArbitraryScalePairedDataset',
                                                   dataroot_gt=val, scale=4, test_y_channel=True)}
    if quick:  # a tiny network and no validation: only the machinery is checked
        opt['network_g'].update(TINY_NET)
        del opt['datasets']['val'], opt['val']
    opt['train']['total_iter'] = cfg['total_iter']
    if 'val' in opt:
        opt['val']['val_freq'] = cfg['total_iter']
    opt['logger'].update(print_freq=cfg['print_freq'], save_checkpoint_freq=cfg['checkpoint'])
    path = osp.join(work, 'train_gpu_check.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def iterations(log: str) -> List[Tuple[float, int, float]]:
    """(time in s, iteration, l_pix) of every loss line of a BasicSR log."""
    found = []
    for stamp, millis, it, loss in ITER_LINE.findall(log):
        seconds = time.mktime(time.strptime(stamp, '%Y-%m-%d %H:%M:%S')) + int(millis) / 1000
        found.append((seconds, int(it.replace(',', '')), float(loss)))
    return found


def _descendants(pid: int) -> Set[int]:
    """Every living process below ``pid`` (from /proc; empty where there is none)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir('/proc') if osp.isdir('/proc') else []:
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILLs ``pid`` and everything it started: torchrun starts each rank in a session of
    its own, so killing torchrun's process group would leave the rank and its data workers
    running. All are stopped first, so that none starts another while they are collected."""
    seen: Set[int] = set()
    for _ in range(3):
        new = ({pid} | _descendants(pid)) - seen
        if not new:
            break
        for p in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        seen |= new
    for p in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _kill_after_checkpoint(cmd: List[str], log_path: str, state: str, cfg: dict, deadline: float) -> Tuple[str, str]:
    """Runs ``cmd`` until ``state`` exists and two loss lines after it are logged, then kills
    it with everything it started; returns (what it printed, how it ended)."""
    wanted = cfg['checkpoint'] + 2 * cfg['print_freq']
    with open(log_path, 'w') as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if osp.exists(state):
                    with open(log_path, errors='replace') as f:
                        if any(it >= wanted for _, it, _ in iterations(f.read())):
                            break
                time.sleep(0.05)
        finally:
            ended = proc.poll()
            if ended is None:
                kill_tree(proc.pid)
            proc.wait()
    with open(log_path, errors='replace') as f:
        text = f.read()
    logged = iterations(text)
    last = logged[-1][1] if logged else 0
    if ended not in (None, 0) or not osp.exists(state):
        raise RuntimeError(f'the first run ended with exit {ended} at iteration {last}, training state '
                           f'{state} {"exists" if osp.exists(state) else "missing"}:\n{text[-3000:]}')
    return text, (f'killed at iteration {last}' if ended is None else f'ended by itself at iteration {last}')


def train_and_resume(run: Run, python: str, bin_dir: str, repo: str, work: str, quick: bool,
                     deadline: float) -> Dict[str, object]:
    """The whole step; returns the facts for the summary (``failed``: the checks that failed),
    raises RuntimeError when a run fails."""
    cfg = QUICK if quick else FULL
    lmdb, val = make_data(run, python, work, cfg, quick, deadline)
    opt_path = write_options(repo, work, lmdb, val, cfg, quick)
    root = osp.join(work, 'train')
    exp = osp.join(root, 'experiments', NAME)
    train = [python, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1',
             osp.join(bin_dir, 'basicsr'), 'train', '-opt', opt_path, '--launcher', 'pytorch', '--root', root]
    state = osp.join(exp, 'training_states', f'{cfg["checkpoint"]}.state')
    # Stops before the next checkpoint, so that the newest training state is the one of the kill.
    stop = cfg['checkpoint'] + 3 * cfg['print_freq']
    first, ending = _kill_after_checkpoint(train + ['--force_yml', f'train:total_iter={stop}'],
                                           osp.join(work, 'first_run.log'), state, cfg, deadline)
    preamble = f'$ {" ".join(train)} --force_yml train:total_iter={stop}  # first run, {ending}:\n{first}'
    rc, second = run(train + ['--auto_resume'], timeout=deadline - time.monotonic(), name='resumed run',
                     preamble=preamble)
    if rc != 0:
        raise RuntimeError(f'the resumed run failed (exit {rc})')
    return dict(first_run=ending, **check_resumed(python, exp, first, second, cfg))


def check_resumed(python: str, exp: str, first: str, second: str, cfg: dict) -> Dict[str, object]:
    """The checks of the module docstring: raises RuntimeError when the resumed run did not do
    its work; the facts' ``failed`` lists the checks of its results that failed."""
    done, total = cfg['checkpoint'], cfg['total_iter']
    if not re.search(rf'Resuming training from epoch: \d+, iter: {done}\.', second):
        raise RuntimeError(f'the resumed run does not say it resumes from iteration {done}')
    resumed = iterations(second)
    its = [it for _, it, _ in resumed]
    if not its or min(its) <= done or max(its) != total:
        raise RuntimeError(f'the resumed run logged iterations {its[:3]}...{its[-3:]}, wanted {done} < i <= {total}')
    failed = [f'missing {name} in {exp}' for name in (f'models/net_g_{done}.pth', f'models/net_g_{total}.pth',
                                                      'models/net_g_latest.pth', f'training_states/{total}.state')
              if not osp.isfile(osp.join(exp, name))]
    params = re.search(r'Network: (?:DistributedDataParallel - )?GaussianSR, with parameters: ([\d,]+)', second)
    code = ('import sys, torch; w = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["params"]; '
            'assert all(torch.isfinite(t).all() for t in w.values()), "non-finite weights"; '
            'print(sum(t.numel() for t in w.values()))')
    loaded = subprocess.run([python, '-c', code, osp.join(exp, 'models', 'net_g_latest.pth')], cwd='/',
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if loaded.returncode != 0 or not params or (loaded.stdout.split() or [''])[-1] != params.group(1).replace(',', ''):
        failed.append(f'net_g_latest.pth: {loaded.stdout.strip()[-300:]} (parameters in the log: '
                      f'{params and params.group(1)})')
    before = {it: loss for _, it, loss in iterations(first) if it > done}
    pairs = [(it, before[it], loss) for _, it, loss in resumed if it in before]
    worst = max((abs(a - b) / max(abs(a), 1e-12) for _, a, b in pairs), default=math.nan)
    facts = {'resumed': f'from {done} to {total}', 'compared_losses': len(pairs),
             'loss_max_rel_diff': worst, 'failed': failed}
    if len(resumed) >= 2 and resumed[-1][0] > resumed[0][0]:
        facts['iters_per_s_with_data'] = (resumed[-1][1] - resumed[0][1]) / (resumed[-1][0] - resumed[0][0])
    val = re.search(r'Validation photos_x4 against bicubic: (.*)', second)
    facts['validation_x4'] = val.group(1).strip() if val else None
    if not pairs or not worst <= LOSS_RTOL:
        failed.append(f'the resumed run\'s losses differ from the killed run\'s (iteration, killed, resumed): '
                      f'{pairs[:4]}, max relative difference {worst:.2e} > {LOSS_RTOL:g}')
    return facts
