#!/usr/bin/env bash
# Throughput of data-parallel training of the digits CNN (or MLP: MODEL=mlp) on 1 and 2 MPI
# processes, alternated for PASSES passes, with the share of all-reduce time hidden behind
# the backward pass. Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev
# libclang-dev). Each of the N processes gets cores/N rayon threads.
#   PASSES=3 MODEL=cnn BATCH=128 EPOCHS=5 BUCKET_KIB=16 benches/ddp-scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-3}
MODEL=${MODEL:-cnn}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-5}
BUCKET_KIB=${BUCKET_KIB:-16}
cargo build --release -q -p ferrograd-dist --features mpi --example train-digits-ddp
exe=target/release/examples/train-digits-ddp
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores; $MODEL, global batch $BATCH, $EPOCHS epochs, ${BUCKET_KIB} KiB buckets"
printf '| pass | processes | examples/s | all-reduce | hidden | held-out accuracy |\n|---|---|---|---|---|---|\n'
for pass in $(seq "$PASSES"); do
  for np in 1 2; do
    threads=$(( cores / np > 0 ? cores / np : 1 ))
    line=$(mpirun --oversubscribe -np "$np" -x RAYON_NUM_THREADS="$threads" "$exe" --mpi \
      --model "$MODEL" --batch-size "$BATCH" --epochs "$EPOCHS" --bucket-kib "$BUCKET_KIB" | tail -1)
    # "held-out accuracy A%; R examples/s over all ranks; all-reduce T in all, H% of it hidden ..."
    acc=$(sed -E 's/held-out accuracy ([0-9.]+%).*/\1/' <<<"$line")
    rate=$(sed -E 's/.*; ([0-9]+) examples\/s.*/\1/' <<<"$line")
    comm=$(sed -E 's/.*all-reduce ([^ ]+) in all.*/\1/' <<<"$line")
    hidden=$(sed -E 's/.*, ([0-9]+%) of it hidden.*/\1/' <<<"$line")
    echo "| $pass | $np | $rate | $comm | $hidden | $acc |"
  done
done
