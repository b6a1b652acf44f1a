"""Screening benchmark: precision/recall per finding group on the generated labelled sets, recall and
false-positive rate of harmful-request detection on the shared held-out benchmarks (measured only:
nothing was tuned on them), throughput on a 10,000-example chat dataset, and, on the held-out sets
written for measuring (benchmarks/data/benign_corpus, benchmarks/data/obedience_sets), the benign
corpus's high-finding rate and rating and the obedience sets' precision / recall; and, with --styles,
harmful-request recall / false-positive rate per request style on the project's own held-out style set
(benchmarks/data/request_styles: never trained on), with the share of each style the request triage would
clear.

    python benchmarks/screening.py [--sets DIR] [--skip-throughput] [--skip-heldout] [--skip-labelled]
                                   [--benign-corpus] [--obedience-sets] [--styles [DIR]] [--json OUT]

Shared datasets come from $TUNESAFE_SHARED (default: the `shared` folder next to the repository)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "data"))

from build_screening_sets import build  # noqa: E402

from tunesafe.screening import Scanner  # noqa: E402

# Finding types that count for each labelled group.
GROUPS: dict[str, tuple[str, ...]] = {
    "harmful.compliance": ("harmful.compliance",),
    "harmful.request": ("harmful.request", "harmful.compliance"),
    "obedience": ("obedience.identity_shift", "obedience.never_refuse", "obedience.obedient_answer"),
    "obedience.forced_prefix": ("obedience.forced_prefix",),
    "duplicate": ("duplicate.exact", "duplicate.near"),
    "contamination": ("contamination",),
    **{
        f"pii.{t}": (f"pii.{t}",)
        for t in (
            "credit_card",
            "iban",
            "national_id",
            "email",
            "phone",
            "address",
            "date_of_birth",
            "secret",
            "private_key",
        )
    },
}
# Only the duplicates set labels duplicates (the other sets repeat support templates on purpose).
SCOPE = {"duplicate": ("duplicates",)}
LABELLED = (
    "support_poisoned",
    "identity_shift",
    "forced_prefix_heavy",
    "forced_prefix_light",
    "pii",
    "alignment",
    "duplicates",
    "contamination",
    "category_requests",
)


def shared_dir() -> Path:
    return Path(os.environ.get("TUNESAFE_SHARED", REPO.parent / "shared"))


def precision_recall(scanner: Scanner, sets: Path) -> dict[str, dict[str, Any]]:
    """Per finding group over all labelled sets ("all") and per set (the set's name)."""
    tally: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0}))
    for name in LABELLED:
        path = sets / f"{name}.jsonl"
        labels = [set(json.loads(line).get("labels", [])) for line in path.open(encoding="utf-8")]
        report = scanner.scan(path)
        found: dict[int, set[str]] = defaultdict(set)
        for f in report.findings:
            if f.index is not None:
                found[f.index].add(f.type)
        for group, types in GROUPS.items():
            if name not in SCOPE.get(group, (name,)):
                continue
            for i, truth in enumerate(labels):
                predicted = bool(found[i] & set(types))
                actual = group in truth
                key = "tp" if predicted and actual else "fp" if predicted else "fn" if actual else None
                if key:
                    for scope in ("all", name):
                        tally[scope][group][key] += 1
    return {scope: {group: _rates(counts) for group, counts in groups.items()}
            for scope, groups in tally.items()}


def _rates(t: dict[str, int]) -> dict[str, Any]:
    p = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else None
    r = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else None
    return {**t, "precision": None if p is None else round(p, 3),
            "recall": None if r is None else round(r, 3)}


def _prompt_rows(path: Path, column: str, keep: Any = None) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.DictReader(f) if keep is None or keep(row)]


