#!/usr/bin/env bash
# A small transformer language model's SGD step: ferrograd (direct mode, optimize mode, the
# whole step compiled) and PyTorch eager, alternating in one run, PASSES times (default 3;
# quote the quietest of each). PyTorch comes from $PYTHON (default python3), best a
# virtualenv outside the repository (pip install torch). SIMD=avx2 caps both
# (benches/simd-cap.sh); FLUSH=1 runs both with subnormals flushed to zero (ferrograd's
# flush_denormals, PyTorch's set_flush_denormal).
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-3}
PYTHON=${PYTHON:-python3}
source benches/simd-cap.sh
ARGS=(-- "${SIMD_ARGS[@]}")
PY_ARGS=()
if [ -n "${FLUSH:-}" ]; then
  ARGS+=(--flush-denormals)
  PY_ARGS+=(--flush-denormals)
fi
cargo bench -p ferrograd-nn --bench transformer --no-run >/dev/null 2>&1
for pass in $(seq 1 "$PASSES"); do
  echo "== pass $pass"
  cargo bench -q -p ferrograd-nn --bench transformer "${ARGS[@]}" 2>/dev/null
  "$PYTHON" benches/pytorch_transformer.py --time "${PY_ARGS[@]}"
done
