"""Throughput of `tunesafe monitor ingest` with the default judge: records per second on a generated log
of distinct shop-support requests (monitor_examples.generated_log: ~80% everyday questions answered, 12%
harmful requests refused, 5% library jailbreaks refused, 2% blocked, 1% failed calls), into a fresh
SQLite store, every record judged (unless --sample says otherwise). The models are loaded before the
clock starts (a long-running ingest loads them once); the load time is reported on its own, and so are
the seconds per stage (detectors, judge, request classifier) and the process's CPU seconds.

    python benchmarks/monitor.py [--records 20000] [--sample 1] [--json OUT] [--profile]
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
from tunesafe.production.monitor_examples import generated_log
from tunesafe.production.monitor_formats import Parsed, parse_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sample", type=float, default=1.0, help="--sample of the ingest (1: judge all)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "traffic.jsonl"
        log.write_text("\n".join(generated_log(args.records)) + "\n", encoding="utf-8")
        start = time.perf_counter()
        # the judge's classifier and the embedders load once per process: warm them on other traffic
        parsed = [parse_line(line, n) for n, line in enumerate(generated_log(50, seed=1), 1)]
        assessor = Assessor(sample=args.sample)
        assessor.assess([r for p in parsed if isinstance(p, Parsed) for r in p.records])
        assessor.seconds.clear()
        assessor.classified = 0
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
        "records": summary.records, "sample": args.sample, "new": summary.new, "seconds": round(elapsed, 2),
        "records_per_s": round(summary.records / elapsed, 1), "model_load_s": round(load_s, 2),
        # CPU seconds of this process (all threads): on a shared machine, records per CPU-second times the
        # cores is what an otherwise idle machine of that size would approach
        "cpu_s": round(cpu, 2), "records_per_cpu_s": round(summary.records / cpu, 1),
        "stage_seconds": {k: round(v, 2) for k, v in sorted(assessor.seconds.items())},
        "requests_classified": assessor.classified,
        "counts": counts, "cpus": os.cpu_count(), "load_avg_1m": [round(x, 1) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
