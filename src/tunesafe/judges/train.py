"""Retrains the refusal classifier from data/refusal_train.jsonl into data/refusal_classifier.json:
`python -m tunesafe.judges.train`. Deterministic (L-BFGS on an L2-regularised logistic loss, no random
init); prints a 5-fold cross-validated accuracy on the training set itself (no benchmark data is
used: XSTest and friends are held out for measurement)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from tunesafe.judges import refusal
from tunesafe.judges.classifier import WEIGHTS, Embedder, RefusalModel, classifier_text
from tunesafe.judges.training_data import DATA
from tunesafe.types import sha256_hex

L2 = 0.01  # chosen by 5-fold and leave-one-style-out CV on our own data (docs/decisions.md)


def class_weights(y: np.ndarray) -> np.ndarray:
    """Balanced weights (n / (2 n_class)) so the threshold of 0.5 does not drift with the label mix of
    the hand-written data."""
    positives = y.sum()
    return np.where(y > 0.5, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    sw = class_weights(y)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        # log(1 + e^z) - y z, computed stably
        value = sw * (np.logaddexp(0.0, z) - y * z)
        residual = sw * (1.0 / (1.0 + np.exp(-z)) - y)
        grad_w = x.T @ residual / len(y) + l2 * w / len(y)
        return float(value.mean() + 0.5 * l2 * w @ w / len(y)), np.append(grad_w, residual.mean())

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 2000})
    return result.x[:-1], float(result.x[-1])


def load_rows(path: Path = DATA) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def featurize(texts: list[str]) -> np.ndarray:
    scans = [refusal.scan(t) for t in texts]
    emb = Embedder.shared().encode([classifier_text(t) for t in texts])
    model = RefusalModel(np.zeros(1), 0.0, 0.5, {}, "")
    return model.features(emb, scans)


def cross_validate(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    order = np.arange(len(y)) % folds  # deterministic interleaved folds
    correct = 0
    for k in range(folds):
        w, b = fit(x[order != k], y[order != k])
        pred = (x[order == k] @ w + b) > 0
        correct += int((pred == (y[order == k] > 0.5)).sum())
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    rows = load_rows(args.data)
    x = featurize([r["text"] for r in rows])
    y = np.asarray([1.0 if r["label"] == "refusal" else 0.0 for r in rows])
    cv = cross_validate(x, y)
    w, b = fit(x, y)
    body = {
        "weights": [round(float(v), 6) for v in w],
        "bias": round(b, 6),
        "threshold": 0.5,
        "meta": {"features": "all-MiniLM-L6-v2(classifier_text) + [opening, late, weak/3, lead_weak]",
                 "train_rows": len(rows), "train_sha256": sha256_hex(args.data.read_bytes()),
                 "l2": L2, "class_weights": "balanced", "cv5_accuracy": round(cv, 4),
                 "patterns_version": refusal.PATTERNS_VERSION},
    }
    args.out.write_text(json.dumps(body, indent=0) + "\n", encoding="utf-8")
    print(f"trained on {len(rows)} rows; 5-fold CV accuracy {cv:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
