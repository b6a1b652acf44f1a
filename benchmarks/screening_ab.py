"""Scan time of one file with the code of two checkouts, alternating, each scan in a fresh process (the
embedder loaded and warmed on a small file first, as in the throughput figures of benchmarks/screening.py).
For changes whose cost is smaller than how much a shared machine's speed moves between two runs.

    python benchmarks/screening_ab.py FILE --before OLD_CHECKOUT/src --after src [--rounds 2]

Prints one line per scan: which code, seconds, findings, 1-minute load average."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import os, sys, time
from tunesafe.screening import Scanner
scanner = Scanner()
scanner.scan(sys.argv[2])
started = time.perf_counter()
report = scanner.scan(sys.argv[1])
print(round(time.perf_counter() - started, 1), len(report.findings), round(os.getloadavg()[0], 2))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="the src folder of the code before")
    parser.add_argument("--after", type=Path, required=True, help="the src folder of the code after")
    parser.add_argument("--warm-up", type=Path, help="a small file scanned first (default: FILE itself)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for path in (args.file, args.warm_up):
        if path is not None and not path.is_file():
            parser.error(f"{path}: no such file")  # one line, exit 2
    for src in (args.before, args.after):
        if not (src / "tunesafe").is_dir():
            parser.error(f"{src}: not a src folder holding tunesafe (fix: give CHECKOUT/src)")
    warm = args.warm_up or args.file
    for _ in range(args.rounds):
        for label, src in (("before", args.before), ("after", args.after)):
            env = {**os.environ, "PYTHONPATH": str(src.resolve())}
            done = subprocess.run([sys.executable, "-c", PROBE, str(args.file), str(warm)], env=env,
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:  # the scan's own error (e.g. a malformed line), not ours
                sys.exit(f"{label}: the scan failed: {done.stderr.strip().splitlines()[-1:]}")
            print(label, done.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
