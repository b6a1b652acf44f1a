#!/usr/bin/env bash
# The local GPU path's measurement (BENCHMARKS.md, "Local GPU path"), as one run on a GPU machine:
#   scripts/gpu-decode-check.sh [OUT_DIR]
# 1. benchmarks/hf_decode.py: each decode mode and batch (1, 16, 64) in a process of its own, on one random
#    Llama-3-8B-shaped model in bf16 written once, against the weight-read bound. A process of its own per
#    shape because on torch 2.11 the compiled static path failed at the second shape a process compiled;
#    then 1,16,64 in one process, to see whether that still holds;
# 2. shared/device/ts_gpu.py (or ../shared/...) when present: the default path (auto = static on CUDA) and
#    transformers' own static-cache generate() in the same process;
# 3. the decode-mode tests (greedy tokens of static / continuous equal generate's, on the CPU).
# Results go to OUT_DIR (default: $OUT, else ./gpu-decode-results), four files (hf_decode.txt: one JSON row
# per mode and batch).
set -euo pipefail
out=${1:-${OUT:-gpu-decode-results}}
mkdir -p "$out"
py=${PYTHON:-python}
model=${MODEL_DIR:-/tmp/tunesafe-8b-random}
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))'
# the target's settings first (batches 16 and 64), so a run cut short still answers it
for run in static:16 static:64 continuous:16 continuous:64 generate:16 generate:64 static:1 generate:1; do
  "$py" benchmarks/hf_decode.py --shape 8b --batches "${run#*:}" --modes "${run%%:*}" --model-dir "$model" \
    2>&1 | grep -E '^\{|Error|failed' | tee -a "$out/hf_decode.txt" || true
done
"$py" benchmarks/hf_decode.py --shape 8b --batches 1,16,64 --modes static --model-dir "$model" 2>&1 \
  | grep -E '^\{|Error|failed' | tee -a "$out/hf_decode.txt" || true
for ts in shared/device/ts_gpu.py ../shared/device/ts_gpu.py; do
  if [ -f "$ts" ]; then OUT="$out" "$py" "$ts" | tee "$out/ts_gpu.txt"; break; fi
done
"$py" -m pytest -q tests/models/test_hf_decode.py 2>&1 | tail -3 | tee "$out/tests.txt" || true
