"""Shared prompt prefixes on llama.cpp: `make demo`'s base prompts with `share_prefix=0` and `=1`.

Plans the demo's attempts (smoke suite; direct requests, refusal suppression, roleplay), sends them in the
engine's order (shortest prompt first) to the embedded model on llama.cpp with as many in flight as slots,
unshared, shared, and unshared again, and reports per run: wall seconds, prompt tokens asked, prompt
tokens the server computed (summed from its own per-request timing lines), generated tokens; and how many
answers two unshared runs have in common against an unshared and a shared one (llama.cpp's greedy
answers depend on the batch, so the first is the yardstick for the second).

    python benchmarks/llamacpp_prefix.py [--model REF] [--parallel 32] [--max-new-tokens 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.executor import prompt_size
from tunesafe.engine.targets import plan_evaluation
from tunesafe.models import load_model
from tunesafe.models.llamacpp import LlamaCppChatModel
from tunesafe.types import ChatRequest, Generation

ATTACKS = "direct_request,refusal_suppression,roleplay_dan"


def demo_requests(max_new_tokens: int) -> list[ChatRequest]:
    attempts = plan_evaluation(EvalConfig(suite="smoke", attacks=ATTACKS)).plan.attempts
    return [ChatRequest(messages=a.messages, prefill=a.prefill, max_new_tokens=max_new_tokens)
            for a in sorted(attempts, key=prompt_size)]


async def ask_in_flight(model: LlamaCppChatModel, requests: list[ChatRequest],
                        parallel: int) -> list[Generation]:
    gate = asyncio.Semaphore(parallel)  # the engine's --concurrency: one request per slot

    async def one(request: ChatRequest) -> Generation:
        async with gate:
            return (await model.generate([request]))[0]

    try:
        return list(await asyncio.gather(*(one(r) for r in requests)))
    finally:
        await model.aclose()


def measure(ref: str, requests: list[ChatRequest], parallel: int,
            share: int) -> tuple[dict[str, Any], list[str]]:
    load = os.getloadavg()[0]
    model = load_model(f"{ref}?backend=llamacpp&parallel={parallel}&share_prefix={share}")
    assert isinstance(model, LlamaCppChatModel)
    try:
        started = time.perf_counter()
        gens = asyncio.run(ask_in_flight(model, requests, parallel))
        wall = time.perf_counter() - started
        computed = sum(int(n) for n in re.findall(r"prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens",
                                                  model.server.log_text()))
        stats = dict(model.prefixes.stats) if model.prefixes else None
    finally:
        model.close()
    return {"share_prefix": share, "wall_s": round(wall, 1), "requests": len(gens),
            "errors": sum(not g.ok for g in gens), "prompt_tokens_asked": sum(g.prompt_tokens for g in gens),
            "prompt_tokens_computed": computed, "generated_tokens": sum(g.completion_tokens for g in gens),
            "load_before": round(load, 2), "prefix_stats": stats}, [g.text for g in gens]


def _same(a: list[str], b: list[str]) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:qwen2.5-coder-0.5b")
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    requests = demo_requests(args.max_new_tokens)
    rows, texts = [], []
    for share in (0, 1, 0):
        row, answers = measure(args.model, requests, args.parallel, share)
        rows.append(row)
        texts.append(answers)
        print(json.dumps(row))
    result = {"model": args.model, "parallel": args.parallel, "max_new_tokens": args.max_new_tokens,
              "cpus": os.cpu_count(), "runs": rows,
              "same_answers_unshared_vs_unshared": _same(texts[0], texts[2]),
              "same_answers_unshared_vs_shared": _same(texts[0], texts[1]), "of": len(requests)}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
