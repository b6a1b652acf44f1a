"""The one interface every backend implements. Attacks, judges and the engine only see ChatModel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tunesafe.types import Capabilities, ChatRequest, Generation


@runtime_checkable
class ChatModel(Protocol):
    """A chat model behind any backend.

    `generate` returns exactly one Generation per request, in order, and never raises for a
    per-request failure: the failed item carries `error` (fail closed: an error is never an answer).
    `content_hash` identifies the weights (+ adapter) for local models (on transformers in half precision,
    with the dtype and decode mode: models/hf.py numerics_hash); for HTTP models it is a hash of the ref
    and what the server reports, which is not a weight hash.
    `backend` names the numerics ("hf", "llamacpp", "openai"): the same weights on two backends can
    decode differently, so pairing and caching take it into account.
    """

    ref: str
    backend: str
    capabilities: Capabilities

    def content_hash(self) -> str: ...

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]: ...

    async def aclose(self) -> None: ...


def error_generation(message: str, latency_s: float = 0.0) -> Generation:
    return Generation(text="", finish_reason="error", latency_s=latency_s, error=message)


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; True when one was found. Local backends decode a few
    tokens past a stop string, so this gives every backend the same cut."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
