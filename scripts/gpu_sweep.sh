#!/usr/bin/env bash
# Training variants side by side on a lent GPU (one device call), each validated and its epoch chosen by
# `train` itself on held-out clips 15-16 (no test label). Brings back each variant's chosen checkpoint
# and one tarball of the logs; rank and evaluate them here, on the CPU.
#
# The training split travels pre-resized to the model's 128x192 grey as lossless PNG (identical arrays
# to what `train` loads from the JPEGs, checked when made; 40 MiB where the JPEGs are 61):
#   echo /.ped2train/ >> .git/info/exclude && python scripts/resize_frames.py ../shared/datasets/ped2/training .ped2train
# Device calls: "bash scripts/gpu_sweep.sh 20 470" (timeout_s 560), then "ROUND=2 bash scripts/gpu_sweep.sh 16 330"
# (timeout_s 400), carry [".ped2train"]: 393 s and 331 s on an H200, each train 3.6-5.1 min.
# Usage: gpu_sweep.sh [EPOCHS] [LIMIT_S]; variants are the ROUND lines below (name, then train options).
# Note: these ran with the busier-day composite of that day, which faded base walkers under the donor's ring
# (fixed since in model/crowd.py); the checkpoints were trained on it.
set -euo pipefail  # a failed run is reported below, not fatal: each train runs in the background
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/sweep}
EPOCHS=${1:-20}
LIMIT=${2:-470}
DATA=${MNAD_PED2_TRAIN:-.ped2train}
mkdir -p "$OUT" /tmp/sweep
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=2
PY=${PYTHON:-python3}
ROUND1=(  # 2026-12-04, 20 epochs, cut at 470 s: all four finished
    "c25 --augment 0.5 --crowd 0.25 --lambda-c 0.01 --lambda-s 0.01"
    "c50-l001 --augment 0.5 --crowd 0.5 --lambda-c 0.001 --lambda-s 0.001"
    "c50-lc0 --augment 0.5 --crowd 0.5 --lambda-c 0 --lambda-s 0.01"
    "c50-m20 --augment 0.5 --crowd 0.5 --lambda-c 0.01 --lambda-s 0.01 --memory-size 20"
)
ROUND2=(  # then, 16 epochs, cut at 330 s: the first two stopped after epoch 12
    "c50-lc0-m20 --augment 0.5 --crowd 0.5 --lambda-c 0 --lambda-s 0.01 --memory-size 20"
    "c50-lc0-s1 --augment 0.5 --crowd 0.5 --lambda-c 0 --lambda-s 0.01 --seed 1"
    "c25-lc0 --augment 0.5 --crowd 0.25 --lambda-c 0 --lambda-s 0.01"
    "a50-lc0 --augment 0.5 --lambda-c 0 --lambda-s 0.01"
)
if [ "${ROUND:-1}" = 2 ]; then VARIANTS=("${ROUND2[@]}"); else VARIANTS=("${ROUND1[@]}"); fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for v in "${VARIANTS[@]}"; do
    read -r name options <<<"$v"
    # shellcheck disable=SC2086
    timeout "$LIMIT" $PY -m model.commands.train "$DATA" --fps 10 --epochs "$EPOCHS" --snapshot-every 4 \
        --out "/tmp/sweep/$name/ped2.safetensors" $options >"/tmp/sweep/$name.log" 2>&1 &
done
wait
for v in "${VARIANTS[@]}"; do
    read -r name _ <<<"$v"
    tr '\r' '\n' <"/tmp/sweep/$name.log" | grep -E "^(epoch|shipping|wrote|Traceback|[A-Za-z]*Error)" | sed "s/^/$name: /" || true
    if [ -f "/tmp/sweep/$name/ped2.safetensors" ]; then
        cp "/tmp/sweep/$name/ped2.safetensors" "$OUT/$name.safetensors"
    else  # cut at the limit: its latest snapshot, to be validated here with calibrate --select
        last=$(find "/tmp/sweep/$name" -name 'ped2.ep*.safetensors' 2>/dev/null | sort | tail -1 || true)
        [ -z "$last" ] || cp "$last" "$OUT/$name.$(basename "$last" | cut -d. -f2).safetensors"
    fi
done
tar -czf "$OUT/logs.tgz" -C /tmp/sweep --exclude='*.safetensors' --exclude='*.pt' .
ls -la "$OUT"
