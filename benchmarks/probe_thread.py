"""What it costs to run a SafetyCallback probe's model batches on a thread other than the training's.

The demo's 16-item probe on `embedded:qwen2.5-coder-0.5b+aoa-demo` (32 new tokens, `refusal` judge), after
the main thread has run fp32 products as training steps do (so it has its OpenMP team), two ways in
alternating order: the blocking calls on the calling thread (`run_coroutine`, what the callback does) and
on an asyncio executor thread (a plain `asyncio.run`, what it did before). torch is imported before
tunesafe, so libgomp keeps its default wait policy, as in a script that imports transformers first; with
OMP_WAIT_POLICY=PASSIVE in the environment nothing spins and the two take about the same time.

    python benchmarks/probe_thread.py [--rounds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import torch  # before tunesafe: `import tunesafe` would set its own spin count before torch loads

from tunesafe.judges import get_judge
from tunesafe.training.live_model import generation_mode
from tunesafe.training.lora_sft import load_base
from tunesafe.training.mitigation_demo import DEMO_PROBE
from tunesafe.training.probes import _execute, run_coroutine, select_probe_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embedded:qwen2.5-coder-0.5b+aoa-demo")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model, tokenizer = load_base(args.base, allow_adapter=True)
    probe_set = select_probe_set("default", **DEMO_PROBE)
    judge = get_judge("refusal")
    x = torch.randn(2048, 2048)
    for _ in range(3):
        x @ x  # the training thread's OpenMP team, as after training steps
    ways = {
        "calling_thread": lambda coro: run_coroutine(coro),
        "executor_thread": lambda coro: asyncio.run(coro),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for name in (list(ways) if round_ % 2 == 0 else list(reversed(ways))):
            started = time.perf_counter()
            with generation_mode(model, tokenizer):
                ways[name](_execute(model, tokenizer, probe_set, judge, 32, 16))
            seconds[name].append(round(time.perf_counter() - started, 2))
    # the environment the process started with (libgomp read it when torch loaded; tunesafe sets its own
    # default in os.environ later)
    started_with = dict(item.split("=", 1) for item in
                        Path("/proc/self/environ").read_text().split("\0") if "=" in item)
    result = {"base": args.base, "omp_wait_policy": started_with.get("OMP_WAIT_POLICY"),
              "gomp_spincount": started_with.get("GOMP_SPINCOUNT"),
              "load_before": load_before, "load_after": os.getloadavg()[0], "seconds": seconds}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
