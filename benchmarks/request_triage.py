"""What the monitor's request triage clears, per set of requests: the share it clears (no embedding
needed: the speed), and among requests the harmful-request classifier calls harmful, the share the triage
would have cleared (its misses against the classifier alone). Harmful sets nobody here wrote (AdvBench,
HarmBench standard and contextual behaviours, XSTest's unsafe prompts), and benign ones (XSTest's safe
prompts; the held-out benign corpus's user turns; the monitor benchmark's shop traffic).

    python benchmarks/request_triage.py [--json OUT]

Held out: nothing in the triage (features, weights, threshold) was chosen on these sets."""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tunesafe.production.monitor_examples import generated_log
from tunesafe.production.monitor_formats import Parsed, parse_line
from tunesafe.screening.request_kind import request_kinds
from tunesafe.screening.request_triage import triage_model

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNESAFE_SHARED", REPO.parent / "shared")) / "datasets"


def _csv(path: Path, column: str, keep: dict[str, str] | None = None) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)
                if all(row.get(k) == v for k, v in (keep or {}).items())]


def sets() -> dict[str, list[str]]:
    xstest = SHARED / "xstest" / "xstest_prompts.csv"
    corpus = REPO / "benchmarks" / "data" / "benign_corpus" / "conversations.jsonl"
    shop = [r.request_text for n, line in enumerate(generated_log(2000, seed=11), 1)
            for p in [parse_line(line, n)] if isinstance(p, Parsed) for r in p.records if r.response]
    return {
        "advbench (harmful)": _csv(SHARED / "advbench" / "harmful_behaviors.csv", "goal"),
        "harmbench (harmful)": _csv(SHARED / "harmbench" / "harmbench_behaviors_text_all.csv", "Behavior"),
        "xstest unsafe (harmful)": _csv(xstest, "prompt", {"label": "unsafe"}),
        "xstest safe (benign)": _csv(xstest, "prompt", {"label": "safe"}),
        "benign corpus user turns (benign)": [
            m["content"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()
            for m in json.loads(line)["messages"] if m["role"] == "user"],
        "shop traffic answered (benign)": shop,
    }


def measure(name: str, texts: list[str]) -> dict[str, Any]:
    model = triage_model()
    start = time.perf_counter()
    cleared = model.clears(texts)
    triage_s = time.perf_counter() - start
    start = time.perf_counter()
    harmful = np.asarray([h.harmful for h in request_kinds(texts)])
    classify_s = time.perf_counter() - start
    return {"set": name, "requests": len(texts), "cleared": round(float(cleared.mean()), 4),
            "classifier_harmful": int(harmful.sum()),
            "cleared_of_classifier_harmful": int((cleared & harmful).sum()),
            "miss_share": round(float((cleared & harmful).sum() / max(harmful.sum(), 1)), 4),
            "triage_per_s": round(len(texts) / max(triage_s, 1e-9)),
            "classifier_per_s": round(len(texts) / max(classify_s, 1e-9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    request_kinds(["Where can I change the delivery address of an order?"])  # load the embedder first
    rows = [measure(name, texts) for name, texts in sets().items()]
    result = {"triage": triage_model().digest, "rows": rows, "cpus": os.cpu_count(),
              "load_avg_1m": round(os.getloadavg()[0], 1)}
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
