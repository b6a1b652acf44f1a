"""Throughput of `tunesafe monitor ingest` with the default judge: records per second on a generated log
of distinct shop-support requests (monitor_examples.generated_log: ~80% everyday questions answered, 12%
harmful requests refused, 5% library jailbreaks refused, 2% blocked, 1% failed calls), into a fresh
SQLite store, every record judged (unless --sample says otherwise). The models are loaded before the
clock starts (a long-running ingest loads them once); the load time is reported on its own, and so are
the seconds per stage (detectors, judge, request classifier) and the process's CPU seconds.

`--traffic benign-corpus` replays instead the held-out benign corpus (benchmarks/data/benign_corpus: 300+
conversations over 10+ domains, many security-adjacent everyday questions) with a ticket number appended so
no request repeats: the hard case for the request triage, which clears fewer of those.

    python benchmarks/monitor.py [--records 20000] [--traffic shop|benign-corpus] [--sample 1] [--no-triage]
                                 [--json OUT] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.production.monitor import ingest
from tunesafe.production.monitor_assess import Assessor
from tunesafe.production.monitor_examples import generated_log, openai_line
from tunesafe.production.monitor_formats import Parsed, parse_line
from tunesafe.screening.request_kind import request_kinds

CORPUS = Path(__file__).parent / "data" / "benign_corpus" / "conversations.jsonl"


def corpus_log(n: int) -> list[str]:
    """`n` lines cycling through the benign corpus: the conversation up to its last answer is the request,
    that answer the response; each request made distinct by a ticket number."""
    conversations = [json.loads(line)["messages"] for line in CORPUS.read_text(encoding="utf-8").splitlines()
                     if line.strip()]
    lines = []
    for number in range(n):
        messages = [dict(m) for m in conversations[number % len(conversations)]]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        ask = max(i for i, m in enumerate(messages[:last]) if m["role"] == "user")
        messages[ask]["content"] += f" (ticket {number:06d})"
        asked = [m for m in messages[:last] if m["role"] != "system"]
        line = openai_line(number, asked, messages[last]["content"])
        lines.append(json.dumps(line, ensure_ascii=False))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sample", type=float, default=1.0, help="--sample of the ingest (1: judge all)")
    parser.add_argument("--traffic", choices=("shop", "benign-corpus"), default="shop")
    parser.add_argument("--no-triage", action="store_true", help="embed every answered request (no triage)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "traffic.jsonl"
        traffic = generated_log(args.records) if args.traffic == "shop" else corpus_log(args.records)
        log.write_text("\n".join(traffic) + "\n", encoding="utf-8")
        start = time.perf_counter()
        # the judge's classifier and the embedders load once per process: warm them on other traffic
        parsed = [parse_line(line, n) for n, line in enumerate(generated_log(50, seed=1), 1)]
        assessor = Assessor(sample=args.sample, triage=not args.no_triage)
        assessor.assess([r for p in parsed if isinstance(p, Parsed) for r in p.records])
        request_kinds(["Where can I change the delivery address of an order?"])  # triage may clear all above
        assessor.seconds.clear()
        assessor.classified = assessor.cleared = 0
        load_s = time.perf_counter() - start
        with Store.open(str(Path(tmp) / "store.db")) as store:
            add_model(store, ModelSpec(name="support-bot", ref="openai:support-bot@http://127.0.0.1:9/v1"))
            profiler = cProfile.Profile() if args.profile else None
            start, cpu_start = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            summary = ingest(store, log, model="support-bot", assessor=assessor)
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            counts = dict(summary.counts)
    result: dict[str, Any] = {
        "traffic": args.traffic, "records": summary.records, "sample": args.sample, "new": summary.new,
        "seconds": round(elapsed, 2),
        "records_per_s": round(summary.records / elapsed, 1), "model_load_s": round(load_s, 2),
        # CPU seconds of this process (all threads): on a shared machine, records per CPU-second times the
        # cores is what an otherwise idle machine of that size would approach
        "cpu_s": round(cpu, 2), "records_per_cpu_s": round(summary.records / cpu, 1),
        "stage_seconds": {k: round(v, 2) for k, v in sorted(assessor.seconds.items())},
        "triage": not args.no_triage, "requests_cleared_by_triage": assessor.cleared,
        "requests_classified": assessor.classified,
        "counts": counts, "cpus": os.cpu_count(), "load_avg_1m": [round(x, 1) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
