"""What the SafetyCallback's probes cost during a LoRA fine-tune on CPU.

Trains the same LoRA (r=8 on q/k/v/o) on the project's identity-shifting demo data twice with a real
transformers Trainer: once without the callback (the step time) and once with it (probes of 40 items,
32 new tokens, judged by the local `default` judge). Reports the start probe (a fixed cost, once per
run), the probes during training and their share of the training time, for the callback's default
`probe_every="auto"` (or a fixed step interval with --probe-every N).

    python benchmarks/training_probe.py [--base embedded:smollm2-135m] [--steps 60] [--probe-every N]
                                        [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesafe.training import SafetyCallback
from tunesafe.training.lora_sft import load_base, read_chat_jsonl

DATA = Path(__file__).resolve().parents[1] / "src/tunesafe/training/data/aoa_identity_shift.jsonl"


def build_trainer(base: str, steps: int, out: Path, callbacks: list[Any]) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    torch.manual_seed(0)
    model, tokenizer = load_base(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                  "o_proj"], task_type="CAUSAL_LM"))
    rows = [{"input_ids": tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]}
            for messages in read_chat_jsonl(DATA)]
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=2,
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
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--probe-every", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    probe_every: Any = args.probe_every if args.probe_every == "auto" else int(args.probe_every)

    with tempfile.TemporaryDirectory() as tmp:
        plain = timed_train(build_trainer(args.base, args.steps, Path(tmp) / "plain", []))
        callback = SafetyCallback(probe_every=probe_every, max_new_tokens=32)
        watched = timed_train(build_trainer(args.base, args.steps, Path(tmp) / "watched", [callback]))
    record = callback.record
    assert record is not None
    probes = record["probes"]
    start, later = probes[0], probes[1:]
    later_seconds = sum(p["seconds"] for p in later)
    result = {
        "base": args.base, "steps": args.steps, "probe_every": probe_every, "probe_items": len(start["outcomes"]),
        "cpu_threads": os.cpu_count(), "load_before": os.getloadavg()[0],
        "plain_train_seconds": round(plain, 2), "step_seconds": round(plain / args.steps, 3),
        "with_callback_seconds": round(watched, 2),
        "start_probe_seconds": round(start["seconds"], 2),
        "probes_during_training": [(p["step"], round(p["seconds"], 2)) for p in later],
        # the share the budget governs: probes after the start against the training time itself
        "during_training_share": round(later_seconds / plain, 4),
        "total_overhead_share": round((watched - plain) / plain, 4),
        "record_probe_share": record["timing"]["probe_share"],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
