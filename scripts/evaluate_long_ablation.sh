#!/usr/bin/env bash
# Evaluates one checkpoint iteration of the 8x-budget ablation runs of issue 19
# (scripts/train_long_ablation.sh; options/ablation/long/).
#
#   scripts/evaluate_long_ablation.sh RUNS_DIR ITER [OUT_DIR]
#
# ITER 12000: B100 (all 100 images) and Set14 at x2, x3, x4, x3.6, x6; any other ITER (1500,
# 3000, 6000): B100's first 30 images at x2 and x4. One `basicsr benchmark` run over the rows
# whose net_g_ITER.pth exists (GaussianSR, Bicubic-64, LIIF), with every pair of them, then the
# kernel usage of the GaussianSR checkpoint (`basicsr explain` on the LR x2 of Set14 barbara and
# comic and Set5 baby: kernels covering 90% of the LR pixels, kernel_max_prob). Outputs in
# OUT_DIR/iter_ITER (default OUT_DIR: results/ablation12k): the benchmark's files and
# kernel_usage.txt. Two threads at normal priority: pause the niced training runs first
# (kill -STOP) if the evaluation should not wait for them, or leave them to the idle cycles.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 RUNS_DIR ITER [OUT_DIR]" >&2; exit 2; }
runs=$(realpath -m "$1"); iter=$2; out_root=${3:-results/ablation12k}
cd "$(dirname "$0")/.."
data=../shared/data/benchmark
[ -d "$data/B100" ] || { echo "Error: no $data/B100 (the benchmark sets of ../shared/data)" >&2; exit 2; }
out="$out_root/iter_$iter"

models=(); names=()
for row in GaussianSR:gaussiansr:GaussianSR Bicubic-64:bicubic64:Bicubic64 LIIF:liif:LIIF; do
  IFS=: read -r name file run <<<"$row"
  ckpt="$runs/experiments/Ablation12k_$run/models/net_g_$iter.pth"
  if [ -f "$ckpt" ]; then
    models+=(--model "$name=options/ablation/long/train_$file.yml:$ckpt"); names+=("$name")
  else
    echo "no $ckpt: $name left out"
  fi
done
[ ${#names[@]} -ge 1 ] || { echo "Error: no checkpoint of iteration $iter under $runs" >&2; exit 2; }
pairs=()
for ((i = 0; i < ${#names[@]}; i++)); do
  for ((j = i + 1; j < ${#names[@]}; j++)); do pairs+=("${names[i]}:${names[j]}"); done
done

if [ "$iter" = 12000 ]; then
  sets=(B100="$data/B100" Set14="$data/Set14"); scope=(--scales 2 3 4 3.6 6)
else
  sets=(B100="$data/B100"); scope=(--scales 2 4 --max-images 30)
fi
OMP_NUM_THREADS=2 basicsr benchmark "${models[@]}" --sets "${sets[@]}" "${scope[@]}" --no-speed --no-figure \
  ${pairs[@]:+--pairs "${pairs[@]}"} --out "$out"

ckpt="$runs/experiments/Ablation12k_GaussianSR/models/net_g_$iter.pth"
if [ -f "$ckpt" ]; then
  mkdir -p "$out"
  for image in "$data/Set14/LR_bicubic/X2/barbarax2.png" "$data/Set14/LR_bicubic/X2/comicx2.png" \
               "$data/Set5/LR_bicubic/X2/babyx2.png"; do
    OMP_NUM_THREADS=2 basicsr explain --model "options/ablation/long/train_gaussiansr.yml:$ckpt" -i "$image" \
      -o "$out/explain" --quiet
  done | tee "$out/kernel_usage.txt"
fi
