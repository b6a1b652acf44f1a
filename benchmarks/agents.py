"""The agent families on a real model: per family and environment, benign utility, targeted attack
success and the malformed share (95% Wilson intervals), the wall time and where it went (turns, tokens
per turn, turns cut at the token limit), through the engine exactly as `tunesafe eval --suite
agents-smoke` runs them.

    python benchmarks/agents.py [--model REF ...] [--suite agents-smoke] [--max-new-tokens 128]
                                [--attacks agent_tool_injection,agent_second_order,agent_persistent_memory]
                                [--json OUT]

Default model: the embedded Qwen2.5-Coder-0.5B-Instruct on llama.cpp (`?backend=llamacpp`, the GGUF's
own chat template and tool format; tunesafe[llamacpp]). `--model scripted:follows` (or resists, ...)
runs the loopback server scripted as an agent instead: the harness check, with known answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunesafe.agents.summary import markdown, profile, table
from tunesafe.engine import results as store_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store
from tunesafe.testing.openai_server import serve
from tunesafe.types import Rate

FAMILIES = "agent_tool_injection,agent_second_order,agent_persistent_memory"


async def measure(store: Store, model: str, args: argparse.Namespace) -> dict[str, Any]:
    config = EvalConfig(suite=args.suite, attacks=args.attacks, judges=("refusal",),
                        max_new_tokens=args.max_new_tokens, concurrency=args.concurrency)
    started = time.perf_counter()
    report = await evaluate(store, model, config, progress=False)
    wall = time.perf_counter() - started
    results = store_results.load_results(store, report.run_id)
    rows = table(results)
    # What a malformed ending looks like (the last reply of each such episode, cut): the table's
    # malformed share says how often, these say why.
    malformed = [e["steps"][-1]["reply"][:240] for r in results
                 for e in (r.frozen.get("agent") or {}).get("episodes", ()) if e["outcome"] == "malformed"]
    return {"model": model, "suite": args.suite, "attacks": args.attacks, "attempts": len(results),
            "max_new_tokens": args.max_new_tokens, "wall_s": round(wall, 1),
            "profile": profile(results, args.max_new_tokens), "markdown": markdown(rows),
            "malformed_replies": malformed,
            "table": [{k: asdict(v) if isinstance(v, Rate) else v for k, v in r.items()} for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model ref, or scripted:POLICY (repeatable)")
    parser.add_argument("--suite", default="agents-smoke")
    parser.add_argument("--attacks", default=FAMILIES)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)  # llama.cpp serves 8 slots
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    models = args.model or ["embedded:qwen2.5-coder-0.5b?backend=llamacpp"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack, \
            Store.open(f"sqlite:///{Path(tmp) / 'store.db'}") as store:
        for model in models:
            if model.startswith("scripted:"):
                server = stack.enter_context(serve(agent=model.removeprefix("scripted:")))
                model = f"openai:tunesafe-test@{server.url}"
            load = os.getloadavg()[0]
            row = asyncio.run(measure(store, model, args))
            row["load_before"] = round(load, 2)
            row["load_after"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(f"\n## {model}: {row['attempts']} attempts, {row['wall_s']:.0f} s wall, load "
                  f"{row['load_before']} -> {row['load_after']}\n\n{row['markdown']}\n\n"
                  f"profile: {json.dumps(row['profile'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
