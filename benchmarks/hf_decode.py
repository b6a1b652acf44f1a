"""Decode throughput of the hf backend per decode mode (`hf:...?decode=generate|static|continuous`), through
load_model and the engine's micro-batcher, on a random-weight Llama (speed does not depend on the
weights; nothing is downloaded). On CUDA it also measures the copy bandwidth and reports each figure as a
share of the weight-read bound (batch x bandwidth / 2 / weight bytes tokens/s: every decode step reads
every weight once).

    python benchmarks/hf_decode.py --shape 8b --batches 1,16,64 [--json OUT]      # a GPU machine
    python benchmarks/hf_decode.py --shape tiny --batches 1,4                      # a CPU dry run

Each mode's first batch is a warm-up (compilation, CUDA graphs) and is not timed."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesafe.models import load_model
from tunesafe.testing.random_llama import SHAPES, save_random_llama
from tunesafe.types import ChatRequest, Message


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    import torch

    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    return 10 * 2 * x.numel() / (time.perf_counter() - started)


def weight_file_bytes(folder: Path) -> int:
    """The weight bytes of a model saved earlier (its safetensors tensors, header excluded)."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                part = f.get_slice(name)
                total += math.prod(part.get_shape()) * BYTES[part.get_dtype()]
    return total


BYTES = {"BF16": 2, "F16": 2, "F32": 4}


def requests(n: int, vocab: int, prompt: int, new: int, seed: int) -> list[ChatRequest]:
    rng = random.Random(seed)
    return [ChatRequest(messages=(Message("user", " ".join(f"t{rng.randrange(vocab - 4)}"
                                                           for _ in range(prompt))),),
                        max_new_tokens=new) for _ in range(n)]


async def measure(ref: str, batch: int, vocab: int, prompt: int, new: int) -> dict[str, Any]:
    model = load_model(ref)
    await model.generate(requests(batch, vocab, prompt, new, seed=0))  # warm-up: compile, graphs
    reqs = requests(2 * batch, vocab, prompt, new, seed=1)
    started = time.perf_counter()
    gens = await model.generate(reqs)
    seconds = time.perf_counter() - started
    await model.aclose()
    errors = [g.error for g in gens if g.error]
    tokens = sum(g.completion_tokens or 0 for g in gens)
    return {"batch": batch, "requests": len(reqs), "tokens": tokens, "seconds": round(seconds, 3),
            "tok_s": round(tokens / seconds, 1), "errors": len(errors),
            "first_error": errors[0][:200] if errors else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--modes", default="generate,static,continuous")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model-dir", type=Path,
                        help="keep the random model here and reuse it when it is there already (so each "
                             "shape can run in a process of its own without writing 16 GB again)")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.model_dir or Path(scratch)
        weight_bytes = (weight_file_bytes(tmp) if (tmp / "config.json").exists() else
                        save_random_llama(tmp, args.shape, device=device,
                                          dtype=torch.bfloat16 if device == "cuda" else None))
        bandwidth = copy_bandwidth() if device == "cuda" else None
        dtype = "bfloat16" if device == "cuda" else "float32"
        for mode in args.modes.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                ref = f"hf:{tmp}?device={device}&dtype={dtype}&max_batch={batch}&decode={mode}"
                row = {"mode": mode, **asyncio.run(measure(ref, batch, SHAPES[args.shape]["vocab_size"],
                                                           args.prompt_tokens, args.new_tokens))}
                if bandwidth:
                    bound = batch * bandwidth / 2 / weight_bytes
                    row.update(weight_bound_tok_s=round(bound, 1),
                               share_of_bound=round(row["tok_s"] / bound, 3))
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "shape": args.shape,
               "weight_GB": round(weight_bytes / 1e9, 2),
               "copy_bandwidth_TBps": round(bandwidth / 1e12, 2) if bandwidth else None,
               "torch": torch.__version__, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
