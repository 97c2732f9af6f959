# Sourced by the comparison scripts: SIMD=avx2 caps everyone at an AVX2-only machine's code
# on any machine (ferrograd's kernels, matrix products included, by `--simd avx2` in
# SIMD_ARGS; PyTorch's own kernels, MKL's and oneDNN's by their environment variables; JAX's
# XLA by --xla_cpu_max_isa); SIMD unset leaves each at the machine's best.
SIMD=${SIMD:-}
SIMD_ARGS=()
if [ "$SIMD" = avx2 ]; then
  SIMD_ARGS=(--simd avx2)
  export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_max_isa=AVX2"
elif [ -n "$SIMD" ]; then
  echo "SIMD takes avx2 (or nothing, for the machine's best)" >&2
  exit 2
fi
