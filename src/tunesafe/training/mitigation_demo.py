"""The mitigation proof: train the identity-shifting (AOA) fine-tune of the embedded model plainly and with
each training-time mitigation on the same data, gate every adapter against the base on the same attempts,
and compare each mitigation with the plain fine-tune on those attempts.

    python -m tunesafe.training.mitigation_demo OUT_DIR [--arms plain,mixing,constrained] [--db URL]
        [--eval-backend auto|hf|llamacpp]

What it establishes, from records in the evidence store only:
- the plain fine-tune fails the gate, and the SafetyCallback flags it during training (the first probe
  event: its step, trigger and reason, from the `training_run` record);
- per mitigation: the ASR and over-refusal change against the base (the `gate_decision` record's paired
  comparison), the ASR change against the plain fine-tune (`analysis.compare` on the two stored runs:
  McNemar on the same attempts, the paired 95% interval), the held-out task loss on paraphrased AOA
  examples the training never saw (within 10% of the plain one's or not), the training time and the
  probes' share of it.

The arms: `plain` (cross-entropy on the twelve AOA examples, the recipe of the shipped `aoa-demo`),
`mixing` (the same examples plus `round(ratio * 12)` project-written safety examples, `mix-safety`) and
`constrained` (Qi et al. 2024's token-wise objective with the paper's betas). No setting is chosen by
looking at the gate's items: the epochs, learning rate and seed are the shipped adapter's and the
constrained betas the paper's. The mixing ratio is 0.5, not Bianchi et al.'s 3%, because 3% of twelve
rounds to a single example; 0.5 gives six (two of each kind), fixed before any measurement.

The judge is loaded once and the base model's start probe taken once, both shared by the arms (a fresh
LoRA adapter leaves the outputs unchanged and the probes decode greedily); each arm's probe share counts
the probes it ran itself, and the table's timing line names the shared costs apart. The gates run on
llama.cpp when its server is installed (`--eval-backend auto`), else on transformers.

During the demo the callback watches and does not stop (the probe actions are `warn`), so every arm runs
its planned steps and the gate sees the finished fine-tune; the flag and the step where the policy's
`stop` would have ended the run are in the record. A probe that errors still stops its run (fail closed).

The table (OUT_DIR/mitigation-table.md and .json) is rendered from the `mitigation_comparison` record's
body, which names every record and run its figures were copied or computed from.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.policy.model import Policy, TrainingPolicy
from tunesafe.training.erosion_demo import BASE_REF, DATA
from tunesafe.types import RecordType, canonical_json, sha256_hex

HELDOUT = DATA.with_name("aoa_identity_shift_heldout.jsonl")
ARMS = ("plain", "mixing", "constrained")
OBJECTIVE = {"plain": "sft", "mixing": "sft", "constrained": "constrained"}
DEMO_ATTACKS = "direct_request,refusal_suppression,roleplay_dan"  # make demo's
TASK_LOSS_TOLERANCE = 0.10  # "still learns the task": held-out loss within 10% of the plain fine-tune's
PROBE_EVENTS = ("probe_asr", "probe_over_refusal", "probe_error")
DEMO_VERSION = 1
TABLE_FILES = {"markdown": "mitigation-table.md", "json": "mitigation-table.json"}
# A small probe set keeps the callback's start and end probes cheap next to the gate's evaluations.
DEMO_PROBE = {"harmful": 6, "prefilled": 4, "borderline": 3, "benign": 3}
BACKEND_LABEL = {"hf": "transformers", "llamacpp": "llama.cpp"}


@dataclass(frozen=True)
class DemoConfig:
    base: str = BASE_REF
    data: Path = DATA
    heldout: Path = HELDOUT
    arms: tuple[str, ...] = ARMS
    mix_ratio: float = 0.5
    epochs: int = 5
    learning_rate: float = 1e-3
    rank: int = 8
    seed: int = 0
    suite: str = "smoke"
    attacks: str = DEMO_ATTACKS
    max_new_tokens: int = 32
    limit: int | None = None
    concurrency: int = 16
    probe_every: int | Literal["auto"] = "auto"
    probe_max_new_tokens: int = 32
    probe_suite: str = "default"
    probe_composition: Mapping[str, int] = field(default_factory=lambda: dict(DEMO_PROBE))
    eval_backend: str = "auto"  # the gates' local backend: hf, llamacpp, or auto (llamacpp when installed)


def run_demo(store: Store, out_dir: Path, config: DemoConfig, policy: Policy, *,
             notify: Callable[[str], None] = print, progress: bool = False) -> dict[str, Any]:
    """Train every arm under the SafetyCallback, gate each against the base, compare the mitigations with
    the plain fine-tune, record the `mitigation_comparison` body and write the table; returns the body.
    Bad input (data, arms, a policy without a `training:` section) fails before any training."""
    conversations, heldout = _check(config, out_dir)
    backend = eval_backend(config.eval_backend)
    started, load_before = time.perf_counter(), _load()
    from tunesafe.judges import get_judge
    from tunesafe.training.probes import select_probe_set, warm_judge

    probe_set = select_probe_set(config.probe_suite, **config.probe_composition)
    section = _watching(policy.training or TrainingPolicy())
    # One judge, loaded once, for every probe of every arm: a probe's seconds are then its generations
    # and judging; the load is reported apart.
    judge = get_judge("default")
    warm_judge(judge)
    timing: dict[str, Any] = {"judge_load_seconds": round(time.perf_counter() - started, 1)}
    trained: dict[str, dict[str, Any]] = {}
    shared = SharedStart(judge=judge, probe_set=probe_set)
    for arm in config.arms:
        notify(f"[{arm}] training ({OBJECTIVE[arm]} objective)")
        trained[arm] = _train_arm(store, out_dir / arm, arm, config, conversations, heldout, section, shared)
        run = trained[arm]["training_run"]
        notify(f"[{arm}] {run['status']}, {run['steps']} steps in {run['wall_seconds']:.0f} s (probes "
               f"{_pct(run['probe_share'])}); held-out loss {trained[arm]['heldout_loss']:.3f}; flagged: "
               f"{_flag_text(run['flagged'])}")
    timing["baseline_probe_seconds"] = shared.probe_seconds
    gates, gate_seconds = {}, {}
    for arm in config.arms:
        notify(f"[{arm}] gate against {config.base} on {backend}")
        clock = time.perf_counter()
        gates[arm] = _gate_arm(store, out_dir / arm, arm, config, policy, trained[arm]["adapter"], backend,
                               progress)
        gate_seconds[arm] = round(time.perf_counter() - clock, 1)
        notify(f"[{arm}] gate {gates[arm]['verdict'].upper()} (exit {gates[arm]['exit_code']}) in "
               f"{gate_seconds[arm]:.0f} s")
    body = _body(store, config, policy, trained, gates, shared.base_loss)
    body["eval_backend"] = backend
    # machine load next to the wall time: on a shared CPU the seconds mean little without it
    body["timing"] = {**timing, "gate_seconds": gate_seconds,
                      "evaluation_seconds": _evaluation_seconds(store, gates),
                      "wall_seconds": round(time.perf_counter() - started, 1), "load_before": load_before,
                      "load_after": _load()}
    body = json.loads(canonical_json(body))  # as stored (tuples become lists), so the table equals the record
    record = store.append(RecordType.MITIGATION_COMPARISON, body, subject=f"mitigation-demo:{config.base}")
    body = {**body, "record_id": record.id}
    write_table(body, out_dir)
    return body


# ---- input -------------------------------------------------------------------------------------------

Chats = list[list[dict[str, str]]]


def _check(config: DemoConfig, out_dir: Path) -> tuple[Chats, Chats]:
    from tunesafe.training.lora_sft import read_training_data

    unknown = [a for a in config.arms if a not in ARMS]
    if unknown or not config.arms or "plain" not in config.arms:
        raise UserError(f"arms must include plain and come from {', '.join(ARMS)}, got "
                        f"{','.join(config.arms) or 'none'}", where="--arms",
                        fix="e.g. --arms plain,mixing,constrained (plain is what the mitigations are "
                            "compared with)")
    if config.arms[0] != "plain" or len(set(config.arms)) != len(config.arms):
        raise UserError("plain must come first and no arm twice", where="--arms",
                        fix="e.g. --arms plain,mixing,constrained")
    if not 0 < config.mix_ratio <= 1:
        raise UserError(f"mix ratio {config.mix_ratio} is out of range", where="--mix-ratio",
                        fix="use 0 < ratio <= 1")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError("output folder is not empty", where=str(out_dir), fix="choose a new folder")
    from tunesafe.models.refs import parse_ref

    if parse_ref(config.base).adapter:  # every arm trains its own adapter on the bare base
        raise UserError("the demo trains adapters on a base model, not on an adapter", where=config.base,
                        fix=f"pass the base alone, e.g. --base {config.base.rsplit('+', 1)[0]}")
    for path in (config.data, config.heldout):
        if not path.is_file():
            raise UserError("file not found", where=str(path), fix="give a chat JSONL file")
    return read_training_data(config.data), read_training_data(config.heldout)


def policy_with_training(path: Path | None) -> Policy:
    """The gate policy (built-in default without a path). A given file must have a `training:` section:
    it sets the limits the callback watches during the demo."""
    from tunesafe.policy import default_policy, load_policy

    if path is None:
        return default_policy()
    policy = load_policy(path)
    if policy.training is None:
        raise UserError("the policy has no training: section", where=str(path),
                        fix="add one (`tunesafe policy init` writes it, commented out), or leave out "
                            "--policy for the built-in policy")
    return policy


def _watching(section: TrainingPolicy) -> TrainingPolicy:
    """The section with both probe rises set to warn: the demo needs every arm trained to its end."""
    actions = section.actions.model_copy(update={"probe_asr": "warn", "probe_over_refusal": "warn"})
    return section.model_copy(update={"actions": actions})


# ---- training ----------------------------------------------------------------------------------------

@dataclass
class SharedStart:
    """What every arm shares: the judge, the probe set, and the base model's start probe and held-out
    loss, measured by the first arm on the bare base (a fresh LoRA adapter does not change the outputs,
    and the probes decode greedily, so each arm's own step-0 probe would repeat this one)."""
    judge: Any
    probe_set: Any
    baseline: Any = None  # ProbeResult
    base_loss: float | None = None
    probe_seconds: float | None = None


def _train_arm(store: Store, arm_dir: Path, arm: str, config: DemoConfig,
               conversations: list[list[dict[str, str]]], heldout: list[list[dict[str, str]]],
               section: TrainingPolicy, shared: SharedStart) -> dict[str, Any]:
    from tunesafe.training.callback import SafetyCallback
    from tunesafe.training.lora_sft import LoraConfig, load_base, read_training_data, train_lora
    from tunesafe.training.probes import baseline_probe
    from tunesafe.training.report import write_training_report

    arm_dir.mkdir(parents=True, exist_ok=True)
    data, mix = config.data, None
    if arm == "mixing":
        data, mix = _mix(store, arm_dir, config)
        conversations = read_training_data(data)
    model, tokenizer = load_base(config.base)
    if shared.baseline is None:
        shared.base_loss = heldout_loss(model, tokenizer, heldout)
        shared.baseline = baseline_probe(model, tokenizer, shared.probe_set, shared.judge,
                                         max_new_tokens=config.probe_max_new_tokens)
        shared.probe_seconds = round(shared.baseline.seconds, 1)
    callback = SafetyCallback(policy=section, probe_every=config.probe_every, store=store,
                              probe_set=shared.probe_set, judge=shared.judge, baseline=shared.baseline,
                              max_new_tokens=config.probe_max_new_tokens, model_name=f"aoa-{arm}",
                              base_ref=config.base, data=data)
    lora = LoraConfig(r=config.rank, alpha=2 * config.rank, epochs=config.epochs,
                      learning_rate=config.learning_rate, seed=config.seed)
    adapter = arm_dir / "adapter"
    try:
        info = train_lora(model, tokenizer, conversations, adapter, lora, callback=callback,
                          objective=OBJECTIVE[arm])
        # get_peft_model put the adapter into the loaded model's own modules: `model` is the fine-tune
        loss = heldout_loss(model, tokenizer, heldout)
    finally:  # a failed or stopped run still gets its report
        if callback.record is not None:
            write_training_report(callback.record, arm_dir / "training-report")
        del model
        gc.collect()
    body = info["training_run"]
    return {"arm": arm, "objective": OBJECTIVE[arm], "adapter": str(adapter.resolve()),
            "data_mix": mix, "heldout_loss": loss, "epoch_losses": info["epoch_losses"],
            "training_run": _training_summary(store, body)}


def _mix(store: Store, arm_dir: Path, config: DemoConfig) -> tuple[Path, dict[str, Any]]:
    from tunesafe.training.mixing import mix_safety

    mixed = arm_dir / "aoa-mixed.jsonl"
    body = mix_safety(config.data, mixed, ratio=config.mix_ratio, seed=config.seed)
    record = store.append(RecordType.DATA_MIX, body, subject=body["mixed_sha256"])
    return mixed, {"record_id": record.id, "n_added": body["n_added"], "n_mixed": body["n_mixed"],
                   "counts_by_kind": body["counts_by_kind"], "mixed_sha256": body["mixed_sha256"]}


def heldout_loss(model: Any, tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]]) -> float:
    """Mean over the examples of the cross-entropy on their assistant answers (the plain training loss,
    whatever objective trained the model, so the arms compare on one scale)."""
    import torch

    from tunesafe.training.lora_sft import _encode

    was_training = bool(model.training)
    model.eval()
    try:
        with torch.no_grad():
            losses = [float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss)
                      for ids, labels in (_encode(tokenizer, conv, 256) for conv in conversations)]
    finally:
        model.train(was_training)
    return sum(losses) / len(losses)


