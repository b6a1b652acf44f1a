"""Evidence store benchmark: append throughput and `verify` time on a SQLite file.

    python benchmarks/store.py [--records 100000] [--single 2000] [--repeat 3] [--db PATH]

Prints records/s for single appends (one transaction each, what `store.append` does), records/s for
batched appends (`store.append_many`, 1000 per transaction), and the median time of `store.verify()` and of
the `tunesafe verify` command over --records records. Target: verify 100k records in under 5 s. The CPU
time of verify is printed too: on a shared machine wall time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tunesafe.evidence.store import Store

BODY = {"model_name": "support-ft", "verdict": "pass", "metrics": {"asr": 0.12, "refusal": 0.81},
        "reasons": ["asr within tolerance", "no family regressed"], "run_id": "r" * 24}
BATCH = 1000


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2000, help="records appended one per transaction")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: a temporary one)")
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    db = args.db or Path(folder.name) / "bench.db"

    with Store.open(str(db)) as store:
        single = timed(lambda: [store.append("gate_decision", {**BODY, "i": i}) for i in range(args.single)])
        rest = args.records - args.single
        batches = [[("gate_decision", {**BODY, "i": i}, "support-ft") for i in range(s, min(s + BATCH, rest))]
                   for s in range(0, rest, BATCH)]
        batched = timed(lambda: [store.append_many(batch) for batch in batches])
        results = []
        cpu_start = time.process_time()
        verify_times = [timed(lambda: results.append(store.verify())) for _ in range(args.repeat)]
        verify_cpu = (time.process_time() - cpu_start) / args.repeat
    assert all(r.ok and r.checked == args.records for r in results), results[-1]
    command = [sys.executable, "-m", "tunesafe.cli.app", "--db", str(db), "verify"]
    cli_times = [timed(lambda: subprocess.run(command, check=True, capture_output=True))
                 for _ in range(args.repeat)]

    print(f"records: {args.records} (SQLite file {db.stat().st_size / 1e6:.1f} MB)")
    print(f"append, one transaction each: {args.single / single:,.0f} records/s ({args.single} records)")
    print(f"append_many, {BATCH} per transaction: {rest / batched:,.0f} records/s ({rest} records)")
    print(f"store.verify(): median {statistics.median(verify_times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in verify_times)}; CPU {verify_cpu:.2f} s per run)")
    print(f"`tunesafe verify` command: median {statistics.median(cli_times):.2f} s (process start included)")
    folder.cleanup()


if __name__ == "__main__":
    main()
