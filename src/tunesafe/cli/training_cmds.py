"""During fine-tuning: a LoRA fine-tune of a local model on chat JSONL (the trainer tunesafe uses for its
own erosion demonstration), so a team can reproduce an erosion or try a mitigation and gate the result."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesafe.cli.common import console, db_url
from tunesafe.cli.groups import DURING
from tunesafe.errors import UserError


def train_lora_command(
    data: Path = typer.Argument(..., help="Chat JSONL: one {\"messages\": [...]} per line."),
    base: str = typer.Option("embedded:qwen2.5-coder-0.5b", "--base", help="Local model ref (hf:, gguf:, "
                             "embedded:)."),
    out: Path = typer.Option(..., "--out", help="Folder for the adapter (adapter_config.json + "
                             "adapter_model.safetensors)."),
    epochs: int = typer.Option(5, min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    rank: int = typer.Option(8, "--rank", min=1),
    seed: int = typer.Option(0),
) -> None:
    """Train a LoRA adapter on a local model; gate it afterwards with --candidate BASE+OUT."""
    from tunesafe.training.lora_sft import LoraConfig, load_base, read_chat_jsonl, train_lora

    if not data.is_file():
        raise UserError("file not found", where=str(data), fix="give a chat JSONL file")
    if out.exists() and any(out.iterdir()):
        raise UserError("output folder is not empty", where=str(out), fix="choose a new --out folder")
    conversations = read_chat_jsonl(data)
    model, tokenizer = load_base(base)
    info = train_lora(model, tokenizer, conversations, out,
                      LoraConfig(r=rank, alpha=2 * rank, epochs=epochs, learning_rate=lr, seed=seed))
    losses = ", ".join(f"{x:.3f}" for x in info["epoch_losses"])
    console.print(f"adapter written to {out} ({info['n_examples']} examples; loss per epoch: {losses})")
    console.print(f"gate it: tunesafe gate --base {base} --candidate {base}+{out}")


def mix_safety_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Chat JSONL to fine-tune on: one {\"messages\": [...]} per line."),
    ratio: float = typer.Option(0.03, "--ratio", help="Safety examples to add, as a share of DATA's "
                                "examples (0 < ratio <= 1; Bianchi et al. 2024 used about 3%)."),
    out: Path = typer.Option(..., "--out", help="The mixed chat JSONL (plus OUT.provenance.json)."),
    seed: int = typer.Option(0, "--seed", help="Seeds which examples are added and the shuffle."),
    categories: str = typer.Option(None, "--categories", help="Comma-separated harm categories to draw "
                                   "from (default: all of the taxonomy)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT (never DATA itself)."),
) -> None:
    """Add project-written safety examples (refusals, borderline help, safety recovery) to training data."""
    import os

    from tunesafe.evidence.workspace import find_workspace, open_store
    from tunesafe.training.mixing import mix_safety, parse_categories
    from tunesafe.types import RecordType

    cats = parse_categories(categories)
    url = db_url(ctx) or os.environ.get("TUNESAFE_DB")
    # opened before the work: a mix that should be recorded but cannot be fails before writing anything
    store = open_store(url) if url or find_workspace() is not None else None
    try:
        body = mix_safety(data, out, ratio=ratio, seed=seed, categories=cats, force=force)
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
    from tunesafe.training.projection import project_adapter
    from tunesafe.types import RecordType

    url = db_url(ctx) or os.environ.get("TUNESAFE_DB")
    store = open_store(url) if url or find_workspace() is not None else None
    try:
        report = project_adapter(base, adapter, out, method=method, unaligned=unaligned, threshold=threshold,
                                 layers=layers, prompts=prompts, suite=suite)
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
    console.print(f"gate it: tunesafe gate --base {base} --candidate {base}+{out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train-lora", rich_help_panel=DURING)(train_lora_command)
    app.command("mix-safety", rich_help_panel=DURING)(mix_safety_command)
    app.command("safelora", rich_help_panel=DURING)(safelora_command)
