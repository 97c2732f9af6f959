#!/usr/bin/env bash
# The seed's benchmark suite against its peers, alternating in one run, PASSES times
# (default 2; quote the quietest of each): ferrograd (nn path, autodiff direct mode and
# optimize mode), PyTorch eager (with its fused nn.LSTM) and JAX jit (with lax.scan for the
# LSTM rows). The Python references come from $PYTHON (default python3), best a virtualenv
# outside the repository: `python3 -m venv ~/pyref && ~/pyref/bin/pip install torch jax`.
#
# SIMD=avx2 runs everyone on an AVX2-only machine's code, on any machine: ferrograd with its
# kernels (matrix products included) capped by `--simd avx2`, PyTorch with its own kernels,
# MKL's and oneDNN's capped by their environment variables, JAX's XLA by --xla_cpu_max_isa.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-2}
PYTHON=${PYTHON:-python3}
source benches/simd-cap.sh
SUITE_ARGS=(-- "${SIMD_ARGS[@]}")
cargo bench -p ferrograd-nn --bench suite --no-run >/dev/null 2>&1
for pass in $(seq 1 "$PASSES"); do
  echo "== pass $pass"
  cargo bench -q -p ferrograd-nn --bench suite "${SUITE_ARGS[@]}" 2>/dev/null
  "$PYTHON" benches/pytorch_suite.py
  if "$PYTHON" -c "import jax" 2>/dev/null; then
    "$PYTHON" benches/jax_suite.py 2>/dev/null
  fi
done