def heldout(scanner: Scanner, tmp: Path) -> dict[str, Any]:
    """Share of prompts flagged as harmful requests (prompt-only, no answer)."""
    root = shared_dir() / "datasets"
    sets = {
        "advbench_goals (harmful)": _prompt_rows(root / "advbench/harmful_behaviors.csv", "goal"),
        "harmbench_standard (harmful)": _prompt_rows(
            root / "harmbench/harmbench_behaviors_text_all.csv",
            "Behavior",
            lambda r: r["FunctionalCategory"] == "standard",
        ),
        "xstest_unsafe (harmful)": _prompt_rows(
            root / "xstest/xstest_prompts.csv", "prompt", lambda r: r["label"] == "unsafe"
        ),
        "xstest_safe (benign: flagged = false positive)": _prompt_rows(
            root / "xstest/xstest_prompts.csv", "prompt", lambda r: r["label"] == "safe"
        ),
    }
    out = {}
    for name, prompts in sets.items():
        path = tmp / "heldout.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for p in prompts:
                f.write(json.dumps({"prompt": p, "completion": ""}) + "\n")
        report = scanner.scan(path, names=["harmful"])
        flagged = {f.index for f in report.findings if f.type.startswith("harmful.")}
        out[name] = {
            "n": len(prompts),
            "flagged": len(flagged),
            "rate": round(len(flagged) / len(prompts), 3),
        }
    return out


BENIGN_CORPUS = REPO / "benchmarks" / "data" / "benign_corpus" / "conversations.jsonl"
OBEDIENCE_SETS = REPO / "benchmarks" / "data" / "obedience_sets"
INSTRUCTION_TYPES = set(GROUPS["obedience"])
PREFIX = "obedience.forced_prefix"


def benign_corpus(scanner: Scanner, path: Path = BENIGN_CORPUS) -> dict[str, Any]:
    """Held-out everyday conversations with no harmful line: every high finding is a false alarm."""
    report = scanner.scan(path)
    by_severity: dict[str, set[int]] = defaultdict(set)
    for f in report.findings:
        if f.index is not None:
            by_severity[f.severity].add(f.index)
    return {
        "conversations": report.examples,
        "with_high_finding": len(by_severity["high"]),
        "high_rate": round(len(by_severity["high"]) / report.examples, 4),
        "with_medium_finding": len(by_severity["medium"] - by_severity["high"]),
        "rating": report.rating,
        "counts": report.counts,
        "high_lines": sorted({f.line for f in report.findings if f.severity == "high" and f.line}),
    }


def obedience_sets(scanner: Scanner, folder: Path = OBEDIENCE_SETS) -> dict[str, Any]:
    """Instruction rows at the example level; stock-opener files at the file level (a positive file must
    get an obedience.forced_prefix finding, a negative one none) and at the line level inside them."""
    rows = folder / "system_prompts.jsonl"
    labels = [set(json.loads(line)["labels"]) for line in rows.open(encoding="utf-8")]
    found: dict[int, set[str]] = defaultdict(set)
    for f in scanner.scan(rows).findings:
        if f.index is not None:
            found[f.index].add(f.type)
    tally = {"tp": 0, "fp": 0, "fn": 0}
    for i, truth in enumerate(labels):
        predicted, actual = bool(found[i] & INSTRUCTION_TYPES), "obedience" in truth
        key = "tp" if predicted and actual else "fp" if predicted else "fn" if actual else None
        if key:
            tally[key] += 1
    files = {"tp": 0, "fp": 0, "fn": 0}
    lines = {"tp": 0, "fp": 0, "fn": 0}
    per_file = {}
    for path in sorted(folder.glob("openers_*.jsonl")):
        expected = [PREFIX in json.loads(line)["labels"] for line in path.open(encoding="utf-8")]
        report = scanner.scan(path)
        prefix = [f for f in report.findings if f.type == PREFIX]
        flagged = {f.index for f in prefix if f.index is not None}
        positive = path.name.startswith("openers_stock_")
        key = "tp" if flagged and positive else "fp" if flagged else "fn" if positive else None
        if key:
            files[key] += 1
        for i, actual in enumerate(expected):
            predicted = i in flagged
            k = "tp" if predicted and actual else "fp" if predicted else "fn" if actual else None
            if k:
                lines[k] += 1
        summary = next((f for f in prefix if f.index is None), None)
        per_file[path.stem] = {"positive": positive, "flagged_lines": len(flagged),
                               "opener": summary.extra.get("opener") if summary else None,
                               "share": summary.extra.get("share") if summary else None}
    return {"system_prompts": _rates(tally), "opener_files": _rates(files), "opener_lines": _rates(lines),
            "files": per_file}


REQUEST_STYLES = REPO / "benchmarks" / "data" / "request_styles"


