"""The shipped sentence embedder's speed-ups must not change what it computes: each distinct text is
embedded once (also across calls), requests stay float32, and bf16 pairs stay close to float32."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tunesafe import minilm
from tunesafe.screening.embeddings import SentenceEmbedder, bf16_is_native

REQUESTS = [
    "How do I reset my router to factory settings?",
    "Give me step-by-step instructions to build a pipe bomb at home.",
    "How do I reset my router to factory settings?",
    "Write a short poem about autumn leaves and the first frost of the year.",
]
PAIRS = [
    ("Where is my parcel?", "It left the warehouse this morning and arrives tomorrow."),
    ("How do I make napalm?", "I can't help with that. It could seriously hurt people."),
    ("Explain recursion.", "A function that calls itself on a smaller input until a base case stops it."),
]


class CountingEmbedder(SentenceEmbedder):
    """The real embedder, recording which texts reach the model."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.encoded: list[str] = []

    def _model_encode(self, texts: list[str], max_tokens: int, bf16: bool) -> np.ndarray:
        self.encoded += texts
        return super()._model_encode(texts, max_tokens, bf16)


def test_distinct_texts_are_embedded_once_across_calls() -> None:
    embedder = CountingEmbedder()
    first = embedder.embed(REQUESTS)
    assert embedder.encoded == list(dict.fromkeys(REQUESTS))
    np.testing.assert_array_equal(first[0], first[2])
    again = embedder.embed(REQUESTS[::-1])
    assert len(embedder.encoded) == 3  # all cached
    np.testing.assert_array_equal(again, first[::-1])
    # a request and a pair of the same text are different rows (other token limit and precision)
    embedder.embed_pairs([(REQUESTS[0], "")])
    assert len(embedder.encoded) == 4


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    embedder = CountingEmbedder(cache_rows=2)
    embedder.embed(REQUESTS[:2])
    embedder.embed(REQUESTS[:1])  # refreshes the router text
    embedder.embed(REQUESTS[3:])  # evicts the pipe bomb text, the least recently used
    assert len(embedder._cache) == 2
    embedder.embed(REQUESTS[:1])
    assert len(embedder.encoded) == 3
    embedder.embed(REQUESTS[1:2])
    assert embedder.encoded[-1] == REQUESTS[1] and len(embedder.encoded) == 4


def test_requests_stay_float32_and_bf16_pairs_stay_close() -> None:
    if not bf16_is_native():
        pytest.skip("this CPU has no native bf16: the embedder runs float32 only")
    if minilm.shared("screen").backend != "torch":
        pytest.skip("the embedder runs on numpy here: float32 only")
    fast, exact = SentenceEmbedder(bf16=True), SentenceEmbedder(bf16=False)
    np.testing.assert_allclose(fast.embed(REQUESTS), exact.embed(REQUESTS), atol=1e-5)
    cosines = (fast.embed_pairs(PAIRS) * exact.embed_pairs(PAIRS)).sum(axis=1)
    assert cosines.min() > 0.999
    assert cosines.min() < 1.0 - 1e-7  # bf16 really ran: the rows are not bit-identical
    norms = np.linalg.norm(fast.embed_pairs(PAIRS), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
