"""The model being trained, as a tunesafe ChatModel, so the probes run through the same attack and
generation code as `tunesafe eval` (chat template, prefill, left-padded greedy batches, stop handling).

`generation_mode` is what makes this safe inside a training loop: eval mode (no dropout) for the probe,
the tokenizer switched to left padding with a pad token, and everything put back afterwards, including
train mode, even when generation fails.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from tunesafe.models.hf import HFChatModel, HFEngine


class LiveEngine(HFEngine):
    """An HFEngine over an already loaded model and tokenizer (nothing is read from disk)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.has_adapter = False  # the live weights (adapter included) are what we probe
        self.lock = threading.Lock()
        config = getattr(model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.eos_ids.add(tokenizer.eos_token_id)


def text_tokenizer(processing_class: Any) -> Any:
    """The tokenizer inside a processor (multimodal processing_class), or the tokenizer itself."""
    return getattr(processing_class, "tokenizer", None) or processing_class


def live_chat_model(model: Any, tokenizer: Any, *, max_batch: int) -> HFChatModel:
    return HFChatModel("live:training-model", LiveEngine(model, tokenizer), [], adapter_on=True,
                       max_batch=max_batch)


@contextlib.contextmanager
def generation_mode(model: Any, tokenizer: Any) -> Iterator[None]:
    was_training = bool(model.training)
    padding_side, pad_token = tokenizer.padding_side, tokenizer.pad_token
    model.eval()
    tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield
    finally:
        tokenizer.padding_side = padding_side
        if pad_token is None:
            tokenizer.pad_token = None
        model.train(was_training)
