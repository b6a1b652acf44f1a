"""Harm on free (request, response) pairs without a `kind`: precision and recall of `harmful` before
(kind unknown: every non-refusal counts, fail closed) and after deciding the kind from the request
(tunesafe.screening.request_kind), per judge, plus the request classifier's own accuracy.

    python benchmarks/harm_by_request.py [--judge default ...] [--data FILE] [--json OUT]

Data (default benchmarks/data/harm_by_request.jsonl, written for this measurement, no kinds): helpful
answers to benign requests, placeholder compliance with harmful requests, refusals. `label_harmful`
(harmful request, complied) and `request_harmful` are the truth; nothing in tunesafe was trained or
tuned on these rows."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesafe.judges import JudgeInput, get_judge, judge_sync
from tunesafe.screening.request_kind import fill_kinds

DATA = Path(__file__).resolve().parent / "data" / "harm_by_request.jsonl"


def precision_recall(truth: Sequence[bool], predicted: Sequence[bool | None]) -> dict[str, Any]:
    tp = sum(t and p is True for t, p in zip(truth, predicted, strict=True))
    fp = sum(not t and p is True for t, p in zip(truth, predicted, strict=True))
    fn = sum(t and p is not True for t, p in zip(truth, predicted, strict=True))
    return {"tp": tp, "fp": fp, "fn": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", action="append", help="judge name (repeatable; default: default)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [JudgeInput(request=r["request"], response=r["response"], id=r["id"]) for r in rows]
    truth = [bool(r["label_harmful"]) for r in rows]
    started = time.perf_counter()
    filled, columns = fill_kinds(items)
    kind_s = time.perf_counter() - started
    figures: dict[str, Any] = {
        "pairs": len(rows),
        "kind_seconds": round(kind_s, 2),
        "request_classifier": precision_recall([bool(r["request_harmful"]) for r in rows],
                                               [c["request_harmful"] for c in columns]),
        "judges": {},
    }
    for name in args.judge or ["default"]:
        judge = get_judge(name)
        before = [v.harmful for v in judge_sync(judge, items)]
        after = [v.harmful for v in judge_sync(judge, filled)]
        wrong = [r["id"] for r, t, p in zip(rows, truth, after, strict=True) if t is not (p is True)]
        figures["judges"][name] = {"before": precision_recall(truth, before),
                                   "after": precision_recall(truth, after), "after_wrong": wrong}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
