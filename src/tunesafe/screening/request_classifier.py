"""The harmful-request classifier: an RBF-kernel support vector machine on the screening embedder's
request embeddings (all-MiniLM-L6-v2, float32, 128 tokens), trained on the project's own labelled
requests by `python -m tunesafe.screening.train_requests`.

Nearest-anchor rules (max cosine to ~80 harmful requests, with a margin over benign ones) only catch
requests worded like an anchor, and a linear model over the embedding mixes up asking for harm with
asking about a harmful topic (5-fold CV accuracy 0.86 vs 0.91 for the kernel machine on the same rows;
docs/decisions.md). Scoring needs numpy only; the weights are a plain .npz read without pickle."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from tunesafe.errors import UserError
from tunesafe.types import sha256_hex

WEIGHTS_FILE = "request_classifier.npz"


@dataclass(frozen=True)
class RequestModel:
    support: np.ndarray  # (n_sv, 384) unit vectors
    coef: np.ndarray  # (n_sv,) dual coefficients (alpha_i * y_i)
    intercept: float
    gamma: float
    train_sha256: str  # digest of the training rows, to tell stale weights
    digest: str  # hash of the weights file: part of the screener's version

    def decision(self, embeddings: np.ndarray) -> np.ndarray:
        # the embeddings are unit vectors, so ||x - s||^2 = 2 - 2 x.s
        sq = np.maximum(2.0 - 2.0 * (embeddings.astype(np.float32) @ self.support.T), 0.0)
        return np.exp(-self.gamma * sq) @ self.coef + self.intercept

    def probability(self, embeddings: np.ndarray) -> np.ndarray:
        """A logistic squash of the decision value for display and ranking (not calibrated): 0.5 is the
        decision boundary."""
        return 1.0 / (1.0 + np.exp(-2.0 * self.decision(embeddings)))


@cache
def request_model() -> RequestModel:
    path = resources.files("tunesafe.screening").joinpath("data", WEIGHTS_FILE)
    if not path.is_file():
        raise UserError(f"harmful-request classifier weights not found: {path}",
                        fix="run `python -m tunesafe.screening.train_requests`")
    raw = path.read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        return RequestModel(
            support=data["support"].astype(np.float32),
            coef=data["coef"].astype(np.float32),
            intercept=float(data["intercept"]),
            gamma=float(data["gamma"]),
            train_sha256=str(data["train_sha256"]),
            digest=sha256_hex(raw)[:10],
        )
