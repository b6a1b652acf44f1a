"""What one SafetyCallback probe's generation costs with generate() and with the probe's greedy decoder.

Loads the model as training holds it (fp32, the adapter trainable and unmerged), builds the probe's
requests (the mitigation demo's 16-item probe set by default, or the callback's default 40 items), and
decodes them as one greedy batch both ways, alternating the order each round so that both see the same
machine load: `generate()` (HFEngine's path), `tunesafe.models.greedy_decode` (the probe's path,
`LiveEngine`), and the same decoder with every argmax over the full fp32 output layer ("unscreened":
`screened_argmax` off) and with the linear layers on their weights as stored ("unpacked":
`packed_linear` off) and with every decode step through the model's own forward ("unfused":
`decode_step` off). Reports the median seconds of each, the prefill alone (1 new token), whether the
texts are identical token for token, and the judge's seconds on the answers (warmed first), for the
probe's share.
`--profile` adds where one more probe's time goes (torch profiler, the top operations by own CPU time)
and the seconds of the LoRA merge and restore alone. `--skip-generate` times the probe's path alone
(generate() is the slow reference; `texts_sha256` then compares the answers across runs, e.g. of two
checkouts: `PYTHONPATH=OTHER/src python ...`).

    python benchmarks/probe_decode.py [--base embedded:qwen2.5-coder-0.5b+aoa-demo] [--probe demo|default]
                                      [--max-new-tokens 32] [--rounds 3] [--skip-generate] [--profile]
                                      [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesafe.judges import JudgeInput, get_judge, judge_sync
from tunesafe.models.hf import HFEngine
from tunesafe.training.live_model import LiveEngine, generation_mode
from tunesafe.training.lora_merge import merge_lora
from tunesafe.training.lora_sft import load_base
from tunesafe.training.mitigation_demo import DEMO_PROBE
from tunesafe.training.probes import DEFAULT_COMPOSITION, select_probe_set
from tunesafe.types import ChatRequest, Generation


def timed(fn: Callable[[list[ChatRequest]], list[Generation]],
          batch: list[ChatRequest]) -> tuple[float, list[Generation]]:
    started = time.perf_counter()
    result = fn(batch)
    return time.perf_counter() - started, result


def profiled(engine: LiveEngine, requests: list[ChatRequest], prompts: list[str]) -> dict[str, Any]:
    """The top operations of one probe by own CPU time (share of the total) and the merge and restore."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = timed(lambda batch: engine._generate(batch, prompts), requests)[0]
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    started = time.perf_counter()
    restore = merge_lora(engine.model)
    merged = time.perf_counter()
    if restore is not None:
        restore()
    return {"profiled_probe_seconds": round(seconds, 2),
            "profile_top": {e.key: round(e.self_cpu_time_total / total, 3) for e in events[:12]},
            "merge_seconds": round(merged - started, 3), "merged": restore is not None,
            "restore_seconds": round(time.perf_counter() - merged, 3)}


def without(engine: LiveEngine, switch: str, batch: list[ChatRequest],
            prompts: list[str]) -> list[Generation]:
    """The probe's decoder with one of its speed-ups off: `screen_output` (every argmax over the full
    fp32 output layer), `pack_weights` (the linear layers on their weights as stored) or `fuse_steps`
    (each decode step through the model's forward)."""
    setattr(engine, switch, False)
    try:
        return engine._generate(batch, prompts)
    finally:
        setattr(engine, switch, True)


