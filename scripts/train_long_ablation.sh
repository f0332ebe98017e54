#!/usr/bin/env bash
# Starts, or continues after any stop, the 8x-budget ablation runs of issue 19
# (options/ablation/long/: GaussianSR, Bicubic-64, LIIF; 12,000 iterations each).
#
#   scripts/train_long_ablation.sh RUNS_DIR [ROW ...]      (rows: gaussiansr bicubic64 liif)
#
# Each row runs in the background, one thread, at the lowest CPU priority, with its outputs under
# RUNS_DIR (outside the work tree) and its console in RUNS_DIR/ROW.out; --auto_resume continues
# from the newest training state (exact: the continued run is the uninterrupted one). The code is
# that of the checkout this script lives in (PYTHONPATH), so a run can be pinned to one commit by
# starting it from a `git worktree` of that commit; the LMDB is read from its datasets/ folder
# (make it first: docs/RESULTS.md, step 1). Pause with `kill -STOP PID` (PIDs in RUNS_DIR/ROW.pid)
# while measuring speed, continue with `kill -CONT PID`. FORCE_YML="logger:save_checkpoint_freq=500"
# (space-separated KEY:VALUE items) is passed to BasicSR's --force_yml, e.g. to save more often than
# every 1,500 iterations (the same run: saving draws no random numbers).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 RUNS_DIR [ROW ...]" >&2; exit 2; }
runs=$(realpath -m "$1"); shift
rows=("${@:-gaussiansr bicubic64 liif}")
cd "$(dirname "$0")/.."
force_yml=()
if [ -n "${FORCE_YML:-}" ]; then read -ra items <<<"$FORCE_YML"; force_yml=(--force_yml "${items[@]}"); fi
mkdir -p "$runs"
for row in ${rows[*]}; do
  opt=options/ablation/long/train_$row.yml
  [ -f "$opt" ] || { echo "Error: no option file $opt (rows: gaussiansr bicubic64 liif)" >&2; exit 2; }
  PYTHONPATH=$PWD OMP_NUM_THREADS=1 nohup nice -n 19 basicsr train -opt "$opt" --root "$runs" --auto_resume \
    "${force_yml[@]}" >>"$runs/$row.out" 2>&1 &
  echo $! >"$runs/$row.pid"
  echo "$row: PID $!, log $runs/$row.out"
done
