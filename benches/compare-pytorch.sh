#!/usr/bin/env bash
# Runs ferrograd's autodiff benchmark and PyTorch eager's on the same programs, alternating,
# PASSES times (default 3); quote the quietest of each. PyTorch comes from $PYTHON (default
# python3), best a virtualenv outside the repository (pip install torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-3}
PYTHON=${PYTHON:-python3}
cargo bench -p ferrograd --bench autodiff --no-run >/dev/null 2>&1
for pass in $(seq 1 "$PASSES"); do
  echo "== pass $pass"
  cargo bench -q -p ferrograd --bench autodiff 2>/dev/null
  "$PYTHON" benches/pytorch_autodiff.py
done
