"""What this CPU gives torch's kernels: the arithmetic peak of a large matrix product (fp32, bf16), the
memory bandwidth of a copy into allocated memory, and the speed of the probe's own case, 16 hidden states
against weights streamed from memory (72 MLP-shaped matrices, 1.25 GB in fp32: more than any cache), in
fp32 (torch's `linear`, and oneDNN on weights packed once as the probe does), in bf16, and for one row.

Why: a training step's products are large and run near the arithmetic peak; a probe's decode step
multiplies 16 rows by every weight once, and how close that comes to memory speed depends on the
kernel. Their ratio decides the probe's share of training time on a machine (BENCHMARKS.md,
"Mitigation proof").

    python benchmarks/cpu_kernels.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path


def seconds(work: Callable[[], object], repeats: int) -> float:
    """Mean seconds of `work` after one warm-up run."""
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.manual_seed(0)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    flops = 2 * n ** 3
    copy, target = torch.randn(64_000_000), torch.empty(64_000_000)
    weights = [torch.randn(4864, 896) for _ in range(72)]
    weights16 = [w.bfloat16() for w in weights]
    hidden = torch.randn(16, 896)
    hidden16 = hidden.bfloat16()
    streamed = sum(w.numel() for w in weights)

    def stream(ws: list[torch.Tensor], h: torch.Tensor) -> None:
        for w in ws:
            torch.nn.functional.linear(h, w)

    def packed_stream() -> None:
        for p in packed:
            torch.ops.mkldnn._linear_pointwise(hidden, p, None, "none", [], "")

    fp32_stream = seconds(lambda: stream(weights, hidden), 2)
    bf16_stream = seconds(lambda: stream(weights16, hidden16), 2)
    one_row = seconds(lambda: stream(weights, hidden[:1]), 2)
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, 16) for w in weights]
    packed_fp32 = seconds(packed_stream, 2)
    result = {
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_before": os.getloadavg()[0],
        "matmul_gflops": {"fp32": round(flops / seconds(lambda: a @ b, 5) / 1e9, 1),
                          "bf16": round(flops / seconds(lambda: a16 @ b16, 5) / 1e9, 1)},
        # read and written; into memory already allocated, so page faults do not count
        "copy_gb_per_s": round(2 * copy.numel() * 4 / seconds(lambda: target.copy_(copy), 5) / 1e9, 2),
        "streamed_16_rows": {
            "gb_fp32": round(streamed * 4 / 1e9, 2),
            "fp32_ms": round(fp32_stream * 1e3, 1),
            "fp32_gb_per_s": round(streamed * 4 / fp32_stream / 1e9, 2),
            "fp32_packed_ms": round(packed_fp32 * 1e3, 1),
            "fp32_packed_gb_per_s": round(streamed * 4 / packed_fp32 / 1e9, 2),
            "fp32_one_row_ms": round(one_row * 1e3, 1),
            "fp32_one_row_gb_per_s": round(streamed * 4 / one_row / 1e9, 2),
            "bf16_ms": round(bf16_stream * 1e3, 1),
            "bf16_gb_per_s": round(streamed * 2 / bf16_stream / 1e9, 2),
        },
        "load_after": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
