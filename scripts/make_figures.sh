#!/usr/bin/env bash
# Regenerate the committed figures/ from real runs: full studies where a CPU can do them, the
# CPU preset for S2 and S4, plus the progress of S2's and S4's full runs when they exist.
#
#   bash scripts/make_figures.sh                  # every study: s0 s1 s2 s3 s4
#   bash scripts/make_figures.sh s2 s3            # some of them (flax_mnist, resnet, tune: cpu)
#   RUN_ROOT=../jaxmnist-runs bash scripts/make_figures.sh     # reuse runs made elsewhere
#   REPORT_ONLY=1 RUN_ROOT=... bash scripts/make_figures.sh s2  # never train: report runs as
#                                                               # far as they got (still running)
#
# Runs live in $RUN_ROOT/<study>-<full|cpu> (default runs/figures/; not committed). A finished
# run is only re-reported (python -m jaxmnist.report, no jax, no training); an unfinished or
# missing one is trained (or resumed) with the same command first. S0, S1 and S3 run their
# full study (S0 and S1 ~20 min each on 2 CPU cores, S3 ~6 min) into figures/<study>/; S2 and S4
# their `cpu` preset (full data, fewer epochs, 1 seed) into figures/<study>-cpu/. S2's and S4's
# full runs (hours: see docs/studies.md) are never started here: when $RUN_ROOT/s2-full or
# s4-full exists it is reported as far as it got into figures/s2/ or figures/s4/ (its footer
# says UNFINISHED until it completes). Each folder gets a curated set of small PNGs, every
# Markdown table and results_summary.json.
# Every figure's footer says which settings (full or preset) made it and on which device.
# Needs JAXMNIST_DATA_DIR (the MNIST IDX files) when it has to train.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
RUN_ROOT=${RUN_ROOT:-runs/figures}

# study -> "run name|sweep flags"
declare -A RUN=([s0]="s0-full|" [s1]="s1-full|" [s2]="s2-cpu|--preset cpu" [s3]="s3-full|"
                [s4]="s4-cpu|--preset cpu" [flax_mnist]="flax_mnist-cpu|--preset cpu"
                [resnet]="resnet-cpu|--preset cpu" [tune]="tune-cpu|--preset cpu")
declare -A KEEP=(
  [s0]="curves.png confusion_test.png confusion_train.png class_distribution.png test_probs.png"
  [s1]="curves.png samples.png confusion_test.png"
  [s2]="grid_heatmap.png curves.png confusion_test.png"
  [s3]="curves_depth_width.png curves_activation.png curves_init.png weights_regularization.png grads_rmsnorm.png ffnn.png"
  [s4]="curves.png confusion_test_depth_1.png confusion_test_depth_4.png"
  [flax_mnist]="curves.png confusion_test.png confusion_train.png"
  [resnet]="curves.png confusion_test.png"
  [tune]="curves_main.png curves_final.png lr_sensitivity.png rungs.png probability_of_improvement.png performance_profiles.png"
)

# Where a study's run is published when it is not figures/<study>/ (the full run goes there).
declare -A OUT=([s2]=s2-cpu [s4]=s4-cpu [resnet]=resnet-cpu [tune]=tune-cpu)

complete() {  # a run directory whose results.json says complete
  [ -f "$1/results.json" ] && "$PY" -c \
    "import json,sys; sys.exit(0 if json.load(open('$1/results.json')).get('complete') else 1)"
}

publish() {  # publish RUN_DIR OUT_DIR PNG...
  local run=$1 out=$2; shift 2
  rm -rf "$out" && mkdir -p "$out"
  for f in "$@"; do [ -f "$run/figures/$f" ] && cp "$run/figures/$f" "$out/"; done
  cp "$run"/tables/*.md "$run/tables/results_summary.json" "$out/"
}

studies=("$@")
[ ${#studies[@]} -eq 0 ] && studies=(s0 s1 s2 s3 s4)
for s in "${studies[@]}"; do
  IFS='|' read -r name flags <<< "${RUN[$s]}"
  run="$RUN_ROOT/$name"
  dest="figures/${OUT[$s]:-$s}"
  start=$(date +%s)
  if complete "$run" || [ -n "${REPORT_ONLY:-}" ]; then
    if "$PY" -m jaxmnist.report "$run"; then
      publish "$run" "$dest" ${KEEP[$s]}
    else
      echo "$s ($name): nothing to report yet; $dest left as it is"
    fi
  else
    # Trains what is missing, then writes the tables and figures (the sweep calls the report).
    # shellcheck disable=SC2086  # flags may be empty
    "$PY" -m jaxmnist.sweep "$s" $flags --workdir "$run"
    publish "$run" "$dest" ${KEEP[$s]}
  fi
  echo "$s ($name): $(( $(date +%s) - start ))s wall"
  full="$RUN_ROOT/$s-full"
  if [ "$name" != "$s-full" ] && [ -f "$full/config.json" ]; then
    # The long full run, as far as it got (per-epoch validation from metrics.jsonl).
    if "$PY" -m jaxmnist.report "$full" && [ -n "$(ls "$full/tables" 2>/dev/null)" ]; then
      publish "$full" "figures/$s" ${KEEP[$s]}
    fi
  fi
done
du -sh figures/*
