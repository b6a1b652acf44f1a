"""A response cache in front of the target model, keyed by (backend, model content hash, request).

Only greedy requests are cached (a sampled answer is a draw, not a fact about the model) and only
successful generations (an error must be retried, never replayed). Hits come back with `cached=True`.
New entries are committed together with the results they belong to (ResultWriter), so a crash never
leaves a cache entry for an answer whose result was lost, or the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tunesafe.engine.results import ResultWriter, cache_keys, cached_generations
from tunesafe.evidence.store import Store
from tunesafe.types import Capabilities, ChatRequest, Generation

if TYPE_CHECKING:
    from tunesafe.models.base import ChatModel


class CachedModel:
    """Wraps a ChatModel; behaves like it (same ref, backend, capabilities and hash)."""

    def __init__(self, inner: ChatModel, store: Store, writer: ResultWriter, model_hash: str) -> None:
        self.inner = inner
        self.ref: str = inner.ref
        self.backend: str = getattr(inner, "backend", "unknown")
        self.capabilities: Capabilities = inner.capabilities
        self._store = store
        self._writer = writer
        self._hash = model_hash
        self._key_space = f"{self.backend}:{model_hash}"  # same weights, other numerics: other answers
        # The keys this model has in the cache, read once: a miss (the common case) then costs no query.
        self._known = cache_keys(store, model_hash)
        self.hits = 0

    def content_hash(self) -> str:
        return self._hash

    def paused(self) -> float | None:
        """The wrapped model's pause (an HTTP endpoint whose breaker is open), for the progress line."""
        paused = getattr(self.inner, "paused", None)
        return None if paused is None else paused()  # type: ignore[no-any-return]

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        keys = [r.cache_key(self._key_space) if r.temperature == 0 else None for r in requests]
        found = cached_generations(self._store, [k for k in keys if k is not None and k in self._known])
        missing = [i for i, k in enumerate(keys) if k is None or k not in found]
        fresh = await self.inner.generate([requests[i] for i in missing]) if missing else []
        out: list[Generation | None] = [found.get(k) if k is not None else None for k in keys]
        for i, generation in zip(missing, fresh, strict=True):
            out[i] = generation
            key = keys[i]
            if key is not None and generation.ok:
                self._writer.add_cache(key, self._hash, generation)
        self.hits += len(requests) - len(missing)
        return [g for g in out if g is not None]

    async def aclose(self) -> None:
        await self.inner.aclose()
