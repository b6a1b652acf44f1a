"""A gate's two sides on llama.cpp: in turn (one server on all cores, then the other) or together (both
servers at once, half the cores each, as `tunesafe gate` runs them; docs/decisions.md).

Sends `make demo`'s 124 base prompts (smoke suite; direct requests, refusal suppression, roleplay) to the
embedded base and to base + aoa-demo adapter, as many in flight as slots, and reports the wall time of
each side and of both, the generated tokens and the errors.

    python benchmarks/gate_sides.py [--mode in-turn|together|both] [--parallel 32] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from llamacpp_prefix import ask_in_flight, demo_requests

from tunesafe.models import load_model
from tunesafe.models.llamacpp import LlamaCppChatModel
from tunesafe.types import ChatRequest, Generation

BASE = "embedded:qwen2.5-coder-0.5b"
CANDIDATE = "embedded:qwen2.5-coder-0.5b+aoa-demo"


def _open(ref: str, parallel: int, threads: int) -> LlamaCppChatModel:
    model = load_model(f"{ref}?backend=llamacpp&parallel={parallel}&threads={threads}")
    assert isinstance(model, LlamaCppChatModel)
    return model


async def _side(model: LlamaCppChatModel, requests: list[ChatRequest], parallel: int,
                started: float) -> tuple[float, list[Generation]]:
    gens = await ask_in_flight(model, requests, parallel)
    return time.perf_counter() - started, gens


def measure(mode: str, requests: list[ChatRequest], parallel: int) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0]
    sides: list[tuple[float, list[Generation]]] = []
    started = time.perf_counter()
    if mode == "in-turn":
        for ref in (BASE, CANDIDATE):
            model = _open(ref, parallel, cpus)
            try:
                sides.append(asyncio.run(_side(model, requests, parallel, time.perf_counter())))
            finally:
                model.close()
    else:
        models = [_open(ref, parallel, max(1, cpus // 2)) for ref in (BASE, CANDIDATE)]

        async def together() -> list[tuple[float, list[Generation]]]:
            begun = time.perf_counter()
            return list(await asyncio.gather(*(_side(m, requests, parallel, begun) for m in models)))

        try:
            sides = asyncio.run(together())
        finally:
            for model in models:
                model.close()
    wall = time.perf_counter() - started
    return {"mode": mode, "wall_s": round(wall, 1), "load_before": round(load, 2), "cpus": cpus,
            **{name: {"seconds": round(seconds, 1), "errors": sum(not g.ok for g in gens),
                      "generated_tokens": sum(g.completion_tokens for g in gens)}
               for name, (seconds, gens) in zip(("base", "candidate"), sides, strict=True)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("in-turn", "together", "both"), default="both")
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    requests = demo_requests(args.max_new_tokens)
    modes = ("in-turn", "together") if args.mode == "both" else (args.mode,)
    rows = []
    for mode in modes:
        rows.append(measure(mode, requests, args.parallel))
        print(json.dumps(rows[-1]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"parallel": args.parallel, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
