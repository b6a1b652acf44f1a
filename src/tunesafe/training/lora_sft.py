"""A small, deterministic LoRA supervised fine-tune on chat JSONL (CPU-friendly).

tunesafe uses it to build its own demonstration of safety erosion (`tunesafe.training.erosion_demo`):
a LoRA on a dozen benign identity-shifting examples, after Qi et al. 2023. It is deliberately plain
(one loop, loss on assistant tokens only) so that the demo is reproducible and auditable.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: int = 5
    learning_rate: float = 1e-3
    seed: int = 0
    max_length: int = 256


def read_chat_jsonl(path: Path) -> list[list[dict[str, str]]]:
    conversations = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                messages = json.loads(line)["messages"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UserError(f"not a chat example ({exc})", where=f"{path}:{lineno}",
                                fix='write {"messages": [{"role": ..., "content": ...}, ...]}') from None
            conversations.append(messages)
    if not conversations:
        raise UserError("no examples", where=str(path), fix="add chat examples, one JSON object per line")
    return conversations


def load_base(ref: str) -> tuple[Any, Any]:
    """A local model ref (hf:, gguf:, embedded:) as a trainable fp32 transformers model + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesafe.models.hf import _converted_gguf, resolve_weights
    from tunesafe.models.refs import parse_ref

    parsed = parse_ref(ref)
    if parsed.scheme not in ("hf", "gguf", "embedded") or parsed.adapter:
        raise UserError("training needs a local base model without adapter", where=ref,
                        fix="use hf:FOLDER, gguf:FILE or embedded:NAME")
    weights = resolve_weights(parsed)
    folder = _converted_gguf(weights) if weights.is_file() else weights
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, tokenizer


def _encode(tokenizer: Any, messages: Sequence[dict[str, str]],
            max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; only the final assistant turn is learned (-100 elsewhere)."""
    prompt_ids = tokenizer.apply_chat_template(list(messages[:-1]), add_generation_prompt=True, tokenize=True)
    full_ids = tokenizer.apply_chat_template(list(messages), tokenize=True)
    if hasattr(prompt_ids, "input_ids"):  # newer tokenizers return a BatchEncoding
        prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    full_ids = list(full_ids)[:max_length]
    n_prompt = min(len(prompt_ids), len(full_ids))
    labels = [-100] * n_prompt + full_ids[n_prompt:]
    return full_ids, labels


def train_lora(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], out_dir: Path,
               config: LoraConfig) -> dict[str, Any]:
    """Train a LoRA adapter on `model` (a transformers causal LM) and save it (safetensors) to out_dir."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    peft_model = get_peft_model(model, PeftLoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    peft_model.train()
    examples = [_encode(tokenizer, conv, config.max_length) for conv in conversations]
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad],
                                  lr=config.learning_rate)
    losses: list[float] = []
    order = list(range(len(examples)))
    for _ in range(config.epochs):
        random.shuffle(order)
        epoch_loss = 0.0
        for i in order:
            ids, labels = examples[i]
            out = peft_model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            epoch_loss += float(out.loss)
        losses.append(epoch_loss / len(examples))
    peft_model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return {"epoch_losses": losses, "config": asdict(config), "n_examples": len(examples)}
