"""During fine-tuning: a LoRA fine-tune of a local model on any dataset scan-data reads (the trainer
tunesafe uses for its own erosion demonstration), so a team can reproduce an erosion or try a mitigation
and gate the result."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer
from rich.markup import escape

from tunesafe.cli.common import JSON_OPTION, check_out_folder, console, db_url, print_rows
from tunesafe.cli.groups import DURING
from tunesafe.errors import UserError

if TYPE_CHECKING:
    from tunesafe.policy.model import Policy, TrainingPolicy
    from tunesafe.training.callback import SafetyCallback

training_app = typer.Typer(help="Training runs recorded by train-lora and SafetyCallback: list, report.",
                           no_args_is_help=True)


def train_lora_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Training data in any format scan-data reads (chat, ShareGPT, "
                                "Alpaca, prompt/completion; JSONL, JSON, CSV, Parquet or a save_to_disk "
                                "folder): the messages trained on are the messages scan-data screens."),
    fmt: str = typer.Option("auto", "--format", help="auto|chat|sharegpt|alpaca|prompt-completion|csv|"
                            "parquet|hf-disk, as for scan-data."),
    columns: str = typer.Option(None, "--columns", help="Map roles to your columns, as for scan-data: "
                                "prompt=q,completion=a."),
    base: str = typer.Option("embedded:qwen2.5-coder-0.5b", "--base", help="Local model ref (hf:, gguf:, "
                             "embedded:); BASE+ADAPTER continues training that adapter."),
    out: Path = typer.Option(..., "--out", help="Folder for the adapter (adapter_config.json + "
                             "adapter_model.safetensors)."),
    epochs: int = typer.Option(5, min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    rank: int = typer.Option(8, "--rank", min=1),
    seed: int = typer.Option(0),
    probe_every: str = typer.Option("auto", "--probe-every", metavar="N|auto", help="Safety probe every N "
                                    "steps, or auto (about a tenth of the training time). The model is "
                                    "always probed before the first step and at the end."),
    stop_on_regression: bool = typer.Option(False, "--stop-on-regression", help="Stop when the probe's ASR "
                                            "or over-refusal rises past the policy's points, whatever "
                                            "actions the policy gives them."),
    policy_file: Path = typer.Option(None, "--policy", help="Gate policy whose training: section sets the "
                                     "limits (default: the section's defaults)."),
    report: Path = typer.Option(None, "--report", help="Folder for the training report (report.html, "
                                "summary.md, training_run.json); default OUT-report next to OUT."),
    model_name: str = typer.Option(None, "--model-name", help="Inventory name of the fine-tune (the "
                                   "evidence records' subject)."),
    objective: str = typer.Option("sft", "--objective", help="sft (cross-entropy) or constrained (Qi et "
                                  "al. 2024: the first answer tokens are held near the base model)."),
) -> None:
    """Train a LoRA adapter on a local model under the safety callback; gate it with --candidate BASE+OUT.

    Exit 0 when the run completed, 1 when a policy limit or probe stopped it (the adapter, evidence and
    report are still written), 2 for bad input or a run the policy refuses before the first step."""
    from tunesafe.cli.scan_cmds import parse_columns
    from tunesafe.training.lora_sft import (
        OBJECTIVES,
        LoraConfig,
        check_trainable_ref,
        load_base,
        read_training_examples,
        train_lora,
    )

    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}", where="--objective",
                        fix=f"use one of {', '.join(OBJECTIVES)}")
    check_out_folder(out, "--out")
    if out.exists() and any(out.iterdir()):
        raise UserError("output folder is not empty", where=str(out), fix="choose a new --out folder")
    report_dir = report or out.with_name(out.name + "-report")
    # the adapter's hash covers its folder's subfolders too
    if out.resolve() in (report_dir.resolve(), *report_dir.resolve().parents):
        raise UserError("the report would be hashed with the adapter", where=str(report_dir),
                        fix="give --report a folder outside --out")
    check_out_folder(report_dir, "--report")
    from tunesafe.training.report import outcome_line, write_training_report

    # The data, the ref and the policy are checked before the callback imports transformers and the base
    # loads: bad input is one line in about a second.
    conversations, places = read_training_examples(data, fmt, parse_columns(columns))
    base_ref = check_trainable_ref(base, allow_adapter=True)
    policy = _training_policy(policy_file, stop_on_regression)
    every = _probe_every(probe_every)
    store = _store_url(ctx)
    callback = _safety_callback(policy, every, store=store, model_name=model_name, base=base, data=data)
    model, tokenizer = load_base(base, allow_adapter=True)
    config = LoraConfig(r=rank, alpha=2 * rank, epochs=epochs, learning_rate=lr, seed=seed)
    try:
        info = train_lora(model, tokenizer, conversations, out, config, callback=callback,
                          objective=objective, places=places)
    finally:  # refused and failed runs get their report too
        if callback.record is not None:
            paths = write_training_report(callback.record, report_dir)
            console.print(f"training report: {paths['html']} ({callback.record['status']})", highlight=False)
    losses = ", ".join(f"{x:.3f}" for x in info["epoch_losses"])
    body = info["training_run"]
    console.print(f"adapter written to {out} ({info['n_examples']} examples; loss per epoch: {losses})",
                  highlight=False)
    console.print(f"evidence: training_run {body['run_id']} recorded" if store else "evidence: no store "
                  "(--db, TUNESAFE_DB or `tunesafe init`): kept in the report only", highlight=False)
    if body["status"] != "completed":
        console.print(f"[bold red]{escape(body['status'].upper())}[/] {escape(outcome_line(body))}",
                      highlight=False, markup=True)
        raise typer.Exit(1)
    # OUT holds the whole adapter, a continued one included: the candidate is the bare base with OUT
    candidate = replace(base_ref, adapter=str(out))
    console.print(f"gate it: tunesafe gate --base {base} --candidate {candidate}", highlight=False,
                  soft_wrap=True)  # one line, to copy


def _probe_every(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise UserError(f"--probe-every must be a number of steps or auto, got {value!r}", where="--probe-every",
                    fix="e.g. --probe-every 20 or --probe-every auto")


def _store_url(ctx: typer.Context) -> str | None:
    """The evidence store when one is configured (--db, TUNESAFE_DB or a workspace), else None."""
    import os

    from tunesafe.evidence.workspace import find_workspace

    url = db_url(ctx) or os.environ.get("TUNESAFE_DB")
    workspace = find_workspace() if url is None else None
    return url or (workspace.db_url() if workspace else None)


def _training_policy(policy_file: Path | None, stop_on_regression: bool) -> Policy | TrainingPolicy | None:
    """The policy with its training section; --stop-on-regression makes both probe rises stop (stricter
    than the policy, never weaker; the recorded section says what was enforced)."""
    from tunesafe.policy.model import Policy, TrainingPolicy

    policy: Policy | TrainingPolicy | None = None
    if policy_file is not None:
        from tunesafe.policy.load import load_policy

        policy = load_policy(policy_file)
        if policy.training is None:
            raise UserError("the policy has no training: section", where=str(policy_file),
                            fix="add one (`tunesafe policy init` writes it, commented out), or leave out "
                                "--policy for the section's defaults")
    if stop_on_regression:
        section = (policy.training if isinstance(policy, Policy) else None) or TrainingPolicy()
        if section.max_probe_asr_increase_points is None:  # the flag's stop would never come
            raise UserError("--stop-on-regression, but the policy sets no probe ASR limit "
                            "(training.max_probe_asr_increase_points: null)", where=str(policy_file),
                            fix="set training.max_probe_asr_increase_points (e.g. 10), or leave out "
                                "--stop-on-regression")
        stricter = section.model_copy(update={"actions": section.actions.model_copy(
            update={"probe_asr": "stop", "probe_over_refusal": "stop"})})
        policy = policy.model_copy(update={"training": stricter}) if isinstance(policy, Policy) else stricter
    return policy


def _safety_callback(policy: Policy | TrainingPolicy | None, probe_every: int | Literal["auto"], *,
                     store: str | None, model_name: str | None, base: str, data: Path) -> SafetyCallback:
    from tunesafe.training.callback import SafetyCallback

    # BASE+ADAPTER: training starts from the adapter's weights, so the recorded base is the pair
    return SafetyCallback(policy=policy, probe_every=probe_every, store=store, model_name=model_name,
                          base_ref=base, data=data)


def training_list_command(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The training_run records in the store, oldest first."""
    from tunesafe.evidence.workspace import open_store
    from tunesafe.types import RecordType

    with open_store(db_url(ctx), read_only=True) as store:
        rows = [{"record": r.id, "run_id": r.body["run_id"], "model": r.body.get("model_name") or "",
                 "status": r.body["status"], "steps": f"{r.body['steps']}/{r.body['planned_steps']}",
                 "stopped_by": (r.body.get("stopped_by") or {}).get("kind", ""),
                 "ended_at": r.body["ended_at"]} for r in store.records(type=RecordType.TRAINING_RUN)]
    print_rows(rows, ["record", "run_id", "model", "status", "steps", "stopped_by", "ended_at"],
               title="training runs", as_json=as_json)


