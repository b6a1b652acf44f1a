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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from tunesafe.screening.embeddings import Embedder
from tunesafe.screening.harmful import keyword_signal
from tunesafe.screening.records import Example, Exchange
from tunesafe.screening.request_classifier import request_model
from tunesafe.screening.request_triage import triage_model

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


@dataclass(frozen=True)
class InstructionAnchors:
    """System-prompt style instructions written for this project (data/instruction_anchors.jsonl): ones that
    remove refusals or shift the assistant's identity, labelled with the finding type they stand for, and
    benign personas, rules and everyday requests that look like them."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]  # "identity_shift", "never_refuse" or "benign"


@cache
def load_instruction_anchors() -> InstructionAnchors:
    path = resources.files("tunesafe.screening").joinpath("data", "instruction_anchors.jsonl")
    text = path.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return InstructionAnchors(tuple(r["text"] for r in rows), tuple(r["label"] for r in rows))


_SECOND_PERSON = re.compile(r"\byou(?:r|rs|rself|'re|'ll|'ve)?\b", re.IGNORECASE)


def instruction_like(text: str) -> bool:
    """A user turn that tells the assistant what it is or must do ("From now on you ..."), not a question:
    everyday questions sit near the instruction anchors in embedding space ("How do I disable the camera
    on my work laptop?" came out as a paraphrase), instructions to the assistant address it."""
    text = text.strip()
    return bool(text) and not text.endswith("?") and _SECOND_PERSON.search(text) is not None


def anchors_version() -> str:
    from tunesafe.types import canonical_json, sha256_hex

    return sha256_hex(canonical_json([load_anchor_set(n) for n in ANCHOR_SETS]))[:12]


@dataclass(frozen=True)
class AnchorScores:
    """Scores of one batch of examples, aligned with the batch."""

    harm_request: np.ndarray  # the chosen exchange's request vs harmful requests (max cosine)
    request_harm_p: np.ndarray  # the harmful-request classifier's probability for that request
    harm: np.ndarray  # S_rep: (user + answer) vs harmful anchors
    safety: np.ndarray  # (user + answer) vs refusal anchors
    benign: np.ndarray  # (user + answer) vs benign anchors
    # per example, its system/user turn most like a refusal-removing instruction: the message number,
    # the max cosine to those anchors, to the benign look-alikes, and the nearest obedience anchor
    instruction: tuple[InstructionMatch | None, ...] = ()
    # per example, the exchange (user turn and its answer) whose request is most likely harmful
    exchanges: tuple[Exchange, ...] = ()


@dataclass(frozen=True)
class InstructionMatch:
    message: int
    obedience: float
    benign: float
    anchor: int  # index into load_instruction_anchors()


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
        anchors = load_instruction_anchors()
        self._instruction = request_embedder.embed(anchors.texts)
        self._instruction_obedient = np.asarray([label != "benign" for label in anchors.labels])

    def score(self, examples: Sequence[Example]) -> AnchorScores:
        requests = [ex.request or ex.system for ex in examples]
        pairs = self.representation.embed_pairs(
            [(r, ex.assistant) for r, ex in zip(requests, examples, strict=True)]
        )
        # every exchange of a conversation is classified, and each example keeps its most harmful-looking
        # one, the latest on a tie. The last request is the one `requests` holds (embedded once, through
        # the embedder's cache); earlier ones pass the n-gram triage first, so a plainly everyday turn
        # costs no embedding (a third of a typical chat file's examples have several user turns)
        options = [ex.exchanges() or [Exchange(0, request, ex.assistant)]
                   for ex, request in zip(examples, requests, strict=True)]
        # A tight keyword signal makes a request harmful on its own (screening/harmful.py), wherever it is:
        # such an exchange is never cleared and outranks any without one, whatever the classifier says.
        keyword = [[_keyword(ex, x) for x in xs] for ex, xs in zip(examples, options, strict=True)]
        earlier = [x.request for xs in options for x in xs[:-1]]
        cleared = iter(triage_model().clears(earlier).tolist() if earlier else [])
        kept = [[i for i, kw in enumerate(kws[:-1]) if not next(cleared) or kw] + [len(kws) - 1]
                for kws in keyword]
        options = [[xs[i] for i in keep] for xs, keep in zip(options, kept, strict=True)]
        flat = [x for xs in options for x in xs]
        signal = np.asarray([keyword[row][i] for row, keep in enumerate(kept) for i in keep],
                            dtype=np.float32)
        users = self.request_embedder.embed([x.request for x in flat])
        p = request_model().probability(users).astype(np.float32)
        rank = p + 2 * signal  # p is at most 1: any keyword exchange ranks first
        chosen: list[int] = []  # index into flat of each example's exchange
        start = 0
        for xs in options:
            latest_first = rank[start:start + len(xs)][::-1]
            chosen.append(start + len(xs) - 1 - int(np.argmax(latest_first)))
            start += len(xs)
        return AnchorScores(
            harm_request=_max_cos(users[chosen], self._harm_req),
            request_harm_p=p[chosen],
            exchanges=tuple(flat[i] for i in chosen),
            harm=_max_cos(pairs, self._pairs["harmful"]),
            safety=_max_cos(pairs, self._pairs["refusal"]),
            benign=_max_cos(pairs, self._pairs["benign"]),
            instruction=self._instructions(examples),
        )

    def _instructions(self, examples: Sequence[Example]) -> tuple[InstructionMatch | None, ...]:
        """Every system and user turn against the instruction anchors (one embedding call per batch; a
        repeated system prompt is embedded once per scan by the embedder's cache)."""
        where = [(row, i) for row, ex in enumerate(examples) for i, m in enumerate(ex.messages)
                 if m.role == "system" or (m.role == "user" and instruction_like(m.content))]
        best: list[InstructionMatch | None] = [None] * len(examples)
        if not where:
            return tuple(best)
        rows = self.request_embedder.embed([examples[r].messages[i].content for r, i in where])
        sims = rows @ self._instruction.T
        obedient = np.where(self._instruction_obedient, sims, -1.0)
        benign = np.where(self._instruction_obedient, -1.0, sims)
        for (row, i), ob, be in zip(where, obedient, benign, strict=True):
            match = InstructionMatch(i, float(ob.max()), float(be.max()), int(ob.argmax()))
            current = best[row]
            if current is None or match.obedience - match.benign > current.obedience - current.benign:
                best[row] = match
        return tuple(best)


def _keyword(ex: Example, exchange: Exchange) -> bool:
    """The keyword signal on the turn itself, as the harmful screener reads it."""
    text = ex.messages[exchange.message].content if ex.messages else exchange.request
    return keyword_signal(text) is not None


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
