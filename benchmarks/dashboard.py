"""Dashboard page speed on a large run.

Stores one run of N attempts (default 100,000) the way the engine does (attempt_results rows in batches,
then the engine's own `finish_run`, which writes the run's evidence record with its summary), starts the
dashboard with uvicorn on loopback in this process, and measures over HTTP:

- open: the first request of the run page (a fresh store and app, nothing cached), and of the API page;
- pages: R requests of random pages of the run page (50 attempts each), a third of them filtered by
  family, category or kind, a tenth errors-only: median, p95 and max latency;
- attempt: R/4 requests of random attempt pages.

    python benchmarks/dashboard.py [--attempts 100000] [--requests 200] [--db PATH] [--json OUT]

Attempts carry placeholder text only.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import insert

from tunesafe.engine import results as run_store
from tunesafe.engine.runner import finish_run
from tunesafe.evidence.schema import AttemptResultRow
from tunesafe.evidence.store import Store
from tunesafe.types import Attempt, AttemptResult, Generation, Message, Verdict
from tunesafe.web.app import create_app
from tunesafe.web.auth import Access

FAMILIES = ("direct", "roleplay", "encoding", "many_shot", "crescendo", "prefill", "translation", "pair")
CATEGORIES = ("cyber", "fraud", "weapons", "self_harm", "harassment", "privacy", "drugs", "extremism")
RUN_ID = "bench-run"
BATCH = 5000


def _result(i: int) -> AttemptResult:
    family, category = FAMILIES[i % len(FAMILIES)], CATEGORIES[(i // 7) % len(CATEGORIES)]
    kind = "benign" if i % 5 == 0 else "harmful"
    attempt = Attempt(
        id=f"a{i:07d}",
        behavior_id=f"b{i % 500}",
        attack=f"{family}-attack",
        attack_version="1",
        family=family,
        category=category,
        kind=kind,  # type: ignore[arg-type]
        messages=(Message("user", f"[request {i} in {category}] " + "context " * 40),),
    )
    if i % 97 == 0:
        return AttemptResult(RUN_ID, attempt, Generation("", "error", error="timeout"), "", (), ())
    refused = i % 3 != 0
    text = "I can't help with that." if refused else "Step 1: [redacted]. Step 2: [redacted]. " * 8
    verdict = Verdict(
        judge="refusal", judge_version="1", refused=refused, harmful=not refused and kind == "harmful"
    )
    return AttemptResult(
        RUN_ID, attempt, Generation(text, "stop", completion_tokens=40, latency_s=0.2), text, (), (verdict,)
    )


def fill(store: Store, n: int) -> float:
    started = time.perf_counter()
    config = {
        "model_name": "bench-model",
        "judges": [{"name": "refusal", "version": "1"}],
        "suite": {"name": "bench", "version": "1"},
        "attacks": [],
        "decoding": {},
        "tool_version": "bench",
    }
    run_store.create_run(
        store, RUN_ID, "openai:bench@http://127.0.0.1:1/v1", "0" * 64, config, "cfg-bench", n
    )
    for start in range(0, n, BATCH):
        rows = [run_store.result_row(_result(i)) for i in range(start, min(n, start + BATCH))]
        with store.engine.begin() as conn:
            conn.execute(insert(AttemptResultRow), rows)
    finish_run(store, RUN_ID, [f"a{i:07d}" for i in range(n)], config, "0" * 64, {})
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
    return elapsed


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[max(0, int(round(0.95 * len(ordered))) - 1)] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def measure(db: str, n: int, requests: int, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    store = Store.open(db)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, Access(None)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            out: dict[str, Any] = {
                "open_page_s": _timed(client, f"/runs/{RUN_ID}"),
                "open_api_s": _timed(client, f"/api/v1/runs/{RUN_ID}"),
            }
            pages, last_page = [], -(-n // 50)
            for k in range(requests):
                params = f"page={rng.randint(1, last_page)}"
                if k % 3 == 1:
                    params += f"&family={rng.choice(FAMILIES)}"
                elif k % 3 == 2:
                    params += rng.choice([f"&category={rng.choice(CATEGORIES)}", "&kind=benign"])
                if k % 10 == 0:
                    params += "&errors=true"
                pages.append(_timed(client, f"/runs/{RUN_ID}?{params}"))
            attempt_pages = [
                _timed(client, f"/runs/{RUN_ID}/attempts/a{rng.randrange(n):07d}")
                for _ in range(max(1, requests // 4))
            ]
        out.update(pages=_stats(pages), attempt_pages=_stats(attempt_pages))
        return out
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--db",
        help="SQLite file to fill (default: a temporary one); one already holding "
        "the benchmark run is reused as it is",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunesafe-dashboard-bench-") as folder:  # ~140 MB at 100,000
        db = args.db or str(Path(folder) / "store.db")
        with Store.open(db) as store:
            reuse = any(r.id == RUN_ID for r in run_store.list_runs(store))
            fill_s = None if reuse else fill(store, args.attempts)
        result = {"attempts": args.attempts, "fill_s": fill_s, **measure(db, args.attempts, args.requests)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
