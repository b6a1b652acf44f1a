"""During fine-tuning: a LoRA fine-tune of a local model on chat JSONL (the trainer tunesafe uses for its
own erosion demonstration), so a team can reproduce an erosion or try a mitigation and gate the result."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesafe.cli.common import console
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


def register(app: typer.Typer) -> None:
    app.command("train-lora", rich_help_panel=DURING)(train_lora_command)
