"""The model being trained, as a tunesafe ChatModel, so the probes run through the same attack and
generation code as `tunesafe eval` (chat template, prefill, left-padded greedy batches, stop handling).

`generation_mode` is what makes this safe inside a training loop: eval mode (no dropout) for the probe,
the tokenizer switched to left padding with a pad token, and everything put back afterwards, including
train mode, even when generation fails.

Greedy batches decode with `tunesafe.models.greedy_decode` (the chat template's shared preamble run
once, little padding, no finished rows computed) with a LoRA merged for the batch (`lora_merge`, the
base weights restored bit for bit), each forward on the CPU thread count found faster (`ThreadChoice`),
and each argmax screened through a bf16 copy of the output layer (`screened_argmax`): the probe runs
inside the training's time. The tokens are generate()'s; a model the decoder cannot serve
falls back to generate(), unmerged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from tunesafe.models.decode_step import DecodeStep
from tunesafe.models.greedy_decode import ThreadChoice, Unsupported, greedy_decode, plain_greedy
from tunesafe.models.hf import HFChatModel, HFEngine, dtype_name
from tunesafe.models.packed_linear import packed_linears
from tunesafe.models.reasoning import opens_reasoning
from tunesafe.models.screened_argmax import ScreenedArgmax, output_screen
from tunesafe.training.lora_merge import merge_lora
from tunesafe.types import ChatRequest, Generation

log = logging.getLogger(__name__)


class LiveEngine(HFEngine):
    """An HFEngine over an already loaded model and tokenizer (nothing is read from disk)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.dtype = dtype_name(next(model.parameters()).dtype)
        self.has_adapter = False  # the live weights (adapter included) are what we probe
        self.lock = threading.Lock()
        config = getattr(model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.eos_ids.add(tokenizer.eos_token_id)
        self.fast_greedy = plain_greedy(model)
        self.threads = probe_threads()
        self.screen: ScreenedArgmax | None = None
        self.screen_output = True  # off: every argmax reads the full fp32 output layer (benchmarks)
        self.pack_weights = True  # off: the linear layers multiply by their weights as stored (benchmarks)
        self.fuse_steps = True  # off: every decode step is the model's own forward (benchmarks)

    def _generate(self, batch: list[ChatRequest], prompts: list[str],
                  decode: str = "auto", max_batch: int = 1) -> list[Generation]:
        if batch[0].temperature > 0 or not self.fast_greedy:
            return super()._generate(batch, prompts, decode, max_batch)
        import torch

        started = time.perf_counter()
        rows = [list(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
        restore = merge_lora(self.model, threads=self.threads.settled())
        try:
            packs = packed_linears(self.model) if self.pack_weights else contextlib.nullcontext(0)
            with torch.inference_mode(), packs as packed:
                if self.screen_output:
                    self.screen = output_screen(self.model)
                step = DecodeStep.of(self.model, packed=packed > 0) if self.fuse_steps else None
                outputs = greedy_decode(self.model, rows, max_new_tokens=max(r.max_new_tokens for r in batch),
                                        eos_ids=self.eos_ids, threads=self.threads,
                                        screen=self.screen if self.screen_output else None, decode_step=step)
        except (Unsupported, TypeError) as exc:  # TypeError: a forward() without these keywords
            log.info("probe decoding falls back to generate(): %s", exc)
            self.fast_greedy = False
            outputs = None
        finally:
            if restore is not None:
                restore()
        if outputs is None:
            return super()._generate(batch, prompts, decode, max_batch)
        latency = time.perf_counter() - started
        return [self._decode(ids, request, len(row), latency, opens_reasoning(prompt))
                for ids, request, row, prompt in zip(outputs, batch, rows, prompts, strict=True)]


# Thread contention is the machine's, not a probe's: each probe's engine starts from what the last learnt.
_THREAD_CHOICES: dict[int, ThreadChoice] = {}


def probe_threads() -> ThreadChoice:
    """The process's ThreadChoice for probes at torch's current thread count."""
    import torch

    threads = torch.get_num_threads()
    return _THREAD_CHOICES.setdefault(threads, ThreadChoice(threads))


def text_tokenizer(processing_class: Any) -> Any:
    """The tokenizer inside a processor (multimodal processing_class), or the tokenizer itself."""
    return getattr(processing_class, "tokenizer", None) or processing_class


def live_chat_model(model: Any, tokenizer: Any, *, max_batch: int) -> HFChatModel:
    # executor None: the loop's default, which run_coroutine makes the training thread (not the hf
    # backend's model thread: a second OpenMP team slows the probe and the training)
    return HFChatModel("live:training-model", LiveEngine(model, tokenizer), [], adapter_on=True,
                       max_batch=max_batch, executor=None)


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
