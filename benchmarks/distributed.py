"""Throughput of `--executor ray` against the loopback server: attempts/s end to end for 1, 2 and 4 Ray
workers (and the local executor for reference), same plan, fresh store each run, the server in its own
process with a fixed latency per request. One local Ray cluster serves every row.

    python benchmarks/distributed.py [--suite default] [--limit 60] [--latency 0.1] [--concurrency 8]
                                     [--workers 1,2,4] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store
from tunesafe.testing.openai_server import serve_subprocess


def one_run(url: str, config: EvalConfig, folder: Path) -> dict[str, Any]:
    store = Store.open(str(folder / f"bench-{time.time_ns()}.db"))
    started = time.perf_counter()
    report = asyncio.run(evaluate(store, f"openai:bench@{url}", config, progress=False))
    wall = time.perf_counter() - started
    return {"executor": config.executor, "workers": config.workers if config.executor == "ray" else None,
            "attempts": report.stats["attempts"], "errors": report.stats["errors"], "wall_s": round(wall, 2),
            "attempts_per_s": round(report.stats["attempts"] / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--attacks", default="template")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start_s = round(time.perf_counter() - started, 1)
    rows: list[dict[str, Any]] = []
    base = EvalConfig(suite=args.suite, attacks=args.attacks, limit=args.limit, concurrency=args.concurrency,
                      judges=("default",), use_cache=False)
    configs = [base] + [EvalConfig(**{**base.__dict__, "executor": "ray", "workers": int(w)})
                        for w in args.workers.split(",")]
    with serve_subprocess(latency_s=args.latency) as url, tempfile.TemporaryDirectory() as folder:
        for config in configs:
            row = one_run(url, config, Path(folder))
            rows.append(row)
            print(json.dumps(row), flush=True)
    ray.shutdown()
    result = {"ray_start_s": ray_start_s, "cpus": os.cpu_count(), "load": os.getloadavg(),
              "latency_s": args.latency, "concurrency_per_worker": args.concurrency, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