def training_report_command(
    ctx: typer.Context,
    run: str = typer.Argument(..., metavar="RUN", help="A training_run evidence record id or run id."),
    out: Path = typer.Option(Path("tunesafe-training-report"), "--out", help="Folder for report.html, "
                             "summary.md, training_run.json."),
) -> None:
    """Render the training report of a recorded run from its evidence (nothing recomputed)."""
    from tunesafe.evidence.workspace import open_store
    from tunesafe.training.report import find_training_run, outcome_line, write_training_report

    with open_store(db_url(ctx), read_only=True) as store:
        record = find_training_run(store, run)
    paths = write_training_report(record.body, out, record=record)
    console.print(f"{paths['html']}: {record.body['status']}, {outcome_line(record.body)}", highlight=False)


def mix_safety_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Chat or ShareGPT JSONL to fine-tune on; the safety examples are "
                                "written in its schema (other formats: convert to chat JSONL first)."),
    ratio: float = typer.Option(0.03, "--ratio", help="Safety examples to add, as a share of DATA's "
                                "examples (0 < ratio <= 1; Bianchi et al. 2024 used about 3%)."),
    out: Path = typer.Option(..., "--out", help="The mixed JSONL (plus OUT.provenance.json)."),
    seed: int = typer.Option(0, "--seed", help="Seeds which examples are added and the shuffle."),
    categories: str = typer.Option(None, "--categories", help="Comma-separated harm categories to draw "
                                   "from (default: all of the taxonomy)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT (never DATA itself)."),
) -> None:
    """Add project-written safety examples (refusals, borderline help, safety recovery) to training data."""
    import os

    from tunesafe.evidence.workspace import find_workspace, open_store
    from tunesafe.training.mixing import parse_categories, plan_mix, write_mix
    from tunesafe.types import RecordType

    cats = parse_categories(categories)
    planned = plan_mix(data, out, ratio=ratio, seed=seed, categories=cats, force=force)
    url = db_url(ctx) or os.environ.get("TUNESAFE_DB")
    # opened after the input is checked (bad input creates no store at a new --db path) and before
    # anything is written: a mix that should be recorded but cannot be leaves no file behind
    store = open_store(url) if url or find_workspace() is not None else None
    try:
        body = write_mix(planned)
        record = store.append(RecordType.DATA_MIX, body, subject=body["mixed_sha256"]) if store else None
    finally:
        if store is not None:
            store.close()
    kinds = ", ".join(f"{n} {kind}" for kind, n in body["counts_by_kind"].items())
    console.print(f"{out}: {body['n_data']} examples + {body['n_added']} safety examples ({kinds}; "
                  f"{len(body['counts_by_category'])} categories) = {body['n_mixed']}, sha256 "
                  f"{body['mixed_sha256'][:12]}", highlight=False)
    console.print(f"provenance: {out}.provenance.json"
                  + (f"; evidence record {record.id}" if record else " (no store: not recorded)"),
                  highlight=False)


