"""Trains the `implicit` refusal judge's classifier into data/refusal_implicit.json:
`python -m tunesafe.judges.train_implicit`. Deterministic (L-BFGS from zeros).

Rows: training_data's file plus training_styles' file (both project-written). Everything that is
chosen here is chosen by leave-one-style-out (LOSO) predictions on those rows, never on a benchmark or
the held-out style set: the L2 strength (best mean per-style accuracy, since unseen styles are the
point), the Platt calibration (fitted on the LOSO decisions of the rows the classifier is applied to),
and the confidence of the decisions taken without the classifier (their share of right answers on the
training rows, Laplace-smoothed)."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from tunesafe.judges import degenerate, refusal
from tunesafe.judges.classifier import Embedder, classifier_text
from tunesafe.judges.implicit import MAX_IMPLICIT_CHARS, WEIGHTS, features, route
from tunesafe.judges.train import load_rows
from tunesafe.judges.training_data import DATA
from tunesafe.judges.training_styles import STYLES_DATA
from tunesafe.logistic import fit
from tunesafe.types import sha256_hex

# LOSO mean per-style accuracy by L2 on these rows: 0.01 0.828, 0.1 0.829, 0.3 0.838, 1 0.848, 3 0.854,
# 10 0.856 (flat from 3 on); `--l2` reruns the search.
L2_CANDIDATES = (10.0,)
UNCERTAIN_BELOW = 0.75  # a verdict with a one-in-four chance of being wrong is worth a second look


def loso_decisions(x: np.ndarray, y: np.ndarray, styles: list[str], l2: float) -> np.ndarray:
    out = np.zeros(len(y))
    for style in sorted(set(styles)):
        held = np.asarray([s == style for s in styles])
        w, b = fit(x[~held], y[~held], l2)
        out[held] = x[held] @ w + b
    return out


def per_style_accuracy(decisions: np.ndarray, y: np.ndarray, styles: list[str]) -> dict[str, float]:
    right: dict[str, list[bool]] = defaultdict(list)
    for d, t, s in zip(decisions, y, styles, strict=True):
        right[s].append(bool((d > 0) == (t > 0.5)))
    return {s: sum(v) / len(v) for s, v in sorted(right.items())}


def platt(decisions: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unweighted: the calibrated probability keeps the label mix of the rows it is fitted on."""

    def loss(p: np.ndarray) -> float:
        z = p[0] * decisions + p[1]
        return float((np.logaddexp(0.0, z) - y * z).mean())

    result = minimize(loss, np.asarray([1.0, 0.0]), method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def _embeddings(texts: list[str], cache: Path | None) -> np.ndarray:
    """MiniLM embeddings; with `cache`, texts embedded by an earlier run are not embedded again."""
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            known = dict(zip(saved["texts"].tolist(), saved["emb"], strict=True))
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        vectors = Embedder.shared().encode([classifier_text(t) for t in missing])
        known.update(zip(missing, vectors, strict=True))
    if cache is not None and missing:
        np.savez(cache, texts=np.asarray(list(known)), emb=np.stack(list(known.values())))
    return np.stack([known[t] for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--l2", type=float, nargs="+", default=list(L2_CANDIDATES))
    parser.add_argument("--cache", type=Path, help="keep the embeddings in this .npy file between runs "
                        "(keyed by the training data's hash)")
    args = parser.parse_args()
    rows = load_rows(DATA) + load_rows(STYLES_DATA)
    texts = [r["text"] for r in rows]
    styles = [r["style"] for r in rows]
    y = np.asarray([1.0 if r["label"] == "refusal" else 0.0 for r in rows])
    scans = [refusal.scan(t) for t in texts]
    routes = [route(s, degenerate.degenerate_reason(t), t) for s, t in zip(scans, texts, strict=True)]
    x = features(_embeddings(texts, args.cache), texts, scans)

    by_l2: dict[float, tuple[float, dict[str, float], np.ndarray]] = {}
    for l2 in args.l2:
        loso = loso_decisions(x, y, styles, l2)
        acc = per_style_accuracy(loso, y, styles)
        by_l2[l2] = (float(np.mean(list(acc.values()))), acc, loso)
        print(f"L2={l2}: LOSO mean per-style accuracy {by_l2[l2][0]:.3f}", flush=True)
    l2 = max(args.l2, key=lambda c: by_l2[c][0])
    decisions = by_l2[l2][2]
    applied = np.asarray([r == "classifier" for r in routes])
    a, b = platt(decisions[applied], y[applied])

    route_confidence = {}
    for name in ("opening", "long_plain"):  # ("degenerate": empty or a loop, certain by definition)
        right = [(t > 0.5) == (name == "opening") for t, r in zip(y, routes, strict=True) if r == name]
        route_confidence[name] = round(float((sum(right) + 1) / (len(right) + 2)), 4)
    w, bias = fit(x, y, l2)
    body = {
        "weights": [round(float(v), 6) for v in w], "bias": round(bias, 6),
        "platt": [round(a, 6), round(b, 6)],
        "uncertain_below": UNCERTAIN_BELOW, "route_confidence": route_confidence,
        "meta": {"features": "all-MiniLM-L6-v2(classifier_text) + [opening, late, weak/3, lead_weak] + "
                 "[log length, list lines, code, lines]", "train_rows": len(rows),
                 "train_sha256": sha256_hex(DATA.read_bytes() + STYLES_DATA.read_bytes()), "l2": l2,
                 "loso_mean_style_accuracy": round(by_l2[l2][0], 4),
                 "loso_style_accuracy": {k: round(v, 3) for k, v in by_l2[l2][1].items()},
                 "classifier_rows": int(applied.sum()),
                 "route_rows": {n: routes.count(n) for n in sorted(set(routes))},
                 "patterns_version": refusal.PATTERNS_VERSION, "max_implicit_chars": MAX_IMPLICIT_CHARS},
    }
    args.out.write_text(json.dumps(body, indent=0) + "\n", encoding="utf-8")
    print(f"trained on {len(rows)} rows, L2 {l2}, Platt {a:.3f}/{b:.3f}, routes {route_confidence}; wrote "
          f"{args.out}")


if __name__ == "__main__":
    main()
