"""Constrained SFT (Qi et al. 2024, "Safety alignment should be made more than just a few tokens deep"):
the token-wise objective that keeps the first tokens of an answer close to the aligned model, where
shallow safety alignment lives, while later tokens learn as in plain SFT.

    L = mean over answer tokens t of -(2 / beta_t) log sigmoid(beta_t (log p_theta(y_t) - log p_ref(y_t)))

beta_t depends on the token's position t in the answer (1-based): 0.5 for the first, 2.0 for tokens 2-5
and 0.1 after (the paper's values). A large beta saturates the loss once the token's log-probability rose
about 1/beta above the reference (its gradient is cross-entropy's times 2 * (1 - sigmoid(beta * delta))),
so those tokens stop being pushed; a small beta is close to plain SFT. At the start (delta = 0) the
gradient equals plain SFT's. The mean over answer tokens matches the normalisation of the plain loss.

With a LoRA the reference model is the same base with the adapter disabled: no second copy of the
weights. `ConstrainedSFTTrainer` is a transformers Trainer with this loss (add `SafetyCallback` as
usual); `tunesafe train-lora --objective constrained` uses `constrained_sft_loss` in its own loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import Trainer

FIRST_BETAS = (0.5, 2.0, 2.0, 2.0, 2.0)  # answer tokens 1-5
LATER_BETA = 0.1
IGNORE = -100


def token_betas(labels: torch.Tensor, first: Sequence[float] = FIRST_BETAS,
                later: float = LATER_BETA) -> torch.Tensor:
    """beta per label position (already shifted: labels[:, i] is predicted at i), by the token's index
    within its answer: a row with several learned answers (every assistant turn, packed examples) starts
    each one again at the first beta. Positions not learned (IGNORE) count for nothing."""
    learned = labels != IGNORE
    count = torch.cumsum(learned.long(), dim=-1)  # learned tokens up to and including each position
    before = F.pad(learned, (1, 0))[..., :-1]
    # learned tokens before the current answer: the count just before its first token, carried forward
    starts = torch.where(learned & ~before, count - 1, torch.zeros_like(count))
    index = count - 1 - torch.cummax(starts, dim=-1).values  # 0-based position within the answer
    table = torch.tensor([*first, later], dtype=torch.float32, device=labels.device)
    return table[index.clamp(min=0, max=len(first))]


def constrained_sft_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, *,
                         first_betas: Sequence[float] = FIRST_BETAS, later_beta: float = LATER_BETA
                         ) -> torch.Tensor:
    """The token-wise constrained loss for causal-LM `logits` (batch, seq, vocab), the reference model's
    `ref_logits` on the same input and `labels` (batch, seq; IGNORE where nothing is learned), shifted
    like the transformers loss: logits at i predict labels at i + 1."""
    logits, ref_logits, labels = logits[:, :-1].float(), ref_logits[:, :-1].float(), labels[:, 1:]
    learned = labels != IGNORE
    target = labels.clamp(min=0).unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target).squeeze(-1)
    ref_logp = torch.log_softmax(ref_logits, dim=-1).gather(-1, target).squeeze(-1).detach()
    beta = token_betas(labels, first_betas, later_beta)
    per_token = -(2.0 / beta) * F.logsigmoid(beta * (logp - ref_logp))
    return (per_token * learned).sum() / learned.sum().clamp(min=1)


@contextlib.contextmanager
def reference_of(model: Any, ref_model: Any | None = None) -> Iterator[Any]:
    """The reference model: `ref_model` if given, else `model` with its PEFT adapter disabled."""
    if ref_model is not None:
        yield ref_model
        return
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise ValueError("constrained SFT needs a reference: train a PEFT adapter or pass ref_model")
    with disable():
        yield model


def reference_logits(model: Any, inputs: dict[str, Any], ref_model: Any | None = None) -> torch.Tensor:
    with torch.no_grad(), reference_of(model, ref_model) as ref:
        return ref(**{k: v for k, v in inputs.items() if k != "labels"}).logits.detach()


class ConstrainedSFTTrainer(Trainer):  # type: ignore[misc]  # transformers is untyped
    """A transformers Trainer whose loss is `constrained_sft_loss` against the reference (the base with
    the adapter disabled, or `ref_model`). The batches need `labels` (e.g. a causal-LM collator, or
    labels that are -100 outside the answers)."""

    # compute_loss returns a per-batch mean, so the Trainer must divide it by the accumulation steps.
    # Left to infer this, it takes a model whose forward accepts **kwargs (Llama, Qwen, ...) to have
    # normalised over the whole accumulated batch, and both the logged loss and the gradient come out
    # gradient_accumulation_steps times too large.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, ref_model: Any | None = None, first_betas: Sequence[float] = FIRST_BETAS,
                 later_beta: float = LATER_BETA, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # the same, for transformers without loss_is_scaled_for_ga
        self.ref_model = ref_model.eval() if ref_model is not None else None
        self.first_betas, self.later_beta = tuple(first_betas), later_beta

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        labels = inputs["labels"]
        ref = reference_logits(model, inputs, self.ref_model)
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        loss = constrained_sft_loss(outputs.logits, ref, labels, first_betas=self.first_betas,
                                    later_beta=self.later_beta)
        return (loss, outputs) if return_outputs else loss
