#!/usr/bin/env bash
# The accelerator run in one command (python -m benchmarks.accelerator): the full S2 study
# (1 seed) and its wall time, S0's time to 99 % test accuracy, and S0's 12-member grid in all
# four combinations of strategy {vmap, sequential} x conv {lax, im2col}. Results:
# benchmarks/results/accelerator-<UTC stamp>.{json,md} (and copies in $OUT when it is set).
#
#   bash scripts/accelerator_run.sh --prepare   # here, once: wheels + MNIST for the GPU machine
#   bash scripts/accelerator_run.sh             # on the GPU machine (< 10 min on one GPU)
#   bash scripts/accelerator_run.sh --tiny      # anywhere: the same code path on a CPU, seconds
#
# The GPU image (Python 3.12) has jax, flax, optax, orbax, matplotlib, tqdm, absl-py and PyYAML
# but not ml_collections (the study files import it), pydantic, tensorboardX or TensorFlow, and
# nothing can be downloaded there. --prepare (run where pip works) puts wheels of the missing
# pure-Python packages (and pydantic-core for cp312 manylinux) into .whl/ and copies the four
# MNIST files from $JAXMNIST_DATA_DIR into .data/mnist/; both folders are git-ignored and travel
# with the device tool's `carry`. The run installs .whl/*.whl into /tmp/jaxmnist-site (no
# network, no dependencies resolved) and reads MNIST with the IDX loader (no TensorFlow).
# Exact device command: docs/performance.md ("GPU: one command").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Versions as in the development virtualenv (pyproject.toml's ranges).
WHEELS=(ml_collections==1.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 typing-extensions==4.16.0 tensorboardX==2.6.5)

if [ "${1:-}" = "--prepare" ]; then
  : "${JAXMNIST_DATA_DIR:?set JAXMNIST_DATA_DIR to the folder with the four MNIST .gz files}"
  rm -rf .whl && mkdir -p .whl .data/mnist
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  cp "$JAXMNIST_DATA_DIR"/*-ubyte.gz .data/mnist/
  "$PY" -m jaxmnist.data check .data/mnist
  ls -l .whl .data/mnist
  exit 0
fi

# Only where something is missing (the wheels are for CPython 3.12, the GPU image's Python).
if ! "$PY" -c "import ml_collections, pydantic, tensorboardX" 2> /dev/null \
    && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/jaxmnist-site .whl/*.whl
  export PYTHONPATH=/tmp/jaxmnist-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -z "${JAXMNIST_DATA_DIR:-}" ] && [ -d .data/mnist ]; then
  export JAXMNIST_DATA_DIR="$PWD/.data/mnist"
fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || true

stamp=$(date -u +%Y%m%d-%H%M%S)
workdir=runs/accelerator/$stamp/s2
"$PY" -m benchmarks.accelerator "$@" --workdir "$workdir" --out benchmarks/results
if [ -n "${OUT:-}" ]; then
  # The device tool brings back at most 8 files: the results and S2's tables and figures.
  cp $(ls -t benchmarks/results/accelerator-*.json | head -1) \
     $(ls -t benchmarks/results/accelerator-*.md | head -1) "$OUT"/
  [ -d "$workdir" ] && tar -czf "$OUT/s2-report.tar.gz" -C "$workdir" tables figures results.json \
    env.json config.json metrics.jsonl
fi
