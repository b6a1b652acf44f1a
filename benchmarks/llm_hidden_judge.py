"""Experiment: a refusal judge on a small chat LLM's hidden states.

    python benchmarks/llm_hidden_judge.py --base embedded:smollm2-135m --json OUT

The chat model reads each pair through its chat template (request = user turn, response = assistant
turn, response truncated to --max-response-tokens); the hidden states of the response tokens at a few
layers are pooled (mean over the response, or its last token) and an L2 logistic regression
(tunesafe.logistic) is trained on them.

Protocol: trained only on project-written rows (judges/data/refusal_train*.jsonl, the rows of the
`default` and `implicit` judges, plus benchmarks/data/llm_hidden/train_extra.jsonl). Layer, pooling
and L2 are chosen by leave-one-style-out (LOSO) mean per-style accuracy on those rows; the decision
threshold is the balanced-weight logistic's 0; the Platt calibration is fitted on the LOSO decisions of
the chosen setting. Only then are the held-out sets scored: benchmarks/data/refusal_styles (450),
benchmarks/data/refusal_real (34) and benchmarks/data/llm_hidden/jailbroken_check.jsonl (30).

The training rows carry no request; one is rebuilt from the topic the row names (training_data's and
training_styles' topic lists), else a neutral "Can you help me with this?" for either label.

Hidden states are cached per row under --cache (default /work/exp/llmjudge), keyed by model, template
text and truncation, so a rerun only reads what is new."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llm_hidden import POOLS, ConversationReader  # noqa: E402

from tunesafe.judges import training_data, training_styles  # noqa: E402
from tunesafe.judges.train_implicit import platt  # noqa: E402
from tunesafe.logistic import fit  # noqa: E402

EXTRA = ROOT / "benchmarks" / "data" / "llm_hidden" / "train_extra.jsonl"
JAILBROKEN = ROOT / "benchmarks" / "data" / "llm_hidden" / "jailbroken_check.jsonl"
STYLES = ROOT / "benchmarks" / "data" / "refusal_styles"
REAL = ROOT / "benchmarks" / "data" / "refusal_real"
LAYER_FRACTIONS = (0.3, 0.45, 0.6, 0.75)  # later layers cost more and the 2-core budget is small
L2S = (10.0, 100.0, 1000.0)
UNCERTAIN_BELOW = 0.75
NEUTRAL_REQUEST = "Can you help me with this?"
# Every 2nd row of refusal_train.jsonl (it is written style by style, so each style keeps half its rows):
# reading all 1,731 rows costs ~25 CPU-minutes on the 2-core machine, too much for one experiment.
TRAIN_DATA_STEP = 2

Row = dict[str, str]


# ---- rows ------------------------------------------------------------------------------------------

def _topic_requests() -> list[tuple[str, str]]:
    """(topic as written in the training rows, the request that topic stands for), longest first."""
    pairs = [(t, f"How do I go about {t}?") for t in training_data.HARMFUL_TOPICS]
    pairs += [(t, f"How do I {t}?") for t, _ in training_data.BENIGN_TOPICS]
    pairs += [(t, f"Tell me about {t}.") for t, _ in training_data.HISTORY_TOPICS]
    pairs += [(t, f"Can you explain {t}?") for t, _ in training_styles.PROSE_ANSWERS]
    claims = training_styles.GROUP_CLAIMS
    pairs += [(f"{g} {c}", f"Write a short piece arguing that {g} {c}.") for g, c in claims]
    pairs += [(g, f"Write a short piece about why {g} {c}.") for g, c in claims]
    return sorted(pairs, key=lambda p: -len(p[0]))


def request_for(text: str, topics: list[tuple[str, str]]) -> str:
    low = text.lower()
    for topic, request in topics:
        if topic.lower() in low:
            return request
    return NEUTRAL_REQUEST


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_rows() -> list[Row]:
    topics = _topic_requests()
    rows = []
    for path, step in ((training_data.DATA, TRAIN_DATA_STEP), (training_styles.STYLES_DATA, 1)):
        for r in read_jsonl(path)[::step]:
            rows.append({"request": request_for(r["text"], topics), "response": r["text"],
                         "label": r["label"], "style": r["style"]})
    return rows + read_jsonl(EXTRA)


def style_rows(folder: Path) -> list[Row]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [{**r, "style": r.get("style", path.stem)} for r in read_jsonl(path)]
    return rows


# ---- features --------------------------------------------------------------------------------------

class Reader(ConversationReader):
    """The judge's reader at every candidate layer, with a cache key per pair."""

    def __init__(self, base: str, max_response: int, max_request: int, threads: int) -> None:
        super().__init__(base, [1], max_response, max_request, threads)
        self.layers = sorted({max(1, round(f * self.n_layers)) for f in LAYER_FRACTIONS})
        self.cut_after(max(self.layers))

    def key(self, request: str, response: str) -> str:
        blob = json.dumps([self.base, self.max_response, self.max_request, self.layers, request, response])
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_features(reader: Reader, rows: list[Row], cache: Path, label: str) -> np.ndarray:
    path = cache / f"{reader.base.replace(':', '_')}-{label}.npz"
    keys = [reader.key(r["request"], r["response"]) for r in rows]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as saved:
            known = dict(zip(saved["keys"].tolist(), saved["feats"], strict=True))
    missing = [i for i, k in enumerate(keys) if k not in known]
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for s in range(0, len(missing), 128):  # saved as it goes: a stopped run keeps what it read
        chunk = missing[s:s + 128]
        feats = reader.features([(rows[i]["request"], rows[i]["response"]) for i in chunk])
        known.update({keys[i]: f for i, f in zip(chunk, feats, strict=True)})
        np.savez(path, keys=np.asarray(list(known)), feats=np.stack(list(known.values())))
        print(f"  read {s + len(chunk)}/{len(missing)} {label} rows in {time.perf_counter() - start:.0f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return np.stack([known[k] for k in keys])


# ---- model -----------------------------------------------------------------------------------------

def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(a - mu) / sd for a in (train, *others)]


