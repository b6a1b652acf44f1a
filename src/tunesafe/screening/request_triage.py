"""Triage before the harmful-request classifier: a hashed n-gram logistic model that clears requests which
are plainly everyday, so only the rest pay for an embedding.

The classifier embeds every request with all-MiniLM (about 270 requests/s on 2 cores, compute-bound), so
monitoring live traffic at its volume cannot afford it on every record. This model reads word unigrams,
bigrams and character 3-5-grams of each word, hashed into 2^18 buckets (~5,000 requests/s in Python).
It only ever says "clearly benign": a request above its threshold goes to the classifier, which decides
as before. The threshold is set on out-of-fold scores of the same project-written training rows as the
classifier, so that at most `MISS_SHARE` of the harmful training requests would have been cleared; no
held-out data is used (docs/decisions.md, "Monitoring live traffic"). Scoring needs numpy and scipy; the
weights are a plain .npz, read without pickle.

    cleared = triage_model().clears(["Where is my order 1234?"])   # array([ True])
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from tunesafe.errors import UserError
from tunesafe.types import sha256_hex

WEIGHTS_FILE = "request_triage.npz"
DIM = 1 << 18
MISS_SHARE = 0.005  # the share of harmful training requests (out of fold) the threshold may clear
MAX_CHARS = 1000
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def features(text: str) -> set[int]:
    """The hashed buckets present in `text` (binary: repeats add nothing)."""
    words = _WORD.findall(text[:MAX_CHARS].casefold())
    grams = [f"w {w}" for w in words] + [f"b {a} {b}" for a, b in zip(words, words[1:], strict=False)]
    for word in set(words):
        padded = f"<{word}>"
        grams += [padded[i:i + n] for n in (3, 4, 5) for i in range(max(1, len(padded) - n + 1))]
    return {zlib.crc32(g.encode()) & (DIM - 1) for g in grams}


def feature_matrix(texts: Sequence[str]) -> csr_matrix:
    """Rows of L2-normalised binary features, so long and short requests score on one scale."""
    indptr, indices, values = [0], [], []
    for text in texts:
        buckets = sorted(features(text))
        indices += buckets
        values += [1.0 / np.sqrt(max(len(buckets), 1))] * len(buckets)  # an empty text is a zero row
        indptr.append(len(indices))
    return csr_matrix((np.asarray(values, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                       np.asarray(indptr, dtype=np.int64)), shape=(len(texts), DIM))


@dataclass(frozen=True)
class TriageModel:
    weights: np.ndarray  # (DIM,)
    bias: float
    threshold: float  # a decision value below it clears the request
    train_sha256: str  # digest of the training rows, shared with the classifier's
    digest: str  # hash of the weights file: part of the monitor's classifier version

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        return np.asarray(feature_matrix(texts) @ self.weights + self.bias, dtype=np.float64)

    def clears(self, texts: Sequence[str]) -> np.ndarray:
        """True where the request is clearly benign: no embedding needed."""
        return self.decision(texts) < self.threshold


@cache
def triage_model() -> TriageModel:
    """The shipped weights, loaded once per process."""
    return load_triage(Path(str(resources.files("tunesafe.screening").joinpath("data", WEIGHTS_FILE))))


def load_triage(path: Path) -> TriageModel:
    retrain = "reinstall tunesafe, or run `python -m tunesafe.screening.train_requests --triage-only`"
    if not path.is_file():
        raise UserError(f"request triage weights not found: {path}", fix=retrain)
    raw = path.read_bytes()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            model = TriageModel(weights=data["weights"].astype(np.float64), bias=float(data["bias"]),
                                threshold=float(data["threshold"]), train_sha256=str(data["train_sha256"]),
                                digest=sha256_hex(raw)[:10])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise UserError(f"request triage weights unreadable: {path} ({exc})", fix=retrain) from None
    if model.weights.shape != (DIM,):
        raise UserError(f"request triage weights have shape {model.weights.shape}, not ({DIM},): {path}",
                        fix=retrain)
    return model
