#!/usr/bin/env bash
# Compares the values and gradients of ferrograd's ops, losses, linear algebra and layers
# at awkward points (zeros, ties, infinities, NaN, singular matrices) with PyTorch's: the
# cases are printed by `cargo bench -p ferrograd-nn --bench pytorch-parity` (not a timing),
# and benches/pytorch_parity.py computes each with PyTorch from $PYTHON (default python3,
# best a virtualenv outside the repository: pip install torch). It lists every difference;
# those it knows (each with its reason) do not fail it, any other does.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
cases=$(mktemp)
trap 'rm -f "$cases"' EXIT
cargo bench -q -p ferrograd-nn --bench pytorch-parity >"$cases"
"$PYTHON" benches/pytorch_parity.py "$cases"
