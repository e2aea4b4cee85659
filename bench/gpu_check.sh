#!/usr/bin/env bash
# The one prepared GPU check (issue 5) for a session that is lent a device machine: the CUDA paths'
# scores against CPU fp32 (pytest -m cuda), score_step and engine speed per CUDA path for the shipped
# and the paper's setting (model_speed), and evaluate's frames/s and AUC per path (evaluate_speed).
# Needs what the device image has (torch, numpy, OpenCV, safetensors, scikit-learn, typer, tqdm, pytest)
# and pydantic (the engine rows of model_speed import the service's messages), which the image lacks:
# carry its wheels in .whl (pip download, see the device tool's notes: pydantic, pydantic_core,
# annotated-types, typing-inspection, typing_extensions for cp312 manylinux). Each step has its own time limit and a failing step
# does not stop the others; everything lands in $OUT (here: runs/gpu/).
#
# Ped2 does not travel with the repo (../shared stays behind), so copy the test split in first, here:
#   echo /.ped2/ >> .git/info/exclude && mkdir -p .ped2 &&
#   cp -r ../shared/datasets/ped2/testing ../shared/datasets/ped2/frame_labels_ped2.npy .ped2/
# then call the device tool's run with command "bash bench/gpu_check.sh", carry [".ped2", ".whl"], timeout_s 560.
# It runs for about 7 minutes; report its tables in docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD MNAD_PED2=${MNAD_PED2:-$PWD/.ped2}
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=$PWD:/tmp/site
fi
PY=${PYTHON:-python3}
exec > >(tee "$OUT/gpu_check.log") 2>&1

step() {  # step SECONDS NAME COMMAND...: run with a time limit, report its status, carry on
    local limit=$1 name=$2
    shift 2
    echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
    timeout "$limit" "$@"
    echo "=== $name: exit $?"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
step 150 "cuda paths vs cpu fp32" $PY -m pytest -q -m cuda -p no:cacheprovider tests/model/test_inference.py
step 240 "model_speed" $PY bench/model_speed.py --device cuda --paths fp32,fp16,bf16,compile \
    --settings shipped,paper --batch 16 --seconds 4 --out "$OUT/model_speed_cuda.json"
step 120 "evaluate_speed" $PY bench/evaluate_speed.py --device cuda --paths fp32,fp16,bf16 \
    --ped2 "$MNAD_PED2" --out "$OUT/evaluate_speed_cuda.json"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
