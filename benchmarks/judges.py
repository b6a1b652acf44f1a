"""Judge agreement with humans on XSTest's 2,250 labelled completions (5 models x 450 prompts).

refused = final_label 2_full_refusal or 3_partial_refusal; complied = 1_full_compliance. Reports, per
judge: agreement, precision/recall of refusal, the confusion matrix, a per-model-file breakdown, error
verdicts and throughput. XSTest is held out: nothing in tunesafe was trained or tuned on it.

    python benchmarks/judges.py [--judge default --judge refusal ...] [--judge-model REF] [--json OUT]
    python benchmarks/judges.py --styles benchmarks/data/refusal_styles [--judge ...] [--json OUT]

Data: $TUNESAFE_SHARED/datasets/xstest (default: the `shared` folder next to the repository).
`--styles FOLDER` scores the project's held-out style set instead (one JSONL per style with request,
response, label): agreement per style and overall, and, for judges that give a confidence, its
calibration (expected calibration error and reliability bins) and how many verdicts were uncertain."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tunesafe.judges import JudgeInput, get_judge, judge_sync

REFUSED = {"2_full_refusal", "3_partial_refusal"}
COMPLIED = {"1_full_compliance"}


def xstest_dir() -> Path:
    shared = os.environ.get("TUNESAFE_SHARED") or Path(__file__).resolve().parents[1].parent / "shared"
    return Path(shared) / "datasets" / "xstest"


def load_rows(folder: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(folder.glob("completions_*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                if row["final_label"] in REFUSED | COMPLIED:
                    rows.append({**row, "file": path.stem.removeprefix("completions_")})
    return rows


def load_style_rows(folder: Path) -> list[dict[str, str]]:
    """The held-out style set, as XSTest-shaped rows so one scorer serves both."""
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append({"prompt": row["request"], "completion": row["response"], "id": None,
                             "file": row["style"], "final_label": "2_full_refusal"
                             if row["label"] == "refusal" else "1_full_compliance"})
    return rows


def calibration(truth: list[bool], verdicts: list[Any], bins: int = 10) -> dict[str, Any] | None:
    """ECE and reliability bins of `confidence` = P(the refusal decision is right); None when the judge
    gives no confidence."""
    pairs = [(v.confidence, v.refused == t, v.uncertain) for t, v in zip(truth, verdicts, strict=True)
             if v.error is None and v.confidence is not None]
    if not pairs:
        return None
    table = []
    ece = 0.0
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = [(c, ok) for c, ok, _ in pairs if low <= c < high or (k == bins - 1 and c == 1.0)]
        if inside:
            mean_c = sum(c for c, _ in inside) / len(inside)
            acc = sum(ok for _, ok in inside) / len(inside)
            ece += len(inside) / len(pairs) * abs(mean_c - acc)
            table.append({"bin": f"{low:.1f}-{high:.1f}", "n": len(inside), "mean_confidence":
                          round(mean_c, 3), "accuracy": round(acc, 3)})
    unsure = [ok for _, ok, u in pairs if u]
    sure = [ok for _, ok, u in pairs if not u]
    return {"n": len(pairs), "ece": round(ece, 4), "bins": table, "uncertain": len(unsure),
            "accuracy_uncertain": round(sum(unsure) / len(unsure), 3) if unsure else None,
            "accuracy_certain": round(sum(sure) / len(sure), 3) if sure else None}


def score(rows: list[dict[str, str]], predicted: list[bool | None]) -> dict[str, Any]:
    def block(pairs: list[tuple[bool, bool | None]]) -> dict[str, Any]:
        c = Counter((truth, pred) for truth, pred in pairs)
        tp, fp, fn, tn = c[(True, True)], c[(False, True)], c[(True, False)], c[(False, False)]
        errors = sum(pred is None for _, pred in pairs)  # an error verdict is a disagreement
        n = len(pairs)
        return {"n": n, "agreement": (tp + tn) / n if n else None,
                "refusal_precision": tp / (tp + fp) if tp + fp else None,
                "refusal_recall": tp / (tp + fn) if tp + fn else None,
                "confusion": {"human_refused_judge_refused": tp, "human_refused_judge_complied": fn,
                              "human_complied_judge_refused": fp, "human_complied_judge_complied": tn},
                "errors": errors}

    pairs = [(row["final_label"] in REFUSED, pred) for row, pred in zip(rows, predicted, strict=True)]
    by_file: dict[str, list[tuple[bool, bool | None]]] = {}
    for row, pair in zip(rows, pairs, strict=True):
        by_file.setdefault(row["file"], []).append(pair)
    return {"overall": block(pairs), "by_file": {f: block(p) for f, p in sorted(by_file.items())}}


def make_judge(name: str, opts: dict[str, Any]) -> Any:
    """A registered judge, or `llm-hidden`, measured here but not shipped (benchmarks/llm_hidden.py)."""
    if name == "llm-hidden":
        sys.path.insert(0, str(Path(__file__).parent))
        from llm_hidden import LlmHiddenJudge

        return LlmHiddenJudge()
    return get_judge(name, **opts)


def run_judge(name: str, rows: list[dict[str, str]], opts: dict[str, Any]) -> dict[str, Any]:
    items = [JudgeInput(request=r["prompt"], response=r["completion"], id=r["id"]) for r in rows]
    judge = make_judge(name, opts)
    judge_sync(judge, items[:8])  # load models before timing
    start, cpu_start = time.perf_counter(), time.process_time()
    verdicts = judge_sync(judge, items)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    result = score(rows, [v.refused if v.error is None else None for v in verdicts])
    result.update(judge=name, version=judge.version, seconds=round(elapsed, 2),
                  items_per_s=round(len(items) / elapsed, 1), items_per_cpu_s=round(len(items) / cpu, 1),
                  load_average=round(os.getloadavg()[0], 1),
                  degenerate=sum(v.degenerate for v in verdicts),
                  classified=sum("classifier_p_refusal" in v.evidence for v in verdicts),
                  calibration=calibration([r["final_label"] in REFUSED for r in rows], verdicts))
    return result


def _ratio(value: float | None) -> str:
    """A precision or recall, n/a when undefined (a judge that calls nothing a refusal): never 0."""
    return "n/a" if value is None else f"{value:.3f}"


def print_report(result: dict[str, Any]) -> None:
    o = result["overall"]
    print(f"\n== {result['judge']} ({result['version']}): agreement {o['agreement']:.1%} on {o['n']}, "
          f"refusal precision {_ratio(o['refusal_precision'])} recall {_ratio(o['refusal_recall'])}, "
          f"errors {o['errors']}, degenerate {result['degenerate']}, "
          f"sent to the classifier {result['classified']}, "
          f"{result['items_per_s']} items/s wall ({result['seconds']} s, load average "
          f"{result['load_average']}), {result['items_per_cpu_s']} items per CPU-second")
    print("   confusion:", o["confusion"])
    for name, b in result["by_file"].items():
        print(f"   {name:24s} n={b['n']:3d} agreement {b['agreement']:.1%} "
              f"P={_ratio(b['refusal_precision'])} R={_ratio(b['refusal_recall'])}")
    cal = result["calibration"]
    if cal is not None:
        print(f"   calibration: ECE {cal['ece']:.3f} over {cal['n']}; uncertain {cal['uncertain']} "
              f"(accuracy {cal['accuracy_uncertain']}), certain accuracy {cal['accuracy_certain']}")
        for b in cal["bins"]:
            print(f"     confidence {b['bin']}: n={b['n']:4d} mean {b['mean_confidence']:.3f} "
                  f"accuracy {b['accuracy']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", action="append", help="judge name (repeatable); default: refusal, default,"
                        " classifier")
    parser.add_argument("--judge-model", help="model ref for LLM judges")
    parser.add_argument("--limit", type=int, help="only the first N rows (smoke runs)")
    parser.add_argument("--json", type=Path, help="write all figures as JSON here")
    parser.add_argument("--styles", type=Path, help="score the held-out style set in this folder instead "
                        "of XSTest")
    args = parser.parse_args()
    if args.styles is not None:
        if not args.styles.is_dir():
            sys.exit(f"style set not found at {args.styles}")
        rows = load_style_rows(args.styles)[: args.limit]
    else:
        folder = xstest_dir()
        if not folder.is_dir():
            sys.exit(f"XSTest not found at {folder}; set TUNESAFE_SHARED")
        rows = load_rows(folder)[: args.limit]
    opts = {"model_ref": args.judge_model} if args.judge_model else {}
    results = []
    for name in args.judge or ["refusal", "default", "classifier"]:
        results.append(run_judge(name, rows, opts))
        print_report(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
