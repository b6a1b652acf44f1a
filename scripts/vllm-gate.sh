#!/usr/bin/env bash
# Gate a LoRA fine-tune against its base on one vLLM server (a GPU machine with vLLM installed).
#   scripts/vllm-gate.sh MODEL ADAPTER_DIR [SUITE] [extra tunesafe gate options...]
# e.g. scripts/vllm-gate.sh Qwen/Qwen2.5-7B-Instruct ./my-lora default --policy policy.yaml
# tunesafe starts `vllm serve MODEL --enable-lora --lora-modules NAME=ADAPTER_DIR` on a free loopback port,
# runs both sides against it (same weights, same kernels), and stops it. VLLM_ARGS adds `vllm serve` flags.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 MODEL ADAPTER_DIR [SUITE] [tunesafe gate options...]" >&2
  exit 2
fi
model=$1 adapter=$(cd "$2" && pwd) suite=${3:-default}
shift $(( $# >= 3 ? 3 : 2 ))
command -v vllm >/dev/null || { echo "vllm is not installed (pip install vllm, on a GPU machine)" >&2; exit 2; }
args=""
if [ -n "${VLLM_ARGS:-}" ]; then
  args="&args=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$VLLM_ARGS")"
fi
exec tunesafe gate --base "vllm:${model}?launch=1${args}" --candidate "vllm:${model}+${adapter}?launch=1${args}" \
  --suite "$suite" --concurrency 64 --out tunesafe-report "$@"
