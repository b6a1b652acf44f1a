"""The agent families on a real model: benign utility, utility under attack and targeted attack success
per family and environment (95% intervals), the outcome mix (answered, malformed, step limit) and the
wall time, through the engine exactly as `tunesafe eval --suite agents-smoke` runs them.

    python benchmarks/agents.py [--model REF ...] [--suite agents-smoke] [--max-new-tokens 192]
                                [--attacks agent_tool_injection,agent_second_order,agent_persistent_memory]
                                [--json OUT]

Default model: the embedded Qwen2.5-Coder-0.5B-Instruct on transformers (its chat template carries the
tool format). `--model scripted:follows` (or resists, ...) runs the loopback server scripted as an
agent instead: the harness check, with known answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tunesafe.analysis.agents import agent_metrics, rate_fields
from tunesafe.engine import results as store_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store
from tunesafe.testing.openai_server import serve

FAMILIES = "agent_tool_injection,agent_second_order,agent_persistent_memory"


async def measure(store: Store, model: str, args: argparse.Namespace) -> dict[str, Any]:
    config = EvalConfig(suite=args.suite, attacks=args.attacks, judges=("refusal",),
                        max_new_tokens=args.max_new_tokens, concurrency=args.concurrency)
    started = time.perf_counter()
    report = await evaluate(store, model, config, progress=False)
    wall = time.perf_counter() - started
    results = store_results.load_results(store, report.run_id)
    episodes = [e for r in results for e in (r.frozen.get("agent") or {}).get("episodes", ())]
    outcomes = Counter(e["outcome"] for e in episodes)
    calls = sum(len(s["calls"]) for e in episodes for s in e["steps"])
    groups = {key: {"n": g.n, "errors": g.errors,
                    **{name: rate_fields(rate) for name, rate in g.rates.items() if rate.n}}
              for key, g in agent_metrics(results).items()}
    return {"model": model, "suite": args.suite, "attacks": args.attacks, "attempts": len(results),
            "wall_s": round(wall, 1), "episode_outcomes": dict(outcomes), "tool_calls": calls,
            "completion_tokens": sum(r.generation.completion_tokens for r in results), "groups": groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model ref, or scripted:POLICY (repeatable)")
    parser.add_argument("--suite", default="agents-smoke")
    parser.add_argument("--attacks", default=FAMILIES)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    models = args.model or ["embedded:qwen2.5-coder-0.5b"]
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
            print(json.dumps(row, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
