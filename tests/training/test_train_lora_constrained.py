"""Constrained SFT (Qi et al. 2024): the loss is the paper's formula on a hand-computed example, its
gradient is plain SFT's where the model still equals the reference, and on the tiny model it keeps the
first answer tokens' distribution closer to the reference than plain SFT on the same data and seed; the
Trainer subclass trains with it and `train-lora --objective constrained` records the objective."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from tunesafe.training.constrained import constrained_sft_loss, token_betas  # noqa: E402


def test_loss_is_the_formula_on_a_hand_computed_example() -> None:
    # vocab 3; labels learn tokens 1 then 2 (answer tokens 1 and 2: beta 0.5 and 2.0); the last logits
    # row predicts nothing (shifted away)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2)], [5.0, 0.0, 0.0]]])
    ref = torch.zeros(1, 3, 3)
    labels = torch.tensor([[-100, 1, 2]])
    # token 1: p = 1/3 = p_ref, delta 0 -> -(2/0.5) log sigmoid(0) = 4 ln 2
    # token 2: p = 2/4, p_ref = 1/3, delta = ln 1.5 -> -(2/2) log sigmoid(2 ln 1.5) = ln(1 + 1/2.25)
    expected = (4 * math.log(2) + math.log(1 + 1 / 2.25)) / 2
    assert constrained_sft_loss(logits, ref, labels).item() == pytest.approx(expected, rel=1e-6)


def test_betas_by_answer_position_and_gradient_at_the_reference() -> None:
    labels = torch.tensor([[-100, -100, 7, 7, 7, 7, 7, 7, 7, -100]])
    assert token_betas(labels)[0, 2:9].tolist() == pytest.approx([0.5, 2.0, 2.0, 2.0, 2.0, 0.1, 0.1])

    # each answer of a row starts again at beta 0.5 (multi-turn rows with every assistant turn learned,
    # packed rows): the first tokens of the second answer are where its alignment lives too
    two = torch.tensor([[-100, 7, 7, 7, -100, -100, 7, 7, 7, 7, 7, 7, 7]])
    learned = token_betas(two)[two != -100]
    assert learned.tolist() == pytest.approx([0.5, 2.0, 2.0, 0.5, 2.0, 2.0, 2.0, 2.0, 0.1, 0.1])

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 6))
    labels[:, :2] = -100
    constrained_sft_loss(logits, logits.detach().clone(), labels).backward()
    constrained_grad = logits.grad.clone()
    logits.grad = None
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1)).backward()
    assert torch.allclose(constrained_grad, logits.grad, atol=1e-6)  # delta = 0: plain SFT's gradient


def first_token_kl(tiny: Any, tuned: Any, reference: Any, conversations: list[Any],
                   n_tokens: int = 5) -> float:
    """Mean KL(reference || tuned) of the next-token distributions at the first answer tokens."""
    from tunesafe.training.lora_sft import _encode

    total, count = 0.0, 0
    with torch.no_grad():
        for conv in conversations:
            ids, labels = _encode(tiny.tokenizer, conv, 256)
            start = next(i for i, label in enumerate(labels) if label != -100) - 1  # predicts answer token 1
            x = torch.tensor([ids])
            p = torch.log_softmax(tuned(input_ids=x).logits[0, start:start + n_tokens], dim=-1)
            q = torch.log_softmax(reference(input_ids=x).logits[0, start:start + n_tokens], dim=-1)
            total += float((q.exp() * (q - p)).sum())
            count += n_tokens
    return total / count


def answer_only_rows(tiny: Any, conversations: list[Any]) -> list[dict[str, list[int]]]:
    from tunesafe.training.lora_sft import _encode

    return [dict(zip(("input_ids", "labels"), _encode(tiny.tokenizer, conv, 256), strict=True))
            for conv in conversations]


def test_constrained_keeps_first_tokens_closer_to_the_reference(tiny: Any, tmp_path: Path) -> None:
    """Full fine-tunes of the tiny model (a LoRA cannot move its tiny logits far) with the same data, seed
    and steps: plain SFT (Trainer) against ConstrainedSFTTrainer with the untouched model as reference."""
    from tunesafe.training import ConstrainedSFTTrainer

    conversations = [r["messages"] for r in tiny.rows(tiny.COMPLY, 8)]
    rows = answer_only_rows(tiny, conversations)
    reference = tiny.model().eval()
    kl = {}
    for name in ("sft", "constrained"):
        model = tiny.model()
        args = transformers.TrainingArguments(output_dir=str(tmp_path / name), max_steps=48, seed=0,
                                              learning_rate=1e-2, per_device_train_batch_size=2, report_to=[],
                                              save_strategy="no", use_cpu=True, disable_tqdm=True,
                                              logging_steps=50)
        extra = {"ref_model": tiny.model()} if name == "constrained" else {}
        trainer_class = ConstrainedSFTTrainer if name == "constrained" else transformers.Trainer
        trainer_class(model=model, args=args, train_dataset=rows, processing_class=tiny.tokenizer,
                      data_collator=transformers.DataCollatorForSeq2Seq(tiny.tokenizer), **extra).train()
        kl[name] = first_token_kl(tiny, model.eval(), reference, conversations)
    assert kl["sft"] > 0.5, kl  # plain SFT really moved the first answer tokens
    assert kl["constrained"] < 0.5 * kl["sft"], kl


def test_train_lora_objective_constrained_is_recorded(tiny: Any, tmp_path: Path) -> None:
    from tunesafe.policy.model import TrainingPolicy
    from tunesafe.training.callback import SafetyCallback
    from tunesafe.training.lora_sft import LoraConfig, train_lora

    conversations = [r["messages"] for r in tiny.rows(tiny.COMPLY, 4)]
    never_stop = TrainingPolicy(max_probe_asr_increase_points=100, max_probe_over_refusal_increase_points=100)
    callback = SafetyCallback(policy=never_stop, probe_every=None, max_new_tokens=4)
    info = train_lora(tiny.model(), tiny.tokenizer, conversations, tmp_path / "a", LoraConfig(epochs=1),
                      callback=callback, objective="constrained")
    assert info["objective"] == "constrained"
    assert info["training_run"]["config"]["objective"] == "constrained"
    # the adapter starts at zero, so the first step's loss is the formula at delta = 0 (not cross-entropy)
    first_loss = info["training_run"]["loss_curve"][0][1]
    from tunesafe.training.lora_sft import _encode

    labels = torch.tensor([_encode(tiny.tokenizer, conversations[0], 256)[1]])[:, 1:]
    learned = labels != -100
    per_token = (2 / token_betas(labels)) * math.log(2)
    assert first_loss == pytest.approx(float((per_token * learned).sum() / learned.sum()), rel=1e-5)


def test_trainer_subclass_trains_with_the_constrained_loss(tiny: Any, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from tunesafe.training import ConstrainedSFTTrainer

    model = get_peft_model(tiny.model(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, learning_rate=1e-2,
                                          per_device_train_batch_size=4, report_to=[], save_strategy="no",
                                          use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0)
    collator = transformers.DataCollatorForLanguageModeling(tiny.tokenizer, mlm=False)
    dataset = tiny.dataset(tiny.COMPLY, 8)
    trainer = ConstrainedSFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                    processing_class=tiny.tokenizer)
    # before training the LoRA is zero, so the model is its reference (delta = 0): each learned token
    # costs -(2 / beta_t) log sigmoid(0) = (2 / beta_t) ln 2
    batch = collator([dataset[i] for i in range(4)])
    labels = batch["labels"][:, 1:]
    learned = labels != -100
    expected = float(((2 / token_betas(labels)) * math.log(2) * learned).sum() / learned.sum())
    assert float(trainer.compute_loss(model, dict(batch))) == pytest.approx(expected, rel=1e-5)

    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(float(p.abs().sum()) > 0 for p in lora_b)  # it trained the adapter


def test_trainer_subclass_averages_over_gradient_accumulation(tiny: Any, tmp_path: Path) -> None:
    """The loss is a per-batch mean, so with gradient accumulation the Trainer must divide it by the
    number of micro-batches: on identical rows, 2 x 2 accumulated logs the same loss and gradient norm
    as one batch of 2 (the logged loss was twice as large, the gradient twice as steep)."""
    from peft import LoraConfig, get_peft_model

    from tunesafe.training import ConstrainedSFTTrainer

    conversation = tiny.rows(tiny.COMPLY, 1)[0]["messages"]
    ids = tiny.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    rows = [{"input_ids": list(ids)} for _ in range(8)]
    logged = {}
    for accumulation in (1, 2):
        model = get_peft_model(tiny.model(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / str(accumulation)), max_steps=1, learning_rate=0.0, seed=0,
            per_device_train_batch_size=2, gradient_accumulation_steps=accumulation, report_to=[],
            save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1)
        trainer = ConstrainedSFTTrainer(model=model, args=args, train_dataset=rows,
                                        data_collator=transformers.DataCollatorForLanguageModeling(
                                            tiny.tokenizer, mlm=False), processing_class=tiny.tokenizer)
        trainer.train()
        logged[accumulation] = next(log for log in trainer.state.log_history if "loss" in log)
    assert logged[2]["loss"] == pytest.approx(logged[1]["loss"], rel=1e-5)
    assert logged[2]["grad_norm"] == pytest.approx(logged[1]["grad_norm"], rel=1e-4)
