#!/usr/bin/env bash
# f32 matmul against NumPy in short alternating rounds (ROUNDS, default 10; sizes as
# arguments, default 1024 2048), then the median over rounds of each side's per-round figures.
# Both sides see the same load within a round pair, which the minutes-long passes of
# compare-numpy.sh do not. NumPy comes from $PYTHON (default python3), best a virtualenv
# outside the repository. SIMD=avx2 runs both on AVX2 kernels, on any machine: ferrograd's
# gemm capped at AVX2, NumPy's OpenBLAS pinned to its Haswell (AVX2) kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
PYTHON=${PYTHON:-python3}
SIMD=${SIMD:-}
cargo bench -p ferrograd-array --bench matmul_rounds --no-run >/dev/null 2>&1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  cargo bench -q -p ferrograd-array --bench matmul_rounds -- "$@" ${SIMD:+--simd "$SIMD"} 2>/dev/null | tee -a "$log"
  if [ "$SIMD" = avx2 ]; then
    OPENBLAS_CORETYPE=Haswell "$PYTHON" benches/numpy_matmul_rounds.py "$@" | tee -a "$log"
  else
    # Some machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which pin OpenBLAS to older
    # kernels; NumPy is measured with its own choice of kernel.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PYTHON" benches/numpy_matmul_rounds.py "$@" | tee -a "$log"
  fi
done
echo "== over $ROUNDS rounds: median of each round's min and median (ms)"
python3 - "$log" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+)\s+f32\s+(\d+): min\s+([\d.]+) ms\s+median\s+([\d.]+)", line)
    if m:
        rows.setdefault((int(m.group(2)), m.group(1)), []).append((float(m.group(3)), float(m.group(4))))
for (n, who), v in sorted(rows.items()):
    print(f"{who:<10} f32 {n:>5}: min {statistics.median(x for x, _ in v):7.2f}  median {statistics.median(y for _, y in v):7.2f}  (best round min {min(x for x, _ in v):.2f})")
PY
