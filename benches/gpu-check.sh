#!/usr/bin/env bash
# The CUDA backend's tests on a GPU machine, prepared to fit a short lease.
#
# The GPU machines lent to sessions (the `device` tool) have the NVIDIA driver, CUDA 13 and
# PyTorch but no Rust toolchain and no network, so the test binaries are built here and
# carried there:
#
#   here:   benches/gpu-check.sh build   # stripped test binaries in target/gpu-check (~40 MB)
#   there:  benches/gpu-check.sh run     # run with carry: ["target/gpu-check"]; logs in $OUT
#
# `run` finds the driver's CUDA libraries (NVRTC and cuBLAS, from the toolkit or PyTorch's
# wheels), links them under the unversioned names cudarc also looks for, prints the GPU,
# then runs every test whose body runs on each available device: the kernels compiled by
# the driver's NVRTC, the array ops, a network's gradients and checkpoints, each against the
# CPU; then trains the MLP and CNN examples there (`--device cuda`). The binaries need glibc
# 2.34 or newer there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/gpu-check

case "${1:-}" in
build)
  rm -rf "$dir"
  mkdir -p "$dir"
  cargo test --features ferrograd-nn/cuda -p ferrograd-array -p ferrograd -p ferrograd-nn \
    --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
wanted = {("ferrograd_array", "lib"), ("array", "test"), ("autodiff", "test"), ("checkpoint", "test"), ("functional", "test")}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        key = (m["target"]["name"], m["target"]["kind"][0])
        if key in wanted:
            print(key[0], m["executable"])
' | while read -r name exe; do
      cp "$exe" "$dir/$name"
      strip "$dir/$name"
    done
  # and the MLP and CNN examples, trained on the GPU with --device cuda
  cargo build --features ferrograd/cuda --example train-mnist-mlp --example train-mnist-cnn
  for e in train-mnist-mlp train-mnist-cnn; do
    cp "target/debug/examples/$e" "$dir/$e"
    strip "$dir/$e"
  done
  ls -la "$dir"
  du -sh "$dir"
  ;;
run)
  out="${OUT:-/tmp/gpu-check-out}"
  mkdir -p "$out"
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"; } | tee "$out/gpu.txt"
  # the CUDA libraries, under the names cudarc's loader tries
  links=/tmp/ferrograd-cuda-libs
  mkdir -p "$links"
  for lib in nvrtc nvrtc-builtins cublas cublasLt; do
    found=$(find /usr/local/cuda*/ /usr/lib /usr/local/lib "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)" \
      -name "lib$lib.so*" 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$found" ]; then
      echo "lib$lib: $found" | tee -a "$out/gpu.txt"
      ln -sf "$found" "$links/lib$lib.so"
      ln -sf "$found" "$links/$(basename "$found")"
    fi
  done
  export LD_LIBRARY_PATH="$links${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export FERROGRAD_REQUIRE_NVRTC=1 RUST_BACKTRACE=1 FERROGRAD_DATA="$PWD/data"
  status=0
  run() {
    local name=$1
    shift
    echo "== $name $*" | tee -a "$out/tests.log"
    "$dir/$name" "$@" 2>&1 | tee -a "$out/tests.log" || status=1
  }
  run ferrograd_array cuda::
  run array devices::
  run autodiff devices::
  run checkpoint devices
  run functional devices
  run train-mnist-mlp --quick --device cuda --plot "$out/mlp.svg"
  run train-mnist-cnn --quick --device cuda --plot "$out/cnn.svg"
  echo "exit $status" | tee -a "$out/tests.log"
  exit $status
  ;;
*)
  echo "usage: benches/gpu-check.sh build|run" >&2
  exit 2
  ;;
esac
