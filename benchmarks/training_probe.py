"""What the SafetyCallback's probes cost during a LoRA fine-tune on CPU.

Trains a LoRA (r=8 on q/k/v/o, batch 1) on the project's identity-shifting demo data with a real
transformers Trainer and the callback (probes of 40 items, 32 new tokens, judged by the local `default`
judge). Reports the start probe (a fixed cost, once per run), the probes during training, the record's
probe share (docs/training.md, "Probe share": every probe of the run over its wall time; the judge is
loaded before the run and its load reported apart) and the probes' share of the training time itself
(the run's time less all probe time), for the callback's default
`probe_every="auto"` (or a fixed step interval with --probe-every N). --plain-steps N also times N steps
without the callback, to check that the callback costs nothing beyond its probes. The probe rises only
warn (the policy's defaults otherwise), so the run trains its planned steps. --max-batch N
generates the probe's prompts in batches of at most N (the callback's default takes the default 40 in
one); `start_outcomes_sha256` hashes the start probe's verdict per item, to compare settings.

    python benchmarks/training_probe.py [--base embedded:smollm2-135m] [--steps 40] [--probe-every N]
                                        [--plain-steps N] [--max-batch N] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesafe.policy.model import TrainingActions, TrainingPolicy
from tunesafe.training import SafetyCallback
from tunesafe.training.lora_sft import load_base, read_training_data
from tunesafe.training.probes import MAX_BATCH
from tunesafe.types import canonical_json

# The probe rises warn instead of stopping: a cost measurement needs the run to reach its planned steps.
WATCH_ONLY = TrainingPolicy(actions=TrainingActions(probe_asr="warn", probe_over_refusal="warn"))
DATA = Path(__file__).resolve().parents[1] / "src/tunesafe/training/data/aoa_identity_shift.jsonl"


def build_trainer(base: str, steps: int, out: Path, callbacks: list[Any]) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    torch.manual_seed(0)
    model, tokenizer = load_base(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    encode = tokenizer.apply_chat_template
    rows = [{"input_ids": encode(messages, tokenize=True, return_dict=True)["input_ids"]}
            for messages in read_training_data(DATA)]
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=1,
                             learning_rate=1e-4, report_to=[], save_strategy="no", use_cpu=True,
                             disable_tqdm=True, logging_steps=10, seed=0)
    return Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                   data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=callbacks)


def timed_train(trainer: Any) -> float:
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embedded:smollm2-135m")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--plain-steps", type=int, default=0)
    parser.add_argument("--probe-every", default="auto")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    probe_every: Any = args.probe_every if args.probe_every == "auto" else int(args.probe_every)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        plain = timed_train(build_trainer(args.base, args.plain_steps, Path(tmp) / "plain", [])) \
            if args.plain_steps else None
        callback = SafetyCallback(policy=WATCH_ONLY, probe_every=probe_every, max_new_tokens=32,
                                  max_batch=args.max_batch)
        watched = timed_train(build_trainer(args.base, args.steps, Path(tmp) / "watched", [callback]))
    record = callback.record
    assert record is not None
    probes = record["probes"]
    start, later = probes[0], probes[1:]
    later_seconds = sum(p["seconds"] for p in later)
    training = watched - start["seconds"] - later_seconds
    result = {
        "base": args.base, "steps": args.steps, "probe_every": probe_every, "max_batch": args.max_batch,
        "probe_items": len(start["outcomes"]),
        "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0],
        "with_callback_seconds": round(watched, 2), "training_seconds": round(training, 2),
        "steps_trained": record["steps"], "status": record["status"],
        "step_seconds": round(training / max(record["steps"], 1), 3),
        "plain_step_seconds": round(plain / args.plain_steps, 3) if plain else None,
        "start_probe_seconds": round(start["seconds"], 2),
        "start_outcomes_sha256": hashlib.sha256(canonical_json(start["outcomes"]).encode()).hexdigest(),
        "judge_load_seconds": record["timing"]["judge_load_seconds"],
        "probe_share": record["timing"]["probe_share"],  # what the budget governs
        "probes_during_training": [(p["step"], round(p["seconds"], 2)) for p in later],
        "during_training_share": round(later_seconds / training, 4),
        "all_probes_share": round((start["seconds"] + later_seconds) / training, 4),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
