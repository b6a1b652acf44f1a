"""How libgomp's wait policy moves LoRA training steps and a probe, idle and beside other busy processes.

Each setting runs in a fresh process (libgomp reads its environment once, when torch loads): LoRA r=8 on
q/k/v/o of the embedded Qwen2.5-Coder-0.5B (fp32), `--steps` optimizer steps on the AOA demo rows
(batch 1, as the mitigation demo trains), then the demo's 16-item probe (32 new tokens, the probe's own
decoder). `--busy N` starts N processes that spin on the CPU for the whole measurement, as other jobs on
a shared machine do. Settings: PASSIVE (no spinning; tunesafe's default), GOMP_SPINCOUNT=K (spin K
rounds, then sleep), and libgomp's default (300,000 rounds, or 100 once a process has more threads than
CPUs).

    python benchmarks/omp_wait.py [--steps 12] [--busy 0,2] [--settings passive,10000,default] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def environment(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if setting == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif setting == "default":
        env["OMP_WAIT_POLICY"] = "unset"  # a value libgomp ignores, so tunesafe's default does not apply
    else:
        env["GOMP_SPINCOUNT"] = str(int(setting))
        env["OMP_WAIT_POLICY"] = "unset"
    return env


def measure(steps: int) -> dict[str, Any]:
    """One setting, in this process."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesafe.judges import get_judge
    from tunesafe.training.live_model import generation_mode
    from tunesafe.training.lora_sft import load_base
    from tunesafe.training.mitigation_demo import DATA, DEMO_PROBE
    from tunesafe.training.probes import _execute, run_coroutine, select_probe_set

    model, tokenizer = load_base("embedded:qwen2.5-coder-0.5b")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    rows = [json.loads(line)["messages"] for line in Path(DATA).read_text().splitlines() if line.strip()]
    batches = [tokenizer.apply_chat_template(r, return_tensors="pt", return_dict=True)["input_ids"]
               for r in rows]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    step_seconds = []
    for step in range(steps):
        ids = batches[step % len(batches)]
        started = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_seconds.append(time.perf_counter() - started)
    judge = get_judge("refusal")
    probe_set = select_probe_set("default", **DEMO_PROBE)
    started = time.perf_counter()
    with generation_mode(model, tokenizer):
        run_coroutine(_execute(model, tokenizer, probe_set, judge, 32, 16))
    probe = time.perf_counter() - started
    return {"step_seconds_median": round(statistics.median(step_seconds[2:]), 3),
            "steps_timed": len(step_seconds) - 2, "probe_seconds": round(probe, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--busy", default="0,2", help="numbers of busy processes beside it, comma-separated")
    parser.add_argument("--settings", default="passive,10000,default")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: measure here
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.steps)))
        return
    results = []
    for busy in (int(n) for n in args.busy.split(",")):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            for setting in args.settings.split(","):
                load_before = os.getloadavg()[0]
                out = subprocess.run([sys.executable, __file__, "--one", "--steps", str(args.steps)],
                                     env=environment(setting), capture_output=True, text=True, check=True)
                row = {"busy": busy, "setting": setting, "load_before": round(load_before, 2),
                       **json.loads(out.stdout.strip().splitlines()[-1])}
                print(json.dumps(row), flush=True)
                results.append(row)
        finally:
            for spinner in spinners:
                spinner.kill()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