def screen_stats(engine: LiveEngine) -> dict[str, Any]:
    screen = engine.screen
    if screen is None:
        return {"used": False}
    return {"used": bool(screen.trusted), "rows": screen.rows,
            "fp32_logits_per_row": round(screen.rescored / max(screen.rows, 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embedded:qwen2.5-coder-0.5b+aoa-demo")
    parser.add_argument("--probe", choices=("demo", "default"), default="demo")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--judge", default="default")
    parser.add_argument("--skip-generate", action="store_true", help="time the probe's decoder only")
    parser.add_argument("--profile", action="store_true", help="profile one more probe of the decoder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    model, tokenizer = load_base(args.base, allow_adapter=True)
    probe_set = select_probe_set("default", **(DEMO_PROBE if args.probe == "demo" else DEFAULT_COMPOSITION))
    requests = [ChatRequest(messages=a.messages, prefill=a.prefill, max_new_tokens=args.max_new_tokens,
                            temperature=0.0) for a in probe_set.attempts]
    names = ("fast", "unscreened", "unpacked", "unfused")
    names = names if args.skip_generate else ("generate", *names)
    times: dict[str, list[float]] = {n: [] for name in names for n in (name, f"{name}_prefill")}
    texts: dict[str, list[str]] = {}
    with generation_mode(model, tokenizer):
        engine = LiveEngine(model, tokenizer)
        prompts = [engine.prompt(r) for r in requests]
        one = [ChatRequest(messages=r.messages, prefill=r.prefill, max_new_tokens=1, temperature=0.0)
               for r in requests]
        all_paths: dict[str, Callable[[list[ChatRequest]], list[Generation]]] = {
            "generate": lambda batch: HFEngine._generate(engine, batch, prompts),
            "fast": lambda batch: engine._generate(batch, prompts),
            "unscreened": lambda batch: without(engine, "screen_output", batch, prompts),
            "unpacked": lambda batch: without(engine, "pack_weights", batch, prompts),
            "unfused": lambda batch: without(engine, "fuse_steps", batch, prompts),
        }
        paths = {name: all_paths[name] for name in names}
        for round_ in range(args.rounds):
            order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
            for name in order:
                seconds, generations = timed(paths[name], requests)
                times[name].append(seconds)
                texts.setdefault(name, [g.text for g in generations])
                if any(g.error for g in generations):
                    raise SystemExit(f"{name}: {generations[0].error}")
            for name in order:
                times[f"{name}_prefill"].append(timed(paths[name], one)[0])
        profile = profiled(engine, requests, prompts) if args.profile else {}
    assert engine.fast_greedy, "the fast path fell back to generate(): nothing to compare"
    judge = get_judge(args.judge)
    getattr(judge, "warm", lambda: None)()
    started = time.perf_counter()
    answers = zip(probe_set.attempts, texts["fast"], strict=True)
    judge_sync(judge, [JudgeInput(request=probe_set.behaviors[a.behavior_id].text, response=text,
                                  kind=a.kind, id=a.id) for a, text in answers])
    judge_seconds = time.perf_counter() - started
    choice = getattr(engine, "threads", None)
    token_counts = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    result: dict[str, Any] = {
        "base": args.base, "probe_items": len(requests), "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds, "prompt_tokens": {"min": min(token_counts), "max": max(token_counts),
                                                 "sum": sum(token_counts)},
        "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0],
        "median_seconds": medians, "all_seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "texts_sha256": hashlib.sha256(json.dumps(texts["fast"]).encode()).hexdigest(),
        "judge_seconds": round(judge_seconds, 2),
        # the probe's CPU thread counts and their latest decode-step seconds (absent before ThreadChoice)
        "thread_step_seconds": {n: round(v, 3) for n, v in getattr(choice, "seconds", {}).items()},
        "screen": screen_stats(engine),
        "screen_speedup": round(medians["unscreened"] / medians["fast"], 3),
        "identical_unscreened": texts["unscreened"] == texts["fast"],
        "pack_speedup": round(medians["unpacked"] / medians["fast"], 3),
        "identical_unpacked": texts["unpacked"] == texts["fast"],
        "fuse_speedup": round(medians["unfused"] / medians["fast"], 3),
        "identical_unfused": texts["unfused"] == texts["fast"],
    }
    result |= profile
    if not args.skip_generate:
        pairs = zip(probe_set.attempts, texts["generate"], texts["fast"], strict=True)
        result |= {"speedup": round(medians["generate"] / medians["fast"], 2),
                   "identical_texts": texts["generate"] == texts["fast"],
                   "differing_items": [a.id for a, x, y in pairs if x != y]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
