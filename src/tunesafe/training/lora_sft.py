"""A small, deterministic LoRA supervised fine-tune on chat JSONL (CPU-friendly).

tunesafe uses it to build its own demonstration of safety erosion (`tunesafe.training.erosion_demo`):
a LoRA on a dozen benign identity-shifting examples, after Qi et al. 2023. It is deliberately plain
(one loop, batch size 1, loss on assistant tokens only) so that the demo is reproducible and auditable.

`tunesafe train-lora` runs the same loop under a `SafetyCallback`, driven through the callback's own
Trainer hooks (on_train_begin, on_step_end, on_log) with a real TrainerState and TrainerControl, so it
shares every behaviour of the callback (loss monitor, policy limits, probes, evidence) without a
transformers Trainer, whose sampler, optimizer defaults and batching would change the weights the demo
adapter was trained to. The probes decode greedily and draw no random numbers, so a seed gives the
same adapter with or without them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from tunesafe.errors import UserError

if TYPE_CHECKING:
    from tunesafe.models.refs import ModelRef
    from tunesafe.training.callback import SafetyCallback
    from tunesafe.types import Message


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


@dataclass(frozen=True)
class LoopArguments:
    """What the SafetyCallback reads from a Trainer's arguments (and records as the run's config), for
    this loop: batch size 1, constant learning rate, torch AdamW with its default weight decay."""

    output_dir: str
    learning_rate: float
    num_train_epochs: float
    seed: int
    max_length: int
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "constant"
    optim: str = "torch.optim.AdamW"
    weight_decay: float = 0.01
    assistant_only_loss: bool = True
    objective: str = "sft"


OBJECTIVES = ("sft", "constrained")
CHAT_FIX = "end each example with the assistant's answer, after the prompt it answers"
Chat = list[dict[str, str]]


def read_training_data(path: str | Path, fmt: str = "auto",
                       columns: Mapping[str, str] | None = None) -> list[Chat]:
    """The conversations of a dataset (read_training_examples without the places)."""
    return read_training_examples(path, fmt, columns)[0]


def read_training_examples(path: str | Path, fmt: str = "auto",
                           columns: Mapping[str, str] | None = None) -> tuple[list[Chat], list[str]]:
    """The conversations of a dataset and where each is (FILE:LINE, for errors found when train_lora
    tokenises them), read by scan-data's reader (`open_dataset`: every format it reads,
    top-level system prompts included), so the messages trained on are the messages screened. Each must
    also end with the assistant's answer after a prompt (what train_lora learns); a record that does not,
    like any malformed record, is a UserError naming FILE:LINE."""
    from tunesafe.screening.readers import open_dataset

    dataset = open_dataset(path, fmt, columns)
    splits = _splits(dataset.path) if dataset.container == "hf-disk" else []
    if len(splits) > 1:  # scan-data reads every split; training on them all would train on the test split
        raise UserError(f"a DatasetDict folder with the splits {', '.join(splits)}: training on it would "
                        "train on every split", where=str(path),
                        fix=f"train on one split's folder, e.g. {dataset.path / splits[0]}")
    conversations, places = [], []
    for record in dataset.records():
        if record.rejected is not None:  # supervised fine-tuning would learn one side and drop the other
            raise UserError("a preference pair (chosen and rejected answers): train-lora fine-tunes on one "
                            "answer per prompt", where=f"{path}:{record.example.line}",
                            fix="train on prompt/completion or chat data (e.g. the chosen answers)")
        messages = record.example.messages
        problem = _chat_problem(messages)
        if problem:
            raise UserError(f"not a training example: {problem}", where=f"{path}:{record.example.line}",
                            fix=CHAT_FIX)
        conversations.append([{"role": m.role, "content": m.content} for m in messages])
        places.append(f"{path}:{record.example.line}")
    return conversations, places


def _splits(folder: Path) -> list[str]:
    """The splits a save_to_disk DatasetDict folder lists (none for a single Dataset's folder)."""
    import json

    listing = folder / "dataset_dict.json"
    try:
        splits = json.loads(listing.read_text())["splits"] if listing.exists() else []
    except (KeyError, TypeError, ValueError):
        return []  # the reader names a malformed listing
    return [s for s in splits if isinstance(s, str)] if isinstance(splits, list) else []


def _chat_problem(messages: Sequence[Message]) -> str | None:
    """Why `messages` cannot be learned from (turns ending with the assistant's answer), or None. The
    reader has already checked each turn's role and text."""
    if messages[-1].role != "assistant":
        return f"the last turn is {messages[-1].role!r}, not the assistant's answer to learn"
    if any(m.role == "tool" for m in messages):
        # the reader renders tool calls as `name(arguments)` text for screening; trained as that text,
        # the model would learn to print its calls as prose instead of the template's tool format
        return ("it is a tool-calling conversation, which train-lora would learn as plain text, not in "
                "the chat template's tool format (train it with your own trainer and the SafetyCallback)")
    if not messages[-1].content.strip():  # e.g. a tool-call turn with null content: nothing to learn
        return "the assistant's answer is empty"
    if len(messages) < 2:
        return "an assistant answer needs a prompt before it"
    return None


def check_trainable_ref(ref: str, *, allow_adapter: bool = False) -> ModelRef:
    """The parsed ref of a base that can be trained here: local (hf:, gguf:, embedded:), and without an
    adapter unless `allow_adapter`."""
    from tunesafe.models.refs import parse_ref

    parsed = parse_ref(ref)
    if parsed.scheme not in ("hf", "gguf", "embedded") or (parsed.adapter and not allow_adapter):
        raise UserError("training needs a local base model without adapter", where=ref,
                        fix="use hf:FOLDER, gguf:FILE or embedded:NAME")
    return parsed


def load_base(ref: str, *, allow_adapter: bool = False) -> tuple[Any, Any]:
    """A local model ref (hf:, gguf:, embedded:) as a trainable fp32 transformers model + tokenizer.
    With `allow_adapter`, BASE+ADAPTER loads the adapter trainable on top (training continues it); an
    adapter made for another base is a UserError."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesafe.models.hf import _attach_adapter, _converted_gguf, adapter_files, resolve_weights

    parsed = check_trainable_ref(ref, allow_adapter=allow_adapter)
    adapter = adapter_files(parsed.adapter, parsed)[0].parent if parsed.adapter else None
    weights = resolve_weights(parsed)
    folder = _converted_gguf(weights) if weights.is_file() else weights
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter is not None:
        model = _attach_adapter(model, adapter)  # checks the adapter's tensors against this base
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
        for config in model.peft_config.values():
            config.inference_mode = False
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


def _encoded(tokenizer: Any, messages: Sequence[dict[str, str]], max_length: int,
             place: str) -> tuple[list[int], list[int]]:
    """_encode, with a chat template's refusal of the example (a role it does not support: a system
    prompt, a tool turn) as bad input naming the example's place."""
    from jinja2 import TemplateError

    try:
        ids, labels = _encode(tokenizer, messages, max_length)
    except (TemplateError, ValueError) as exc:
        raise UserError(f"the base model's chat template refused this training example: {exc}", where=place,
                        fix="drop or convert the turns that template does not take (e.g. a system prompt "
                            "or tool turns), or train a base whose template takes them") from None
    if all(label == -100 for label in labels):  # a loss over no token is NaN, and NaN spreads to every weight
        raise UserError(f"its prompt fills the {max_length} tokens read per example, so no token of the "
                        "answer is left to learn", where=place,
                        fix="shorten that example's prompt or drop the example")
    return ids, labels


