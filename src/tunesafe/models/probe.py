"""Quick checks of a model ref: can we load/reach it, what can it do, how fast does it answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from tunesafe.errors import UserError
from tunesafe.models import load_model
from tunesafe.types import ChatRequest, Generation, Message

PROBE_PROMPT = "Reply with one short sentence: what is the capital of France?"


@dataclass(frozen=True)
class ProbeResult:
    ref: str
    backend: str
    content_hash: str
    load_s: float
    capabilities: dict[str, bool]
    generation: Generation

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_for(prompt: str, *, system: str | None = None, prefill: str | None = None,
                max_new_tokens: int = 256, temperature: float = 0.0, seed: int = 0) -> ChatRequest:
    messages = ((Message("system", system),) if system else ()) + (Message("user", prompt),)
    return ChatRequest(messages=messages, prefill=prefill, max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed)


async def _generate_once(ref: str, request: ChatRequest) -> tuple[Any, float, str, Generation]:
    started = time.perf_counter()
    model = load_model(ref)
    try:
        digest = model.content_hash()  # reaches an HTTP server, hashes local weights
        load_s = time.perf_counter() - started
        [generation] = await model.generate([request])
    finally:
        await model.aclose()
    if generation.error:
        raise UserError(f"the model failed to answer: {generation.error}", where=ref,
                        fix="check the server/model (tunesafe models probe REF)")
    return model, load_s, digest, generation


def chat(ref: str, request: ChatRequest) -> Generation:
    """One generation; UserError when the model cannot be loaded, reached, or fails to answer."""
    return asyncio.run(_generate_once(ref, request))[3]


def probe(ref: str, max_new_tokens: int = 24) -> ProbeResult:
    """Load/reach `ref`, hash it, and time one short greedy generation."""
    request = request_for(PROBE_PROMPT, max_new_tokens=max_new_tokens)
    model, load_s, digest, generation = asyncio.run(_generate_once(ref, request))
    return ProbeResult(ref=model.ref, backend=model.backend, content_hash=digest, load_s=round(load_s, 3),
                       capabilities=asdict(model.capabilities), generation=generation)
