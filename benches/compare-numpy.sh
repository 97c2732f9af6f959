#!/usr/bin/env bash
# Runs ferrograd's array benchmarks and NumPy's on the same shapes, alternating, PASSES times
# (default 3): the machine is shared and noisy, so quote the quietest pass of each.
# NumPy comes from $PYTHON (default: python3), best a virtualenv outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-3}
PYTHON=${PYTHON:-python3}
FILTER=${1:-"matmul|elementwise"}
cargo bench -p ferrograd-array --bench array --no-run >/dev/null 2>&1
for pass in $(seq 1 "$PASSES"); do
  echo "== pass $pass: ferrograd"
  cargo bench -q -p ferrograd-array --bench array -- "$FILTER" 2>/dev/null
  echo "== pass $pass: numpy"
  # Some machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which pin OpenBLAS to older
  # kernels; NumPy is measured with its own choice of kernel.
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PYTHON" benches/numpy_array.py
done
