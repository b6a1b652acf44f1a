"""Latency a guardrail adds, as `tunesafe guardrails verify` measures it: a real NeMo Guardrails server
(the shipped offline config, `make nemo`) whose self-check rails are answered by the loopback test
server, and a Llama-Guard-style classifier on the loopback server, both sides checked with the echo
server as the model, on the smoke suite's direct attempts, at each concurrency given.

    python benchmarks/guardrails.py [--concurrency 1,8] [--suite smoke] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.targets import plan_evaluation
from tunesafe.guardrails.base import last_user
from tunesafe.guardrails.nemo_server import nemo_binary, rail_prompt, serve_nemo
from tunesafe.guardrails.verify import verify_guard
from tunesafe.judges.llm import render_guard
from tunesafe.policy import default_policy
from tunesafe.testing.openai_server import serve


def replies(suite: str) -> dict[str, str]:
    """Both guards' classifier answers: harmful prompts and the echoed answers to them are unsafe."""
    table = {}
    for attempt in plan_evaluation(EvalConfig(suite=suite, attacks="direct_request")).plan.attempts:
        text, unsafe = last_user(attempt.messages), attempt.kind == "harmful"
        table[rail_prompt("self_check_input", text)] = "Yes" if unsafe else "No"
        table[rail_prompt("self_check_output", f"ECHO: {text}")] = "Yes" if unsafe else "No"
        table[render_guard(text)] = "unsafe\nS1" if unsafe else "safe"
        table[render_guard(text, f"ECHO: {text}")] = "unsafe\nS1" if unsafe else "safe"
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        backend = stack.enter_context(serve(replies=replies(args.suite)))
        guards = {"llama-guard": f"llama-guard:openai:guard@{backend.url}"}
        if nemo_binary():
            guards["nemo"] = f"nemo:{stack.enter_context(serve_nemo(backend.url))}?config_id=tunesafe"
        for name, ref in guards.items():
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                result = asyncio.run(verify_guard(ref, suite=args.suite, attacks="direct_request",
                                                  model_ref=f"openai:model@{backend.url}",
                                                  policy=default_policy(), concurrency=concurrency))
                figs = result.body["figures"]
                row = {"guard": name, "concurrency": concurrency, "attempts": figs["attempts"],
                       "p50_ms": figs["latency_ms"]["p50"], "p95_ms": figs["latency_ms"]["p95"],
                       "errors": figs["errors"]["attempts"], "verdict": result.verdict}
                results.append(row)
                print(json.dumps(row), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
