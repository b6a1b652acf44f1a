"""How a run fares against a struggling HTTP endpoint (the loopback server, in this process):

- prompt_500: a share of the prompts fail with HTTP 500 every time (deterministic, by marker). Wanted:
  errors are exactly those prompts' attempts, none from the breaker, and eval's error-rate check fires.
- outage: the whole server answers 500 for `--outage` seconds part-way through. Wanted: the run pauses
  and completes with 0 errors; reported: how long it took compared with the same run without the outage.

    python benchmarks/endpoint_faults.py [--behaviours 540] [--share 0.1] [--concurrency 16]
                                         [--latency 0.02] [--outage 20] [--cooldown 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tunesafe.engine.results import load_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store
from tunesafe.testing.fault_suite import MARKER, write_marked_suite
from tunesafe.testing.openai_server import serve

ATTACKS = "direct_request,prefix_injection"  # keep the request text, so the markers reach the server


def run(url: str, suite: Path, folder: Path, concurrency: int, options: str) -> dict[str, Any]:
    store = Store.open(str(folder / f"run-{time.time_ns()}.db"))
    config = EvalConfig(suite=str(suite), attacks=ATTACKS, judges=("refusal",), concurrency=concurrency)
    started = time.perf_counter()
    report = asyncio.run(evaluate(store, f"openai:bench@{url}?{options}", config, progress=False))
    wall = time.perf_counter() - started
    results = load_results(store, report.run_id)
    errored = {r.attempt.id for r in results if r.generation.error}
    marked = {r.attempt.id for r in results if MARKER in r.attempt.messages[-1].content}
    return {"attempts": len(results), "errors": len(errored), "marked_attempts": len(marked),
            "errors_outside_marked": len(errored - marked), "marked_not_errored": len(marked - errored),
            "breaker_errors": sum("circuit breaker" in (r.generation.error or "") for r in results),
            "error_rate": round(len(errored) / len(results), 4), "wall_s": round(wall, 2),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behaviours", type=int, default=540, help="harmful placeholder requests")
    parser.add_argument("--share", type=float, default=0.1, help="share of prompts that always fail")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.02, help="server latency per request, seconds")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the server is down")
    parser.add_argument("--cooldown", type=float, default=30.0, help="breaker cooldown (ref option)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    step = max(1, round(1 / args.share)) if args.share > 0 else 0
    marks = {i: "500" for i in range(0, args.behaviours, step)} if step else {}
    options = f"cooldown={args.cooldown:g}"
    out: dict[str, Any] = {"behaviours": args.behaviours, "share": args.share,
                           "concurrency": args.concurrency, "latency_s": args.latency,
                           "cooldown_s": args.cooldown}
    with tempfile.TemporaryDirectory() as tmp, serve(latency_s=args.latency) as server:
        folder = Path(tmp)
        faulty = write_marked_suite(folder / "faulty.jsonl", args.behaviours, marks)
        clean = write_marked_suite(folder / "clean.jsonl", args.behaviours, {})
        out["prompt_500"] = run(server.url, faulty, folder, args.concurrency, options)
        print(json.dumps({"prompt_500": out["prompt_500"]}), flush=True)
        out["no_outage"] = run(server.url, clean, folder, args.concurrency, options)
        print(json.dumps({"no_outage": out["no_outage"]}), flush=True)
        # down a quarter of the way into the clean run's duration, for --outage seconds
        timer = threading.Timer(out["no_outage"]["wall_s"] / 4, server.app.go_down, (args.outage,))
        timer.start()
        out["outage"] = {**run(server.url, clean, folder, args.concurrency, options),
                         "outage_s": args.outage}
        timer.join()
        print(json.dumps({"outage": out["outage"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
