"""The overall rating of a scan (low / medium / high) with its reasons. A rating is a triage aid: the
reasons and counts are what a reviewer acts on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tunesafe.screening.records import SEVERITY_RANK, Finding

# Share of examples whose nearest anchor is a harmful one. No threshold exists in the literature
# (research.md section 3); at 10% a tenth of the data sits closer to harmful demonstrations than to
# benign or refusal data, which the project's benign fixtures never reach.
NEAREST_HARMFUL_MEDIUM = 0.10


def counts(findings: Sequence[Finding]) -> dict[str, dict[str, int]]:
    """{type: {severity: count}} sorted by type, for the summary table and the evidence record."""
    table: dict[str, Counter[str]] = {}
    for f in findings:
        table.setdefault(f.type, Counter())[f.severity] += 1
    return {t: dict(sorted(c.items())) for t, c in sorted(table.items())}


def rate(findings: Sequence[Finding], similarity: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    by_level: dict[str, Counter[str]] = {"high": Counter(), "medium": Counter(), "low": Counter()}
    dataset_level = []
    for f in findings:
        if f.index is None:  # a pattern across the dataset: its own reason says what and where
            dataset_level.append(f"{f.type} ({f.severity}): {f.reason}")
        else:
            by_level[f.severity][f.type] += 1
    reasons = dataset_level + [
        f"{n} x {t} ({level})" for level in ("high", "medium") for t, n in sorted(by_level[level].items())
    ]
    worst_level = worst(findings)
    rating = "high" if worst_level == 2 else "medium" if worst_level == 1 else "low"
    share = (similarity or {}).get("nearest_anchor_share", {}).get("harmful", 0.0)
    if share >= NEAREST_HARMFUL_MEDIUM:
        reasons.append(f"{share:.0%} of examples are nearest to harmful anchors (representation similarity)")
        if rating == "low":
            rating = "medium"
    if rating == "low":
        minor = ", ".join(f"{n} x {t}" for t, n in sorted(by_level["low"].items()))
        reasons.append(f"no finding above low severity{f' ({minor})' if minor else ''}")
    return rating, reasons


def worst(findings: Sequence[Finding]) -> int:
    return max((SEVERITY_RANK[f.severity] for f in findings), default=-1)