def safelora_command(
    ctx: typer.Context,
    adapter: Path = typer.Option(..., "--adapter", help="The LoRA adapter folder (or a shipped adapter name, "
                                 "e.g. aoa-demo)."),
    out: Path = typer.Option(..., "--out", help="New folder for the projected adapter (+ projection.json)."),
    base: str = typer.Option("embedded:qwen2.5-coder-0.5b", "--base", help="The aligned base the adapter "
                             "was trained on (hf:, gguf:, embedded:)."),
    unaligned: str = typer.Option(None, "--unaligned", help="Unaligned twin of the base (same "
                                  "architecture), for --method safelora."),
    method: str = typer.Option("refusal-direction", "--method", help="refusal-direction (needs only the "
                               "base) or safelora (needs --unaligned)."),
    threshold: float = typer.Option(None, "--threshold", help="safelora: project pairs with cosine <= T "
                                    "(default 0.5); refusal-direction: pairs with a share along r > T "
                                    "(default 0)."),
    layers: str = typer.Option(None, "--layers", help="Only these layers, e.g. 0-11,20 (default all)."),
    prompts: int = typer.Option(32, "--prompts", help="Harmful and harmless prompts each, for the "
                                "refusal direction."),
    suite: str = typer.Option("default", "--suite", help="Suite the direction prompts come from."),
) -> None:
    """Project a LoRA adapter so it no longer writes along the base's refusal direction (or SafeLoRA)."""
    import os

    from tunesafe.evidence.workspace import find_workspace, open_store
    from tunesafe.training.projection import plan_projection, write_projection
    from tunesafe.types import RecordType

    planned = plan_projection(base, adapter, out, method=method, unaligned=unaligned, threshold=threshold,
                              layers=layers, prompts=prompts, suite=suite)
    url = db_url(ctx) or os.environ.get("TUNESAFE_DB")
    # opened after the input is checked (bad input creates no store at a new --db path) and before the
    # adapter is written: a projection that should be recorded but cannot be leaves no adapter behind
    store = open_store(url) if url or find_workspace() is not None else None
    try:
        report = write_projection(planned)
        subject = (report["output_adapter"] or {}).get("sha256")
        record = store.append(RecordType.ADAPTER_PROJECTION, report, subject=subject) if store else None
    finally:
        if store is not None:
            store.close()
    for row in report["per_layer"]:
        console.print(f"layer {row['layer']}: |dW| {row['norm_before']:.4g} -> {row['norm_after']:.4g} "
                      f"(removed {100 * row['removed_share']:.1f}%; projected "
                      f"{', '.join(row['projected']) or 'nothing'})", highlight=False)
    console.print(f"{out}: {report['n_projected']} of {len(report['modules'])} LoRA pairs projected "
                  f"({method}, threshold {report['threshold']}); report {out}/projection.json"
                  + (f"; evidence record {record.id}" if record else " (no store: not recorded)"),
                  highlight=False)
    console.print(f"gate it: tunesafe gate --base {base} --candidate {base}+{out}", highlight=False,
                  soft_wrap=True)  # one line, to copy


def register(app: typer.Typer) -> None:
    app.command("train-lora", rich_help_panel=DURING)(train_lora_command)
    app.command("mix-safety", rich_help_panel=DURING)(mix_safety_command)
    app.command("safelora", rich_help_panel=DURING)(safelora_command)
    training_app.command("list")(training_list_command)
    training_app.command("report")(training_report_command)
    app.add_typer(training_app, name="training", rich_help_panel=DURING)
