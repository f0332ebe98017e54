#!/usr/bin/env bash
# Evaluates one checkpoint iteration of the 8x-budget ablation runs of issue 19
# (scripts/train_long_ablation.sh; options/ablation/long/).
#
#   scripts/evaluate_long_ablation.sh RUNS_DIR ITER [OUT_DIR]
#
# ITER 12000: B100 (all 100 images) and Set14 at x2, x3, x4, x3.6, x6; any other ITER (1500,
# 3000, 6000): B100's first 30 images at x2 and x4. Incremental, so that each row is evaluated
# once, as soon as its run has reached ITER: one `basicsr benchmark` per row whose net_g_ITER.pth
# exists (GaussianSR, Bicubic-64, LIIF) and, at 12000, per scale, into OUT_DIR/iter_ITER/ROW/ (at
# 12000 ROW-xSCALE/) unless that folder has its per_image.csv already (written last, atomically);
# at 1500 and 12000 also the old recipe's 1.5k checkpoints (trained before the float32-coordinate
# fix; shipped until issue 19 replaced them, so taken from git history, OLD_WEIGHTS_COMMIT, default
# 270f395, into OUT_DIR/old_weights/) as GaussianSR-old, Bicubic-64-old, LIIF-old (evaluated
# whenever asked: they need no run). Then the kernel usage of each GaussianSR
# checkpoint not yet explained (`basicsr explain` on the LR x2 of Set14 barbara and comic and Set5
# baby: kernels covering 90% of the LR pixels, kernel_max_prob) in kernel_usage.txt
# (kernel_usage_old.txt), and last scripts/summarize_long_ablation.py, which merges the rows'
# per_image.csv and writes the pairs (GaussianSR:Bicubic-64, GaussianSR:LIIF, Bicubic-64:LIIF, and
# X:X-old) and the convergence table. Outputs in OUT_DIR/iter_ITER (default OUT_DIR:
# results/ablation12k). Two threads (EVAL_THREADS=N for N) at normal priority: pause the niced
# training runs first (kill -STOP) if the evaluation should not wait for them, or leave them to the
# idle cycles. ROWS="GaussianSR LIIF" (names as above) evaluates only those rows (and their -old
# rows), so that two invocations with disjoint ROWS can run side by side, one thread each.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 RUNS_DIR ITER [OUT_DIR]" >&2; exit 2; }
runs=$(realpath -m "$1"); iter=$2; out_root=${3:-results/ablation12k}
cd "$(dirname "$0")/.."
data=../shared/data/benchmark
[ -d "$data/B100" ] || { echo "Error: no $data/B100 (the benchmark sets of ../shared/data)" >&2; exit 2; }
out="$out_root/iter_$iter"
threads=${EVAL_THREADS:-2}

# One benchmark per row and part: at 12000 a part per scale (6-15 minutes of B100 and Set14 for a row
# on one core shared with training here), so that a stopped evaluation keeps the scales it finished.
if [ "$iter" = 12000 ]; then
  sets=(B100="$data/B100" Set14="$data/Set14"); parts=("-x2|2" "-x3|3" "-x4|4" "-x3.6|3.6" "-x6|6"); limit=()
else
  sets=(B100="$data/B100"); parts=("|2 4"); limit=(--max-images 30)
fi
wanted=" ${ROWS:-GaussianSR Bicubic-64 LIIF} "
for name in $wanted; do
  [[ $name =~ ^(GaussianSR|Bicubic-64|LIIF)$ ]] || { echo "Error: ROWS: unknown row $name (rows: GaussianSR Bicubic-64 LIIF)" >&2; exit 2; }
done
old_checkpoint() {  # old_checkpoint FILE: the old shipped FILE.pth, extracted once from git history
  local dest="$out_root/old_weights/$1.pth"
  if [ ! -f "$dest" ]; then
    mkdir -p "$(dirname "$dest")"
    git show "$old_commit:gaussiansr_plugin/weights/$1.pth" >"$dest.part" 2>/dev/null ||
      { rm -f "$dest.part"
        echo "Error: cannot read gaussiansr_plugin/weights/$1.pth of commit $old_commit (OLD_WEIGHTS_COMMIT) from git" >&2; exit 2; }
    mv "$dest.part" "$dest"
  fi
  echo "$dest"
}
old_commit=${OLD_WEIGHTS_COMMIT:-270f395}
rows=()  # NAME|--model value, one per row to evaluate
for row in GaussianSR:gaussiansr:GaussianSR Bicubic-64:bicubic64:Bicubic64 LIIF:liif:LIIF; do
  IFS=: read -r name file run <<<"$row"
  [[ $wanted == *" $name "* ]] || continue
  ckpt="$runs/experiments/Ablation12k_$run/models/net_g_$iter.pth"
  if [ -f "$ckpt" ]; then
    rows+=("$name|$name=options/ablation/long/train_$file.yml:$ckpt")
  else
    echo "no $ckpt: $name left out"
  fi
  # The old rows: at 1500 what the fix (and the later lr step) changed, at 12000 whether to ship the new weights.
  [[ $iter =~ ^(1500|12000)$ ]] && rows+=("$name-old|$name-old=options/ablation/train_$file.yml:$(old_checkpoint "$file")")
done
for row in "${rows[@]}"; do
  name=${row%%|*}
  for part in "${parts[@]}"; do
    folder="$out/$name${part%%|*}"  # ROW, or ROW-xSCALE at 12000
    if [ -f "$folder/per_image.csv" ]; then echo "$name${part%%|*}: evaluated already ($folder)"; continue; fi
    read -ra scales <<<"${part#*|}"
    OMP_NUM_THREADS=$threads basicsr benchmark --model "${row#*|}" --sets "${sets[@]}" --scales "${scales[@]}" \
      "${limit[@]}" --no-speed --no-figure --out "$folder"
  done
done

explain() {  # explain MODEL OUT_FILE: kernel usage on the three images, unless OUT_FILE exists
  [ -f "$2" ] && { echo "kernel usage: $2 exists"; return; }
  mkdir -p "$out"
  for image in "$data/Set14/LR_bicubic/X2/barbarax2.png" "$data/Set14/LR_bicubic/X2/comicx2.png" \
               "$data/Set5/LR_bicubic/X2/babyx2.png"; do
    OMP_NUM_THREADS=$threads basicsr explain --model "$1" -i "$image" -o "$out/explain${3:-}" --quiet
  done >"$2.part"
  mv "$2.part" "$2"; cat "$2"
}
ckpt="$runs/experiments/Ablation12k_GaussianSR/models/net_g_$iter.pth"
[[ $wanted == *" GaussianSR "* && -f $ckpt ]] && explain "options/ablation/long/train_gaussiansr.yml:$ckpt" "$out/kernel_usage.txt"
[[ $wanted == *" GaussianSR "* && $iter = 1500 ]] && explain gaussiansr "$out/kernel_usage_old.txt" _old
python scripts/summarize_long_ablation.py "$out_root"