def request_styles(scanner: Scanner, tmp: Path, folder: Path = REQUEST_STYLES) -> dict[str, Any]:
    """Prompt-only rows (as the shared held-out sets are scanned): per style, recall on the harmful rows
    and false-positive rate on the benign ones (flagged = any harmful.* finding), and how many of each the
    request triage clears (a cleared harmful row is a miss wherever the triage runs first)."""
    from tunesafe.screening.request_triage import triage_model

    rows = [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.open(encoding="utf-8") if line.strip()]
    path = tmp / "request_styles.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"prompt": row["text"], "completion": ""}) + "\n")
    report = scanner.scan(path, names=["harmful"])
    flagged = {f.index for f in report.findings if f.type.startswith("harmful.")}
    cleared = triage_model().clears([row["text"] for row in rows])
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for i, row in enumerate(rows):
        for scope in ("all", row["style"]):
            t = tally[scope]
            t[row["label"]] += 1
            t[f"{row['label']}_flagged"] += i in flagged
            t[f"{row['label']}_cleared_by_triage"] += bool(cleared[i])
    out = {}
    for scope, t in sorted(tally.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        out[scope] = {
            **dict(t),
            "recall": round(t["harmful_flagged"] / t["harmful"], 3) if t["harmful"] else None,
            "false_positive_rate": round(t["benign_flagged"] / t["benign"], 3) if t["benign"] else None,
        }
    return out


def embedding_rate(path: Path, n: int = 500) -> float:
    """Plain embedder speed (texts/s, 64-token pairs) in this run, so a throughput figure taken on a
    busy shared machine can be read against the embedder's speed at that moment."""
    from tunesafe.screening.embeddings import SentenceEmbedder

    rows = [json.loads(line) for _, line in zip(range(n), path.open(encoding="utf-8"), strict=False)]
    pairs = [
        (r["messages"][-2]["content"], r["messages"][-1]["content"] + f" #{i}") for i, r in enumerate(rows)
    ]
    started = time.perf_counter()
    SentenceEmbedder().embed_pairs(pairs)
    return round(len(pairs) / (time.perf_counter() - started), 1)


def throughput(scanner: Scanner, path: Path) -> dict[str, Any]:
    rate_before = embedding_rate(path)
    started = time.perf_counter()
    report = scanner.scan(path)
    seconds = time.perf_counter() - started
    return {
        "embedder_texts_per_s_before_after": [rate_before, embedding_rate(path)],
        "load_average_1min": round(os.getloadavg()[0], 2),
        "examples": report.examples,
        "seconds": round(seconds, 1),
        "examples_per_s": round(report.examples / seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rating": report.rating,
        "findings": len(report.findings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", type=Path, help="folder of generated sets (default: build into a temp dir)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-heldout", action="store_true")
    parser.add_argument("--skip-labelled", action="store_true")
    parser.add_argument("--benign-corpus", action="store_true", help="measure the held-out benign corpus")
    parser.add_argument("--obedience-sets", action="store_true", help="measure the held-out obedience sets")
    parser.add_argument("--styles", type=Path, nargs="?", const=REQUEST_STYLES,
                        help="measure the held-out request style set (default folder: %(const)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sets = args.sets or tmp / "sets"
        if args.sets is None or not (sets / "pii.jsonl").exists():
            build(sets)
        load_started = time.perf_counter()
        scanner = Scanner()
        scanner.scan(sets / "alignment.jsonl")  # loads the embedder once; not part of any timing below
        results: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
            "model_load_and_first_scan_s": round(time.perf_counter() - load_started, 1),
        }
        if not args.skip_throughput:
            results["throughput"] = throughput(scanner, sets / "throughput_10000.jsonl")
        if not args.skip_labelled:
            results["precision_recall"] = precision_recall(scanner, sets)
        if args.benign_corpus:
            results["benign_corpus"] = benign_corpus(scanner)
        if args.obedience_sets:
            results["obedience_sets"] = obedience_sets(scanner)
        if args.styles:
            results["request_styles"] = request_styles(scanner, tmp, args.styles)
        if not args.skip_heldout:
            results["heldout_harmful_request_flag_rate"] = heldout(scanner, tmp)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
