"""What the gate reports show, read from the gate-decision evidence body (never recomputed): the
HTML, Markdown and JSON renderers all start here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERDICT_TITLE = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def deltas(body: Mapping[str, Any], metric: str, axis: str | None = None) -> list[Mapping[str, Any]]:
    """Deltas of one metric: the overall one (axis None) or those of one axis ("family", ...)."""
    rows = [d for d in body["comparison"]["deltas"] if d["metric"] == metric]
    if axis is None:
        return [d for d in rows if d["group"] == "overall"]
    return [d for d in rows if d["group"].startswith(f"{axis}:")]


def blocked(body: Mapping[str, Any]) -> dict[str, str] | None:
    """Each run's attempts the deployment declined (provider filter, refusal field), as "k/n (rate)";
    None for a decision recorded before blocked attempts were counted."""
    counts = body["comparison"]["info"].get("blocked")
    if not counts:
        return None
    return {side: f"{c['k']}/{c['n']} ({pct(c['rate'])})" for side, c in counts.items()}


def name(delta: Mapping[str, Any]) -> str:
    return str(delta["group"]).split(":", 1)[-1]


def bar_row(delta: Mapping[str, Any], label: str | None = None) -> dict[str, Any]:
    keys = ("before", "after", "before_low", "before_high", "after_low", "after_high")
    return {"label": label or name(delta), **{k: delta.get(k) for k in keys}}


def reasons(body: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(decisive reasons, notes)."""
    all_reasons = [str(r) for r in body["reasons"]]
    return ([r for r in all_reasons if not r.startswith("note:")],
            [r.removeprefix("note: ") for r in all_reasons if r.startswith("note:")])


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


def pvalue(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def interval(delta: Mapping[str, Any]) -> str:
    low, high = delta.get("ci_low"), delta.get("ci_high")
    return "n/a" if low is None or high is None else f"[{low * 100:+.1f}, {high * 100:+.1f}]"


def mde(delta: Mapping[str, Any]) -> str:
    value = delta.get("mde")
    return "none" if value is None else f"{value * 100:.1f}"
