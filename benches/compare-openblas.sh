#!/usr/bin/env bash
# Matrix products on gemm (the default build) against the `openblas` feature (the system's
# OpenBLAS; Debian: libopenblas-dev), alternating in one run, PASSES times (default 3; quote
# the quietest of each): the array bench's matmul rows, then the suite rows named by SUITE
# (default "batched": the rows whose products are largest), each in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-3}
SUITE=${SUITE:-batched}
# the `f32-one-thread` rows are left out: OpenBLAS runs its own threads, not the bench's
# one-thread rayon pool
ROWS="matmul/f32/|matmul/f64/|f32-skinny|f32-halves|f32-vector"
features() { # the array bench's and the suite's feature flags for a build
  if [ "$1" = gemm ]; then array=""; suite=""; else
    array="--features openblas"; suite="--features ferrograd-nn/openblas"; fi
}
for build in gemm openblas; do
  features "$build"
  # shellcheck disable=SC2086
  cargo bench -p ferrograd-array $array --bench array --no-run
  # shellcheck disable=SC2086
  cargo bench -p ferrograd-nn $suite --bench suite --no-run
done
for pass in $(seq 1 "$PASSES"); do
  for build in gemm openblas; do
    features "$build"
    echo "== pass $pass: $build"
    # shellcheck disable=SC2086
    cargo bench -q -p ferrograd-array $array --bench array -- "$ROWS" 2>/dev/null
    # shellcheck disable=SC2086
    cargo bench -q -p ferrograd-nn $suite --bench suite -- --only "$SUITE" 2>/dev/null
  done
done