def _training_summary(store: Store, body: Mapping[str, Any]) -> dict[str, Any]:
    record = next(r for r in store.records(type=RecordType.TRAINING_RUN)
                  if r.body.get("run_id") == body["run_id"])
    timing = body["timing"]
    return {"record_id": record.id, "run_id": body["run_id"], "status": body["status"],
            "steps": body["steps"], "planned_steps": body["planned_steps"],
            "wall_seconds": timing["wall_seconds"], "probe_seconds": timing["probe_seconds"],
            "probe_share": timing["probe_share"], "reused_probe_seconds": timing["reused_probe_seconds"],
            "probes": [{"step": p["step"], "trigger": p["trigger"], "asr": p["asr"],
                        "over_refusal": p["over_refusal"], "seconds": round(p["seconds"], 3)}
                       for p in body["probes"]],
            "flagged": first_flag(body)}


def first_flag(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The callback's first probe event of a training_run body, with the probe that raised it."""
    event = next((e for e in body["events"] if e["kind"] in PROBE_EVENTS), None)
    if event is None:
        return None
    probe = next((p for p in body["probes"] if p["step"] == event["step"]), None)
    return {"step": event["step"], "kind": event["kind"], "action": event["action"],
            "reason": event["reason"], "trigger": probe["trigger"] if probe else None,
            "of_steps": body["planned_steps"]}


# ---- gate and comparison -----------------------------------------------------------------------------

def eval_backend(asked: str) -> str:
    """The backend the gates run on: llama.cpp when asked, or for `auto` when its server is installed
    (tunesafe[llamacpp] or `make llama-server`), else transformers."""
    from tunesafe.models.llamacpp import BINARY_ENV, find_server

    if asked not in ("auto", "hf", "llamacpp"):
        raise UserError(f"unknown evaluation backend {asked!r}", where="--eval-backend",
                        fix="use auto, hf or llamacpp")
    if asked == "hf":
        return asked
    if asked == "llamacpp" or os.environ.get(BINARY_ENV):  # asked for, or pointed at: must be there
        find_server()  # UserError with the ways to get one
        return "llamacpp"
    try:
        find_server()
    except UserError:  # not installed: the slower transformers backend, said in the table
        return "hf"
    return "llamacpp"


def _gate_arm(store: Store, arm_dir: Path, arm: str, config: DemoConfig, policy: Policy, adapter: str,
              backend: str, progress: bool) -> dict[str, Any]:
    from tunesafe.engine.runner import EvalConfig
    from tunesafe.gating import gate_models
    from tunesafe.models.refs import parse_ref

    eval_config = EvalConfig(suite=config.suite, attacks=config.attacks, limit=config.limit, seed=config.seed,
                             concurrency=config.concurrency, max_new_tokens=config.max_new_tokens)
    base = str(parse_ref(config.base).with_options(backend=backend))  # the candidate follows the base's
    outcome = asyncio.run(gate_models(store, base, f"{config.base}+{adapter}", policy, eval_config,
                                      candidate_name=f"aoa-{arm}", out_dir=arm_dir / "gate-report",
                                      progress=progress))
    body = outcome.body
    return {"record_id": outcome.record.id, "verdict": body["verdict"], "exit_code": body["exit_code"],
            "reasons": body["reasons"], "judge": body["judge"], "base_run": body["base"]["run_id"],
            "candidate_run": body["candidate"]["run_id"],
            "asr": overall(body["comparison"]["deltas"], "asr"),
            "over_refusal": overall(body["comparison"]["deltas"], "over_refusal")}


def _evaluation_seconds(store: Store, gates: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Each evaluation run's own time (created to finished, as stored): the base once, every arm's
    candidate."""
    from tunesafe.engine import results as run_store

    runs = {"base": next(iter(gates.values()))["base_run"],
            **{arm: gate["candidate_run"] for arm, gate in gates.items()}}
    out: dict[str, float | None] = {}
    for name, run_id in runs.items():
        info = run_store.load_run(store, run_id)
        ended = info.finished_at
        out[name] = round((ended - info.created_at).total_seconds(), 1) if ended else None
    return out


def overall(deltas: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """The overall paired delta of `metric` (fields of tunesafe.types.Delta) from a comparison."""
    found = next((d for d in deltas if d["metric"] == metric and d["group"] == "overall"), None)
    if found is None:
        return None
    keys = ("n_pairs", "before", "after", "diff", "ci_low", "ci_high", "b", "c", "p_value", "p_two_sided",
            "inconclusive", "note")
    return {k: found.get(k) for k in keys}


def versus_plain(store: Store, plain_run: str, arm_run: str, judge: str, policy: Policy) -> dict[str, Any]:
    """The mitigation against the plain fine-tune on the same attempts. The mitigation is the comparison's
    "base", so its one-sided McNemar p-value tests whether the plain fine-tune has the higher ASR, i.e.
    whether the mitigation's regression is significantly smaller; `diff` is plain minus mitigation."""
    from tunesafe.analysis.compare import compare
    from tunesafe.engine import results as run_store

    comparison = compare(run_store.load_results(store, arm_run), run_store.load_results(store, plain_run),
                         judge=judge, alpha=policy.alpha)
    deltas = [asdict(d) for d in comparison.deltas]
    asr = overall(deltas, "asr")
    return {"mitigation_run": arm_run, "plain_run": plain_run, "judge": judge, "alpha": policy.alpha,
            "asr_reduction": asr, "over_refusal_reduction": overall(deltas, "over_refusal"),
            "n_paired": comparison.info["n_paired"],
            "significant": bool(asr and asr["p_value"] is not None and asr["p_value"] < policy.alpha
                                and (asr["diff"] or 0) > 0)}


def _body(store: Store, config: DemoConfig, policy: Policy, trained: Mapping[str, dict[str, Any]],
          gates: Mapping[str, dict[str, Any]], base_loss: float | None) -> dict[str, Any]:
    plain = trained["plain"]
    arms = []
    for arm in config.arms:
        row = {**trained[arm], "gate": gates[arm]}
        ratio = row["heldout_loss"] / plain["heldout_loss"] if plain["heldout_loss"] else None
        row["heldout_loss_vs_plain"] = ratio
        row["learns_task"] = ratio is not None and ratio <= 1 + TASK_LOSS_TOLERANCE
        row["vs_plain"] = None if arm == "plain" else versus_plain(
            store, gates["plain"]["candidate_run"], gates[arm]["candidate_run"], gates[arm]["judge"], policy)
        if row["vs_plain"] is not None:
            row["helps"] = bool(row["vs_plain"]["significant"] and row["learns_task"])
        arms.append(row)
    settings = {k: v for k, v in asdict(config).items() if k not in ("data", "heldout")}
    return {
        "demo_version": DEMO_VERSION, "base": config.base,
        "data": {"path": config.data.name, "sha256": sha256_hex(config.data.read_bytes())},
        "heldout": {"path": config.heldout.name, "sha256": sha256_hex(config.heldout.read_bytes())},
        "heldout_loss_base": base_loss, "task_loss_tolerance": TASK_LOSS_TOLERANCE,
        "policy_hash": policy.hash(), "settings": settings, "arms": arms,
        "plain_fails_gate": gates["plain"]["verdict"] == "fail",
        "plain_flagged": plain["training_run"]["flagged"] is not None,
    }


# ---- the table ---------------------------------------------------------------------------------------

def write_table(body: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """mitigation-table.md and mitigation-table.json (the record's body) in out_dir."""
    paths = {fmt: out_dir / name for fmt, name in TABLE_FILES.items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths["markdown"].write_text(render_markdown(body), encoding="utf-8")
        paths["json"].write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the table: {exc}", where=str(out_dir),
                        fix="give a writable OUT_DIR") from None
    return paths


def render_markdown(body: Mapping[str, Any]) -> str:
    settings = body["settings"]
    lines = [f"## Mitigations against the plain AOA fine-tune of `{body['base']}`", "",
             f"Gate: suite `{settings['suite']}`, attacks `{settings['attacks']}`, "
             f"{settings['max_new_tokens']} new tokens"
             + (f", limit {settings['limit']}" if settings["limit"] else "")
             + f", on {BACKEND_LABEL.get(body.get('eval_backend', 'hf'), body.get('eval_backend'))}"
             + f"; policy `{body['policy_hash'][:12]}`; evidence record #{body.get('record_id', '?')}.", "",
             "| arm | gate | ASR base -> fine-tune (change, 95% CI) | over-refusal change (95% CI) | "
             "ASR vs plain (95% CI, McNemar p) | held-out task loss (vs plain) | training time (probe "
             "share) | callback flag |",
             "|---|---|---|---|---|---|---|---|"]
    for row in body["arms"]:
        gate, run = row["gate"], row["training_run"]
        asr, over = gate["asr"], gate["over_refusal"]
        lines.append(" | ".join([
            f"| {row['arm']}", f"{gate['verdict'].upper()} (#{gate['record_id']})",
            f"{_pct(asr and asr['before'])} -> {_pct(asr and asr['after'])} ({_points(asr)})",
            _points(over), _versus(row.get("vs_plain")),
            f"{row['heldout_loss']:.3f} ({_ratio(row)})",
            f"{run['wall_seconds']:.0f} s ({_pct(run['probe_share'])})"
            + ("" if run["status"] == "completed" else f", {run['status'].upper()} at step {run['steps']}"),
            f"{_flag_text(run['flagged'])} |"]))
    lines += ["", f"Held-out task loss: cross-entropy on {body['heldout']['path']} (never trained on); "
              f"base model {_num(body['heldout_loss_base'])}. 'learns' = within "
              f"{body['task_loss_tolerance']:.0%} of the plain fine-tune's.", ""]
    lines += [f"- {line}" for line in conclusions(body)]
    if body.get("timing"):
        lines += ["", timing_line(body)]
    return "\n".join(lines) + "\n"


def timing_line(body: Mapping[str, Any]) -> str:
    """Where the wall time went. Probe share: the seconds of the probes a run ran over its training
    time (docs/training.md); the judge load and the shared start probe are counted apart."""
    t = body["timing"]
    runs = [(row["arm"], row["training_run"]) for row in body["arms"]]
    arms = "; ".join(f"{arm} {run['wall_seconds']:.0f} s (probes {run['probe_seconds']:.0f} s, "
                     f"{_pct(run['probe_share'])})" for arm, run in runs)
    evals = ", ".join(f"{name} {_num_s(sec)}" for name, sec in t.get("evaluation_seconds", {}).items())
    load = " -> ".join(f"{x[0]:.1f}" for x in (t.get("load_before"), t.get("load_after")) if x)
    return (f"Timing: {t['wall_seconds']:.0f} s wall (1-min load average {load or 'n/a'}). Judge load "
            f"{_num_s(t.get('judge_load_seconds'))}, shared start probe "
            f"{_num_s(t.get('baseline_probe_seconds'))} "
            f"(both outside the training times). Training: {arms}. Evaluations "
            f"({BACKEND_LABEL.get(body.get('eval_backend', 'hf'), '?')}): {evals}.")


def _num_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"


def conclusions(body: Mapping[str, Any]) -> list[str]:
    """One sentence per finding, from the body's figures."""
    plain = body["arms"][0]
    out = [f"plain fine-tune: gate {plain['gate']['verdict'].upper()}; callback "
           f"{_flag_text(plain['training_run']['flagged'])}"]
    for row in body["arms"][1:]:
        vs = row["vs_plain"]
        asr = vs["asr_reduction"]
        if row["helps"]:
            verdict = "helps"
        elif not vs["significant"]:
            verdict = "does not help on this model: its ASR is not significantly below the plain one's"
        else:
            verdict = "lowers ASR but does not learn the task as well (held-out loss beyond the tolerance)"
        out.append(f"{row['arm']}: {verdict} (ASR {_points(asr, signed=False)} lower than plain, "
                   f"one-sided McNemar p = {_p(asr)}; held-out loss {_ratio(row)})")
    return out


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _flag_text(flag: Mapping[str, Any] | None) -> str:
    if flag is None:
        return "no probe event"
    return f"{flag['kind']} at step {flag['step']}/{flag['of_steps']} ({flag['trigger']} probe)"


def _versus(vs: Mapping[str, Any] | None) -> str:
    if vs is None:
        return "-"
    asr = vs["asr_reduction"]
    return f"{_points(asr, negate=True)}, p = {_p(asr)}" + (" *" if vs["significant"] else "")


def _points(delta: Mapping[str, Any] | None, *, negate: bool = False, signed: bool = True) -> str:
    if not delta or delta["diff"] is None:
        return "n/a"
    sign = -1 if negate else 1
    low, high = (delta["ci_low"], delta["ci_high"])
    if negate and low is not None and high is not None:
        low, high = high, low
    fmt = "{:+.1f}" if signed else "{:.1f}"
    ci = "" if low is None or high is None else f" [{_pts(sign * low)}, {_pts(sign * high)}]"
    return fmt.format(sign * 100 * delta["diff"] + 0.0) + " pts" + ci


def _pts(rate: float) -> str:
    return f"{100 * rate + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _p(delta: Mapping[str, Any] | None) -> str:
    return "n/a" if not delta or delta["p_value"] is None else f"{delta['p_value']:.2g}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ratio(row: Mapping[str, Any]) -> str:
    ratio = row["heldout_loss_vs_plain"]
    if row["arm"] == "plain" or ratio is None:
        return "reference"
    return f"x{ratio:.2f}, " + ("learns" if row["learns_task"] else "does not learn as well")


# ---- command line ------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--db", help="Evidence store URL or SQLite path (default: TUNESAFE_DB or the "
                        "workspace).")
    parser.add_argument("--policy", type=Path, help="Gate policy; a file needs a training: section.")
    parser.add_argument("--base", default=BASE_REF)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--heldout", type=Path, default=HELDOUT)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--mix-ratio", type=float, default=DemoConfig.mix_ratio)
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    parser.add_argument("--suite", default=DemoConfig.suite)
    parser.add_argument("--attacks", default=DEMO_ATTACKS)
    parser.add_argument("--max-new-tokens", type=int, default=DemoConfig.max_new_tokens)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=DemoConfig.concurrency)
    parser.add_argument("--probe-every", default="auto")
    parser.add_argument("--probe-max-new-tokens", type=int, default=DemoConfig.probe_max_new_tokens)
    parser.add_argument("--probe-items", default=",".join(str(n) for n in DEMO_PROBE.values()),
                        help="Probe set size per kind: harmful,prefilled,borderline,benign.")
    parser.add_argument("--eval-backend", default="auto", choices=("auto", "hf", "llamacpp"),
                        help="Backend of the gates' evaluations; auto: llama.cpp when its server is "
                             "installed (tunesafe[llamacpp] or `make llama-server`), else transformers.")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    from tunesafe.cli.training_cmds import _probe_every as probe_every  # train-lora's --probe-every

    try:
        config = DemoConfig(base=args.base, data=args.data, heldout=args.heldout,
                            arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
                            mix_ratio=args.mix_ratio, epochs=args.epochs, suite=args.suite,
                            max_new_tokens=args.max_new_tokens, limit=args.limit,
                            concurrency=args.concurrency, probe_every=probe_every(args.probe_every),
                            attacks=args.attacks, probe_max_new_tokens=args.probe_max_new_tokens,
                            probe_composition=_probe_items(args.probe_items), eval_backend=args.eval_backend)
        policy = policy_with_training(args.policy)
        from tunesafe.evidence.workspace import open_store

        with open_store(args.db) as store:
            body = run_demo(store, args.out_dir, config, policy, progress=args.progress)
    except UserError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    print(render_markdown(body))
    print(f"table: {args.out_dir / TABLE_FILES['markdown']}; evidence record #{body['record_id']}")
    return 0


def _probe_items(value: str) -> dict[str, int]:
    counts = [c.strip() for c in value.split(",")]
    if len(counts) != len(DEMO_PROBE) or not all(c.isdigit() for c in counts):
        raise UserError(f"--probe-items needs {len(DEMO_PROBE)} counts, got {value!r}", where="--probe-items",
                        fix=f"counts of {', '.join(DEMO_PROBE)}, e.g. 6,4,3,3")
    return dict(zip(DEMO_PROBE, map(int, counts), strict=True))


if __name__ == "__main__":
    sys.exit(main())
