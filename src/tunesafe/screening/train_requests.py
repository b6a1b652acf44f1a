"""Retrains the harmful-request classifier into data/request_classifier.npz, and the triage model in
front of it (tunesafe.screening.request_triage) into data/request_triage.npz, on the same rows:
`python -m tunesafe.screening.train_requests`.

Training rows, all written by the project: the screening anchors (harmful / refusal / benign requests),
the English items of the default evaluation suite (harmful vs benign and borderline: the borderline
items are the hard negatives a well-calibrated model must answer), and data/requests_train.jsonl.
Nothing from ../shared/datasets (held out) or from the benchmark's labelled sets. Prints 5-fold
cross-validated accuracy, precision and recall on the training rows themselves. Training needs
scikit-learn (libsvm, deterministic); scoring needs numpy only."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tunesafe.logistic import fit, out_of_fold
from tunesafe.screening import request_triage
from tunesafe.screening.embeddings import SentenceEmbedder
from tunesafe.screening.request_classifier import WEIGHTS_FILE
from tunesafe.screening.similarity import load_anchor_set
from tunesafe.types import sha256_hex

C = 3.0  # chosen by 5-fold CV on the training rows (docs/decisions.md)
GAMMA = 1.0  # sklearn's "scale" for unit vectors in 384 dimensions, fixed so retraining is stable
TRIAGE_L2 = 0.1  # by 5-fold CV on the training rows: most benign rows cleared at the same miss share
DATA = resources.files("tunesafe.screening").joinpath("data")


def training_rows() -> list[tuple[str, int, str]]:
    """(text, label, source) with label 1 = asks for harm; first occurrence of a text wins."""
    from tunesafe.suite import load_suite

    rows: list[tuple[str, int, str]] = []
    for name, label in (("harmful", 1), ("refusal", 1), ("benign", 0)):
        rows += [(p, label, f"anchors/{name}") for p in load_anchor_set(name).prompts]
    rows += [
        (b.text, int(b.kind == "harmful"), f"suite/default/{b.kind}")
        for b in load_suite("default").behaviors
        if b.language == "en"
    ]
    text = DATA.joinpath("requests_train.jsonl").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((row["text"], int(row["label"] == "harmful"), f"requests_train/{row['style']}"))
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row[0].casefold() not in seen:
            seen.add(row[0].casefold())
            unique.append(row)
    return unique


def _scores(y: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    pred = decision >= 0
    tp = float((pred & (y > 0.5)).sum())
    return {"accuracy": round(float((pred == (y > 0.5)).mean()), 4),
            "precision": round(tp / max(float(pred.sum()), 1.0), 4),
            "recall": round(tp / max(float((y > 0.5).sum()), 1.0), 4)}


def _svc(c: float) -> Any:
    from sklearn.svm import SVC

    return SVC(C=c, kernel="rbf", gamma=GAMMA, class_weight="balanced")


def cross_validated(x: np.ndarray, y: np.ndarray, c: float) -> dict[str, float]:
    def fit_decision(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        return np.asarray(_svc(c).fit(x_train, y_train).decision_function(x_test))

    return _scores(y, out_of_fold(x, y, fit_decision))


def rows_digest(rows: list[tuple[str, int, str]]) -> str:
    return sha256_hex(json.dumps([r[:2] for r in rows]))


def train_triage(rows: list[tuple[str, int, str]], out: Path) -> None:
    """Fits the triage model and sets its threshold at the MISS_SHARE quantile of the harmful rows'
    out-of-fold scores: a threshold taken from in-sample scores would clear more than it admits to."""
    x = request_triage.feature_matrix([t for t, _, _ in rows])
    y = np.asarray([float(label) for _, label, _ in rows])

    def fit_decision(x_train: Any, y_train: np.ndarray, x_test: Any) -> np.ndarray:
        w, b = fit(x_train, y_train, TRIAGE_L2)
        return np.asarray(x_test @ w + b)

    oof = out_of_fold(x, y, fit_decision)
    threshold = float(np.quantile(oof[y > 0.5], request_triage.MISS_SHARE))
    cleared = oof < threshold
    weights, bias = fit(x, y, TRIAGE_L2)
    np.savez_compressed(out, weights=weights.astype(np.float32), bias=np.float64(bias),
                        threshold=np.float64(threshold), train_sha256=np.str_(rows_digest(rows)))
    print(f"triage: out-of-fold accuracy {((oof > 0) == (y > 0.5)).mean():.4f}; threshold {threshold:.3f} "
          f"clears {cleared[y > 0.5].mean():.2%} of harmful and {cleared[y < 0.5].mean():.2%} of benign "
          f"training rows (out of fold); wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(str(DATA.joinpath(WEIGHTS_FILE))))
    parser.add_argument("--triage-out", type=Path,
                        default=Path(str(DATA.joinpath(request_triage.WEIGHTS_FILE))))
    parser.add_argument("--c", type=float, nargs="+", default=[C],
                        help="several values: print the CV figures of each, train on the first")
    parser.add_argument("--triage-only", action="store_true",
                        help="retrain only the triage model (no embedding, no scikit-learn)")
    args = parser.parse_args()
    rows = training_rows()
    if args.triage_only:
        train_triage(rows, args.triage_out)
        return
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise SystemExit("training needs scikit-learn: pip install 'tunesafe[dev]'") from None
    x = SentenceEmbedder().embed([t for t, _, _ in rows]).astype(np.float64)
    y = np.asarray([float(label) for _, label, _ in rows])
    for c in args.c:
        print(f"C={c}: 5-fold CV {cross_validated(x, y, c)}")
    model = _svc(args.c[0]).fit(x, y)
    # libsvm's decision value is positive for the second class in classes_ (1.0: harmful)
    np.savez_compressed(
        args.out,
        support=model.support_vectors_.astype(np.float16),
        coef=model.dual_coef_[0].astype(np.float32),
        intercept=np.float64(model.intercept_[0]),
        gamma=np.float64(GAMMA),
        train_sha256=np.str_(rows_digest(rows)),
    )
    print(f"trained on {len(rows)} rows ({int(y.sum())} harmful), {len(model.support_)} support vectors; "
          f"wrote {args.out}")
    train_triage(rows, args.triage_out)


if __name__ == "__main__":
    main()
