#!/usr/bin/env bash
# The local GPU path's measurement (BENCHMARKS.md, "Local GPU path"), as one run on a GPU machine:
#   scripts/gpu-decode-check.sh [OUT_DIR]
# 1. the decode-mode tests (greedy tokens of static / continuous equal generate's, on the CPU);
# 2. benchmarks/hf_decode.py: each decode mode on a random Llama-3-8B-shaped model in bf16, batches 1, 16
#    and 64, against the weight-read bound;
# 3. shared/device/ts_gpu.py (or ../shared/...) when present: the default path (auto = static on CUDA) and transformers'
#    own static-cache generate() in the same process.
# Results go to OUT_DIR (default: $OUT, else ./gpu-decode-results).
set -euo pipefail
out=${1:-${OUT:-gpu-decode-results}}
mkdir -p "$out"
py=${PYTHON:-python}
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))'
"$py" -m pytest -q tests/models/test_hf_decode.py 2>&1 | tail -3 | tee "$out/tests.txt"
"$py" benchmarks/hf_decode.py --shape 8b --batches 1,16,64 --json "$out/hf_decode.json" | tee "$out/hf_decode.txt"
for ts in shared/device/ts_gpu.py ../shared/device/ts_gpu.py; do
  if [ -f "$ts" ]; then OUT="$out" "$py" "$ts" | tee "$out/ts_gpu.txt"; break; fi
done