def train_lora(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], out_dir: Path,
               config: LoraConfig, *, callback: SafetyCallback | None = None,
               objective: str = "sft", places: Sequence[str] | None = None) -> dict[str, Any]:
    """Train a LoRA adapter on `model` (a transformers causal LM, or a PEFT model to continue) and save it
    (safetensors) to out_dir. With a `callback`, the run is watched and recorded like a Trainer's: it may
    stop early (the adapter is still saved, and linked in the record) or be refused before the first
    step (UserError, nothing saved); the training_run body is then `callback.record`. `objective`:
    "sft" (cross-entropy) or "constrained" (tunesafe.training.constrained, Qi et al. 2024: the first
    answer tokens are held near the base with the adapter disabled). `places`: where each conversation
    is in its file (read_training_examples), for naming a bad one; default "training example N"."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}", where="--objective",
                        fix=f"use one of {', '.join(OBJECTIVES)}")
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    peft_model = model if hasattr(model, "peft_config") else get_peft_model(model, PeftLoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    peft_model.train()
    places = places or [f"training example {n}" for n in range(1, len(conversations) + 1)]
    examples = [_encoded(tokenizer, conv, config.max_length, place)
                for conv, place in zip(conversations, places, strict=True)]
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    losses: list[float] = []
    order = list(range(len(examples)))
    # guarded from on_train_begin on: an interrupt or error in the start probe is recorded too
    with callback.guard() if callback else contextlib.nullcontext():
        watch = _Watch(callback, peft_model, tokenizer, conversations, out_dir, config, objective) \
            if callback else None
        for _ in range(config.epochs):
            random.shuffle(order)
            epoch_loss, seen = 0.0, 0
            for i in order:
                ids, labels = examples[i]
                loss = _loss(peft_model, torch.tensor([ids]), torch.tensor([labels]), objective)
                loss.backward()
                grad_norm = _grad_norm(params) if watch else 0.0  # read-only: the update is unchanged
                optimizer.step()
                optimizer.zero_grad()
                epoch_loss += float(loss.detach())
                seen += 1
                if watch and watch.step(float(loss.detach()), grad_norm, optimizer, len(examples)):
                    break
            losses.append(epoch_loss / seen)
            if watch and watch.stopped:
                break
        if watch:
            watch.final_probe()
        peft_model.eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    info = {"epoch_losses": losses, "config": asdict(config), "n_examples": len(examples)}
    if objective != "sft":  # the demo adapter's training_info.json stays as it was
        info["objective"] = objective
    if watch:
        info["training_run"] = watch.finish()
    return info


def _loss(model: Any, input_ids: Any, labels: Any, objective: str) -> Any:
    if objective == "constrained":
        from tunesafe.training.constrained import constrained_sft_loss, reference_logits

        ref = reference_logits(model, {"input_ids": input_ids})
        return constrained_sft_loss(model(input_ids=input_ids).logits, ref, labels)
    return model(input_ids=input_ids, labels=labels).loss


def _grad_norm(params: Sequence[Any]) -> float:
    import torch

    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class _Watch:
    """Drives a SafetyCallback through its Trainer hooks from train_lora's loop."""

    def __init__(self, callback: SafetyCallback, model: Any, tokenizer: Any,
                 conversations: list[list[dict[str, str]]], out_dir: Path, config: LoraConfig,
                 objective: str) -> None:
        from transformers import TrainerControl, TrainerState

        self.callback, self.out_dir = callback, out_dir
        n_steps = config.epochs * len(conversations)
        # the callback reads arguments by attribute, so this loop's own stand in for TrainingArguments
        self.args: Any = cast(Any, LoopArguments(
            output_dir=str(out_dir), learning_rate=config.learning_rate,
            num_train_epochs=float(config.epochs), seed=config.seed, max_length=config.max_length,
            objective=objective))
        self.state = TrainerState(max_steps=n_steps, num_train_epochs=config.epochs)
        self.control = TrainerControl()
        # refusals (policy limits, a failed first probe) raise here, before any weight moves
        callback.on_train_begin(self.args, self.state, self.control, model=model, processing_class=tokenizer,
                                train_dataloader=SimpleNamespace(dataset=conversations))

    @property
    def stopped(self) -> bool:
        return bool(self.control.should_training_stop)

    def step(self, loss: float, grad_norm: float, optimizer: Any, n_examples: int) -> bool:
        """After an optimizer step: the callback's step and log hooks, as the Trainer calls them.
        True when the run must stop."""
        state = self.state
        state.global_step += 1
        state.epoch = state.global_step / n_examples
        self.callback.on_step_end(self.args, state, self.control, optimizer=optimizer)
        lr = max(float(g["lr"]) for g in optimizer.param_groups)
        self.callback.on_log(self.args, state, self.control, logs={
            "loss": loss, "grad_norm": grad_norm, "learning_rate": lr, "epoch": state.epoch})
        return self.stopped

    def final_probe(self) -> None:
        """The weights about to be saved are probed unless that step was just probed."""
        self.callback.probe_now(self.state.global_step, "end", self.control)

    def finish(self) -> dict[str, Any]:
        return self.callback.finalize(output=self.out_dir)
