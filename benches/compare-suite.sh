#!/usr/bin/env bash
# The seed's benchmark suite: ferrograd (nn path and autodiff direct mode) and PyTorch eager
# on the same workloads, alternating, PASSES times (default 2); quote the quietest of each.
# PyTorch comes from $PYTHON (default python3), best a virtualenv outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-2}
PYTHON=${PYTHON:-python3}
cargo bench -p ferrograd-nn --bench suite --no-run >/dev/null 2>&1
for pass in $(seq 1 "$PASSES"); do
  echo "== pass $pass"
  cargo bench -q -p ferrograd-nn --bench suite 2>/dev/null
  "$PYTHON" benches/pytorch_suite.py
done
