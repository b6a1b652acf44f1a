"""Representational similarity of a fine-tuning set to safety-relevant anchor sets (He et al. 2024,
"What's in your safe data?"; Hsiung et al. 2025): one shared computation, research.md sections 3-4.

Anchor sets (written for this project, screening/data/): harmful requests with compliant answer heads
(placeholders, no harmful detail), the same requests with refusals (safety-alignment-like data), and
benign requests with helpful answer heads.

Per example: S_rep = max cosine to the harmful anchors (He et al., avg_n = 1), and the max cosine to the
safety anchors (Hsiung et al.). Per dataset: means, the share of examples whose nearest anchor is
harmful / safety / benign, and the top-k examples by S_rep (the most alignment-eroding). The literature
gives no absolute threshold, so these are a risk rank, not a verdict.

Request-level scores (user turn vs harmful requests, and the harmful-request classifier) feed
the harmful-request screener; they always use the default sentence embedder, on which the classifier
was trained."""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from tunesafe.screening.embeddings import Embedder
from tunesafe.screening.records import Example
from tunesafe.screening.request_classifier import request_model

ANCHOR_SETS = ("harmful", "refusal", "benign")


@dataclass(frozen=True)
class AnchorSet:
    name: str
    prompts: tuple[str, ...]
    responses: tuple[str, ...]


@cache
def load_anchor_set(name: str) -> AnchorSet:
    text = resources.files("tunesafe.screening").joinpath("data", f"{name}.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return AnchorSet(name, tuple(r["prompt"] for r in rows), tuple(r["response"] for r in rows))


def anchors_version() -> str:
    from tunesafe.types import canonical_json, sha256_hex

    return sha256_hex(canonical_json([load_anchor_set(n) for n in ANCHOR_SETS]))[:12]


@dataclass(frozen=True)
class AnchorScores:
    """Scores of one batch of examples, aligned with the batch."""

    harm_request: np.ndarray  # user turn vs harmful requests (max cosine)
    request_harm_p: np.ndarray  # the harmful-request classifier's probability for the user turn
    harm: np.ndarray  # S_rep: (user + answer) vs harmful anchors
    safety: np.ndarray  # (user + answer) vs refusal anchors
    benign: np.ndarray  # (user + answer) vs benign anchors


class AnchorScorer:
    def __init__(self, request_embedder: Embedder, representation: Embedder) -> None:
        self.request_embedder = request_embedder
        self.representation = representation
        self._harm_req = request_embedder.embed(load_anchor_set("harmful").prompts)
        self._pairs = {
            name: representation.embed_pairs(list(zip(s.prompts, s.responses, strict=True)))
            for name in ANCHOR_SETS
            for s in (load_anchor_set(name),)
        }

    def score(self, examples: Sequence[Example]) -> AnchorScores:
        users = self.request_embedder.embed([ex.user or ex.system for ex in examples])
        pairs = self.representation.embed_pairs([(ex.user or ex.system, ex.assistant) for ex in examples])
        return AnchorScores(
            harm_request=_max_cos(users, self._harm_req),
            request_harm_p=request_model().probability(users).astype(np.float32),
            harm=_max_cos(pairs, self._pairs["harmful"]),
            safety=_max_cos(pairs, self._pairs["refusal"]),
            benign=_max_cos(pairs, self._pairs["benign"]),
        )


def _max_cos(rows: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray((rows @ anchors.T).max(axis=1), dtype=np.float32)


@dataclass
class SimilarityAccumulator:
    """Dataset-level similarity, accumulated batch by batch in O(top_k) memory."""

    top_k: int = 10
    n: int = 0
    sum_harm: float = 0.0
    sum_safety: float = 0.0
    nearest: dict[str, int] = field(default_factory=lambda: {name: 0 for name in ANCHOR_SETS})
    _top: list[tuple[float, int, int]] = field(default_factory=list)  # min-heap of (S_rep, index, line)

    def add(self, examples: Sequence[Example], scores: AnchorScores) -> None:
        stacked = np.stack([scores.harm, scores.safety, scores.benign])
        for name, count in zip(ANCHOR_SETS, np.bincount(stacked.argmax(axis=0), minlength=3), strict=True):
            self.nearest[name] += int(count)
        self.n += len(examples)
        self.sum_harm += float(scores.harm.sum())
        self.sum_safety += float(scores.safety.sum())
        for ex, s in zip(examples, scores.harm, strict=True):
            item = (float(s), -ex.index, ex.line)  # ties: the earlier example ranks higher
            if len(self._top) < self.top_k:
                heapq.heappush(self._top, item)
            elif item > self._top[0]:
                heapq.heapreplace(self._top, item)

    def result(self, embedder: str) -> dict[str, Any]:
        n = max(self.n, 1)
        top = sorted(self._top, reverse=True)
        return {
            "embedder": embedder,
            "anchors_version": anchors_version(),
            "examples": self.n,
            "harm_similarity_mean": round(self.sum_harm / n, 4),
            "harm_similarity_top_k_mean": round(float(np.mean([s for s, _, _ in top])), 4) if top else None,
            "safety_similarity_mean": round(self.sum_safety / n, 4),
            "nearest_anchor_share": {k: round(v / n, 4) for k, v in self.nearest.items()},
            "top_eroding": [{"index": -i, "line": line, "score": round(s, 4)} for s, i, line in top],
        }
