#!/usr/bin/env bash
# Regenerate the committed figures/ from real (reduced) runs on this machine.
#
#   bash scripts/make_figures.sh            # every study: s0 s1 s2 s3 s4
#   bash scripts/make_figures.sh s2 s3      # some of them
#
# Each study runs with its --quick preset (a CPU-sized data slice and fewer epochs; every figure
# says "REDUCED RUN" in its footer), except S3, whose small MLPs train the full study (56k images,
# 10 epochs, 3 seeds) in a few CPU minutes; figures from a CPU run still say so. Runs go to
# runs/figures/<study>; re-running resumes there, so an interrupted call only trains what is
# missing. Then a curated set of small PNGs and every
# Markdown table are copied to figures/<study>/. Needs JAXMNIST_DATA_DIR (the MNIST IDX files).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

declare -A FLAGS=([s0]="--quick" [s1]="--quick" [s2]="--quick" [s3]="" [s4]="--quick")
declare -A KEEP=(
  [s0]="curves.png confusion_test.png confusion_train.png class_distribution.png test_probs.png"
  [s1]="curves.png samples.png confusion_test.png"
  [s2]="grid_heatmap.png curves.png confusion_test.png"
  [s3]="curves_depth_width.png curves_activation.png curves_init.png weights_regularization.png grads_rmsnorm.png ffnn.png"
  [s4]="curves.png confusion_test_depth_1.png confusion_test_depth_4.png"
)

studies=("$@")
[ ${#studies[@]} -eq 0 ] && studies=(s0 s1 s2 s3 s4)
for s in "${studies[@]}"; do
  run="runs/figures/$s"
  start=$(date +%s)
  # Trains what is missing, then writes the tables and figures (the sweep calls the report).
  # shellcheck disable=SC2086  # FLAGS may be empty
  "$PY" -m jaxmnist.sweep "sweeps/$s.py" ${FLAGS[$s]} --workdir "$run"
  echo "$s: $(( $(date +%s) - start ))s wall (train + report)"
  out="figures/$s"
  rm -rf "$out" && mkdir -p "$out"
  for f in ${KEEP[$s]}; do cp "$run/figures/$f" "$out/"; done
  cp "$run"/tables/*.md "$out/"
done
du -sh figures/*
