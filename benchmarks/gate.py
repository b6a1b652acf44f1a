"""Gate analysis cost: compare (paired statistics under one judge), decide, and render the three
reports, on synthetic runs shaped like the default suite (336 harmful behaviours x 14 attack families
x 2 attacks + 300 benign/borderline prompts), median of repeats. No model is called.

    python benchmarks/gate.py [--behaviours 336] [--families 14] [--attacks-per-family 2] [--repeats 3]
                              [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from tunesafe.analysis.compare import compare
from tunesafe.engine.results import RunInfo
from tunesafe.gating import decision_body
from tunesafe.policy import Policy, decide
from tunesafe.reports.html import render_html
from tunesafe.reports.markdown import render_markdown
from tunesafe.types import Attempt, AttemptResult, Generation, Message, Verdict, canonical_json

FLAGS = {"success": (False, True), "refused": (True, False), "complied": (False, False)}


def _result(run: str, attempt_id: str, behaviour: str, family: str, category: str, kind: str,
            outcome: str) -> AttemptResult:
    attempt = Attempt(id=attempt_id, behavior_id=behaviour, attack=f"{family}-a", attack_version="1",
                      family=family, category=category, kind=kind,  # type: ignore[arg-type]
                      messages=(Message("user", f"[request {behaviour}]"),))
    refused, harmful = FLAGS[outcome]
    text = "I can't help with that." if refused else "Step 1: [redacted]."
    return AttemptResult(run, attempt, Generation(text, "stop"), text, (),
                         (Verdict("default", "1", refused, harmful),))


def synthetic_runs(behaviours: int, families: int, attacks: int, seed: int = 0
                   ) -> tuple[list[AttemptResult], list[AttemptResult]]:
    """Base ASR ~20%, candidate ~28% (some churn both ways); benign over-refusal ~5% -> ~7%."""
    rng = random.Random(seed)
    base, cand = [], []
    for b in range(behaviours):
        category = f"cat{b % 14}"
        for f in range(families):
            for a in range(attacks):
                attempt_id = f"h{b}-{f}-{a}"
                before = "success" if rng.random() < 0.2 else "refused"
                after = before if rng.random() < 0.85 else ("success" if rng.random() < 0.7 else "refused")
                base.append(_result("base", attempt_id, f"b{b}", f"fam{f}", category, "harmful", before))
                cand.append(_result("cand", attempt_id, f"b{b}", f"fam{f}", category, "harmful", after))
    for i in range(300):
        kind = "benign" if i < 140 else "borderline"
        before = "refused" if rng.random() < 0.05 else "complied"
        after = "refused" if rng.random() < 0.07 else "complied"
        base.append(_result("base", f"n{i}", f"n{i}", "direct_request", f"type{i % 10}", kind, before))
        cand.append(_result("cand", f"n{i}", f"n{i}", "direct_request", f"type{i % 10}", kind, after))
    return base, cand


def _info(run_id: str) -> RunInfo:
    config = {"suite": {"name": "synthetic", "version": "1", "content_hash": "0" * 64}, "attacks": [],
              "judges": [{"name": "default", "version": "1"}], "decoding": {}, "tool_version": "bench"}
    return RunInfo(id=run_id, model_ref=f"hf:{run_id}", model_hash=run_id * 8, config=config,
                   config_hash="0" * 64, status="complete", n_planned=0, n_done=0, n_errors=0,
                   created_at=datetime.now(timezone.utc), finished_at=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behaviours", type=int, default=336)
    parser.add_argument("--families", type=int, default=14)
    parser.add_argument("--attacks-per-family", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base, cand = synthetic_runs(args.behaviours, args.families, args.attacks_per_family)
    timings: dict[str, list[float]] = {"compare": [], "decide": [], "reports": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        comparison = compare(base, cand, min_n={"family": 10, "category": 5})
        timings["compare"].append(time.perf_counter() - started)
        started = time.perf_counter()
        decision = decide(Policy(), {"default": comparison})
        timings["decide"].append(time.perf_counter() - started)
        body = json.loads(canonical_json(decision_body(decision, Policy(), _info("base"), _info("cand"),
                                                         None, None)))
        started = time.perf_counter()
        render_html(body)
        render_markdown(body)
        timings["reports"].append(time.perf_counter() - started)
    result = {"attempts_per_run": len(base), "verdict": decision.verdict,
              **{f"{k}_s": round(statistics.median(v), 3) for k, v in timings.items()}}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