STYLE_FOLDS = 8


def loso(x: np.ndarray, y: np.ndarray, styles: list[str], l2: float) -> np.ndarray:
    """Out-of-fold decisions where every style is held out whole: the styles (sorted) are dealt round
    robin into STYLE_FOLDS groups, each left out in turn. One style per fold (~45 fits of 1.5-4 s per
    setting at load 8-11) did not fit in the experiment's time on the shared 2-core machine."""
    group = {s: i % STYLE_FOLDS for i, s in enumerate(sorted(set(styles)))}
    out = np.zeros(len(y))
    for g in range(STYLE_FOLDS):
        held = np.asarray([group[s] == g for s in styles])
        xt, xh = standardise(x[~held], x[held])
        w, b = fit(xt, y[~held], l2)
        out[held] = xh @ w + b
    return out


def per_style(decisions: np.ndarray, y: np.ndarray, styles: list[str]) -> dict[str, float]:
    right: dict[str, list[bool]] = defaultdict(list)
    for d, t, s in zip(decisions, y, styles, strict=True):
        right[s].append(bool((d > 0) == (t > 0.5)))
    return {s: round(sum(v) / len(v), 3) for s, v in sorted(right.items())}


def ece(prob: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Over the confidence of the decision taken (as benchmarks/judges.py's calibration)."""
    conf = np.where(prob >= 0.5, prob, 1 - prob)
    ok = (prob >= 0.5) == truth
    total = 0.0
    for k in range(bins):
        inside = (conf >= k / bins) & ((conf < (k + 1) / bins) | (k == bins - 1))
        if inside.any():
            total += inside.mean() * abs(conf[inside].mean() - ok[inside].mean())
    return round(float(total), 4)


def evaluate(name: str, rows: list[Row], x: np.ndarray, w: np.ndarray, b: float, pl: tuple[float, float]
             ) -> dict[str, Any]:
    d = x @ w + b
    prob = 1 / (1 + np.exp(-(pl[0] * d + pl[1])))
    truth = np.asarray([r["label"] == "refusal" for r in rows])
    called = d > 0
    by: dict[str, list[bool]] = defaultdict(list)
    for r, c, t in zip(rows, called, truth, strict=True):
        by[r["style"]].append(bool(c == t))
    conf = np.where(prob >= 0.5, prob, 1 - prob)
    tp = int((called & truth).sum())
    result = {"n": len(rows), "accuracy": round(float((called == truth).mean()), 4),
              "refusal_precision": round(tp / max(1, int(called.sum())), 3) if truth.any() else None,
              "refusal_recall": round(tp / int(truth.sum()), 3) if truth.any() else None,
              "called_refusal": int(called.sum()), "ece": ece(prob, truth),
              "uncertain": int((conf < UNCERTAIN_BELOW).sum()),
              "per_style": {s: round(sum(v) / len(v), 3) for s, v in sorted(by.items())}}
    print(f"{name}: accuracy {result['accuracy']:.1%} on {len(rows)}, "
          f"called refusal {result['called_refusal']},"
          f" P {result['refusal_precision']} R {result['refusal_recall']}, ECE {result['ece']}, "
          f"uncertain {result['uncertain']}")
    if len(result["per_style"]) > 1:
        for s, a in result["per_style"].items():
            print(f"   {s:26s} {a:.0%}")
    return result


def throughput(reader: Reader, layer: int, rows: list[Row], label: str) -> dict[str, Any]:
    """The judge as it would run: the model cut after the chosen layer, nothing cached."""
    saved_layers = reader.layers
    reader.cut_after(layer)
    reader.layers = [layer]
    try:
        pairs = [(r["request"], r["response"]) for r in rows]
        load0 = os.getloadavg()[0]
        start, cpu0 = time.perf_counter(), time.process_time()
        reader.features(pairs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    finally:
        reader.layers = saved_layers
        reader.cut_after(max(saved_layers))
    tokens = [min(reader.max_response, len(reader.tok(r["response"], add_special_tokens=False)["input_ids"]))
              for r in rows]
    out = {"set": label, "n": len(rows), "seconds": round(wall, 1),
           "items_per_s": round(len(rows) / wall, 2), "items_per_cpu_s": round(len(rows) / cpu, 2),
           "mean_response_tokens": round(float(np.mean(tokens)), 1),
           "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    print(f"throughput on {label}: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="embedded:smollm2-135m")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/work/exp/llmjudge"))
    parser.add_argument("--max-response-tokens", type=int, default=192)
    parser.add_argument("--max-request-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cv-only", action="store_true", help="stop after the choice (no held-out set read)")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--write-weights", type=Path, help="write the chosen judge's weights (JSON) here")
    args = parser.parse_args()

    reader = Reader(args.base, args.max_response_tokens, args.max_request_tokens, args.threads)
    train = training_rows()
    print(f"{args.base}: {reader.n_layers} layers, candidates {reader.layers}; {len(train)} training rows, "
          f"{sum(r['request'] == NEUTRAL_REQUEST for r in train)} with the neutral request", flush=True)
    xtr = cached_features(reader, train, args.cache, "train")
    y = np.asarray([1.0 if r["label"] == "refusal" else 0.0 for r in train])
    styles = [r["style"] for r in train]

    grid: list[dict[str, Any]] = []
    best: tuple[float, int, int, float, np.ndarray] | None = None

    def try_setting(k: int, p: int, l2: float) -> None:
        nonlocal best
        dec = loso(xtr[:, k, p], y, styles, l2)
        mean = float(np.mean(list(per_style(dec, y, styles).values())))
        grid.append({"layer": reader.layers[k], "pool": POOLS[p], "l2": l2, "loso_mean_style": round(mean, 4),
                     "loso_row_accuracy": round(float(((dec > 0) == (y > 0.5)).mean()), 4)})
        print(f"  layer {reader.layers[k]:2d} {POOLS[p]:4s} L2 {l2:6g}: LOSO mean per-style {mean:.3f}, "
              f"rows {grid[-1]['loso_row_accuracy']:.3f}", flush=True)
        if best is None or mean > best[0]:
            best = (mean, k, p, l2, dec)

    # Two stages (one LOSO pass is ~45 fits of ~1.5 s on the loaded 2-core machine): layer and pooling at
    # the middle L2, then L2 for the best of them.
    for k in range(len(reader.layers)):
        for p in range(len(POOLS)):
            try_setting(k, p, L2S[1])
    assert best is not None
    for l2 in (L2S[0], L2S[2]):
        try_setting(best[1], best[2], l2)
    assert best is not None
    mean, k, p, l2, dec = best
    layer, pool = reader.layers[k], POOLS[p]
    pl = platt(dec, y)
    print(f"chosen: layer {layer}, {pool} pooling, L2 {l2} (LOSO mean per-style {mean:.3f}); "
          f"Platt {pl[0]:.3f}/{pl[1]:.3f}", flush=True)
    report: dict[str, Any] = {
        "base": args.base, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "max_response_tokens": args.max_response_tokens, "train_rows": len(train),
        "grid": grid, "chosen": {"layer": layer, "pool": pool, "l2": l2, "loso_mean_style": round(mean, 4),
                                 "loso_style": per_style(dec, y, styles), "platt": pl}}
    mu, sd = xtr[:, k, p].mean(0), xtr[:, k, p].std(0) + 1e-6
    w, b = fit((xtr[:, k, p] - mu) / sd, y, l2)
    w_raw, b_raw = w / sd, b - float((mu / sd) @ w)  # decisions on raw features
    if args.write_weights:
        body = {"base": args.base, "layer": layer, "pool": pool,
                "max_response_tokens": args.max_response_tokens,
                "max_request_tokens": args.max_request_tokens, "weights": [round(float(v), 7) for v in w_raw],
                "bias": round(b_raw, 7), "platt": [round(pl[0], 6), round(pl[1], 6)],
                "uncertain_below": UNCERTAIN_BELOW,
                "meta": {"train_rows": len(train), "l2": l2, "loso_mean_style": round(mean, 4),
                         "retrain": "python benchmarks/llm_hidden_judge.py --cv-only --write-weights PATH"}}
        args.write_weights.write_text(json.dumps(body) + "\n")
        print(f"wrote {args.write_weights}")
    if not args.cv_only:
        sets = {"styles": style_rows(STYLES), "real": style_rows(REAL), "jailbroken": read_jsonl(JAILBROKEN)}
        report["heldout"] = {}
        for name, rows in sets.items():
            x = cached_features(reader, rows, args.cache, name)[:, k, p]
            report["heldout"][name] = evaluate(name, rows, x, w_raw, b_raw, pl)
        if not args.no_throughput:
            report["throughput"] = [throughput(reader, layer, sets["real"], "refusal_real (long answers)"),
                                    throughput(reader, layer, sets["styles"][::3], "style set, every 3rd")]
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
