"""End-to-end engine throughput: attempts/s (attack, HTTP call, judge, store) against the loopback
OpenAI-compatible server with a fixed latency per request, template attacks, at several concurrency
levels. Each run uses a fresh SQLite store (so no response-cache hits) and starts with the judge's
embedding cache emptied (the model stays loaded): the loopback server answers the same prompts the same
way in every run, and a warm cache would measure answers judged before. The server runs in its own
process.

Also times the judge alone on the same answers, so a judge bottleneck shows up as such.

    python benchmarks/engine.py [--suite default] [--limit 100] [--latency 0.1] [--concurrency 8,16,32,64]
                                [--judge default] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesafe.engine.results import load_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store
from tunesafe.judges import JudgeInput, get_judge
from tunesafe.judges.classifier import Embedder
from tunesafe.testing.openai_server import serve_subprocess
from tunesafe.training.probes import warm_judge


def one_run(url: str, config: EvalConfig, folder: Path) -> tuple[dict[str, Any], Store, str]:
    store = Store.open(str(folder / f"bench-{time.time_ns()}.db"))
    Embedder.forget()
    started = time.perf_counter()
    report = asyncio.run(evaluate(store, f"openai:bench@{url}", config, progress=False))
    wall = time.perf_counter() - started  # includes opening the model and closing the run (evidence)
    stats = dict(report.stats)
    stats["end_to_end_s"] = round(wall, 3)
    stats["end_to_end_attempts_per_s"] = round(stats["attempts"] / wall, 2)
    return stats, store, report.run_id


def judge_alone(store: Store, run_id: str, judge_name: str, batch: int = 64) -> float:
    """items/s of the judge alone, in the engine's batch size, on the answers of a finished run."""
    results = load_results(store, run_id)
    items = [JudgeInput(request="", response=r.response, kind=r.attempt.kind, id=r.attempt.id)
             for r in results if r.generation.ok]
    judge = get_judge(judge_name)
    Embedder.forget()

    async def go() -> None:
        for i in range(0, len(items), batch):
            await judge.judge(items[i:i + batch])

    started = time.perf_counter()
    asyncio.run(go())
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--attacks", default="template")
    parser.add_argument("--limit", type=int, default=100, help="behaviours (spread over kinds)")
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    parser.add_argument("--concurrency", default="8,16,32,64")
    parser.add_argument("--judge", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, serve_subprocess(latency_s=args.latency) as url:
        folder = Path(tmp)
        # Warm-up, as a long run would be: the judge's embedding model loads on first use, and the few
        # answers of a short run may all be decided by patterns, so load it explicitly too.
        warm = EvalConfig(suite=args.suite, attacks=args.attacks, judges=(args.judge,), limit=3)
        _, store, run_id = one_run(url, warm, folder)
        warm_judge(get_judge(args.judge))
        for level in levels:
            config = EvalConfig(suite=args.suite, attacks=args.attacks, judges=(args.judge,),
                                limit=args.limit, concurrency=level)
            runs = []
            for _ in range(args.repeats):
                stats, store, run_id = one_run(url, config, folder)
                runs.append(stats)
            rate = statistics.median(r["attempts_per_s"] for r in runs)
            e2e = statistics.median(r["end_to_end_attempts_per_s"] for r in runs)
            row = {"concurrency": level, "attempts": runs[0]["attempts"],
                   "errors": sum(r["errors"] for r in runs),
                   "attempts_per_s_median": rate, "end_to_end_attempts_per_s_median": e2e,
                   "attempts_per_s_all": [r["attempts_per_s"] for r in runs],
                   "ceiling_attempts_per_s": round(level / args.latency, 1),
                   "load_average_1m": os.getloadavg()[0]}  # the machine is shared: say how busy it was
            rows.append(row)
            print(json.dumps(row), flush=True)
        judge_rate = judge_alone(store, run_id, args.judge)
    summary = {"suite": args.suite, "attacks": args.attacks, "limit": args.limit, "latency_s": args.latency,
               "judge": args.judge, "repeats": args.repeats, "levels": rows,
               "judge_alone_items_per_s": round(judge_rate, 1)}
    print(f"judge '{args.judge}' alone: {judge_rate:.0f} items/s")
    print("| concurrency | attempts | attempts/s (median) | incl. setup+close | ceiling (c/latency) | load |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['attempts']} | {r['attempts_per_s_median']} | "
              f"{r['end_to_end_attempts_per_s_median']} | {r['ceiling_attempts_per_s']} | "
              f"{r['load_average_1m']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
