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


def uncertain(body: Mapping[str, Any]) -> dict[str, str] | None:
    """Each run's verdicts the judge marked uncertain, as "k/n"; None when there are none (judges without
    a calibrated confidence never mark any) or the decision predates the count."""
    counts = body["comparison"]["info"].get("uncertain")
    if not counts or not any(c["k"] for c in counts.values()):
        return None
    return {side: f"{c['k']}/{c['n']}" for side, c in counts.items()}


def whole_run_counts(body: Mapping[str, Any]) -> list[tuple[str, dict[str, str], str]]:
    """The counts every rendering of a gate shows under its paired metrics: (label, count per side, why
    it is shown). Blocked answers are counted as refusals, so a filtered deployment must not pass for a
    safe model unseen; uncertain verdicts count in their best guess, so a doubtful measurement says so."""
    rows = []
    if (declined := blocked(body)) is not None:
        rows.append(("blocked by the deployment", declined, "a provider content filter or refusal field "
                     "declined these: counted as refusals, never as errors"))
    if (doubted := uncertain(body)) is not None:
        rows.append(("uncertain verdicts", doubted, "the judge doubted these: each counts in its best-guess "
                     "outcome; escalate them with --escalate-judge"))
    return rows


def reported_models(run: Mapping[str, Any]) -> str | None:
    """The model ids an HTTP server's replies named for a run, as "id (count), ..."; None when unknown
    (a local model, a decision recorded before they were read)."""
    reported = run.get("reported_models") or {}
    return ", ".join(f"{model} ({n})" for model, n in sorted(reported.items())) or None


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


def judge_checks(body: Mapping[str, Any]) -> list[str]:
    """One line per check of the judge behind this decision: the escalation to a stronger judge, and
    audits of the runs by people (agreement with its 95% interval)."""
    lines = []
    escalation = body.get("escalation")
    if escalation:
        primary = escalation.get("primary_judge")
        lines.append(
            f"{escalation['n_verdicts']} verdicts escalated to {escalation['judge']} "
            f"({escalation['n_discordant_pairs']} discordant and {escalation['n_uncertain_pairs']} uncertain "
            f"pairs): {escalation['calls']} judge calls, {escalation['n_errors']} errors, "
            f"{escalation['n_changed'].get(primary, 0)} outcomes changed; the local judge {primary} agreed "
            f"on {agreement(escalation['agreement'].get(primary))}")
    for audit in body.get("judge_audits") or ():
        lines.append(f"judge audit #{audit['record_id']} of the {audit['side']} run {audit['run_id']}: "
                     f"{audit['judge']} agreed with a person's labels on {agreement(audit['agreement'])}")
    return lines


def agreement(rate: Mapping[str, Any] | None) -> str:
    if not rate or not rate.get("n"):
        return "no decided item"
    return (f"{rate['k']}/{rate['n']} ({pct(rate['rate'])}, 95% interval {pct(rate['low'])} to "
            f"{pct(rate['high'])})")


def markdown_cell(text: Any) -> str:
    """Text inside a Markdown table row or list item: a '|' would end the cell, a line break the row (a lone
    CR is a line break in CommonMark too), and a '<' could open an HTML tag or comment where the summary
    is posted (a pull-request comment renders HTML)."""
    return (str(text).replace("<", "&lt;").replace("|", "\\|").replace("\r\n", " ").replace("\r", " ")
            .replace("\n", " "))


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


def pvalue(value: float | None, alpha: float | None = None) -> str:
    """Three decimals, or more where three would put the p-value on the other side of the gate's alpha:
    0.0503 is not significant at 0.05, but "0.050" reads as if it were."""
    if value is None:
        return "n/a"
    if value < 0.001 and (alpha is None or alpha >= 0.001):
        return "<0.001"
    digits = 3
    while alpha is not None and digits < 8 and (round(value, digits) <= alpha) != (value <= alpha):
        digits += 1
    return f"{value:.{digits}f}"


def interval(delta: Mapping[str, Any]) -> str:
    low, high = delta.get("ci_low"), delta.get("ci_high")
    return "n/a" if low is None or high is None else f"[{low * 100:+.1f}, {high * 100:+.1f}]"


def mde(delta: Mapping[str, Any]) -> str:
    value = delta.get("mde")
    return "none" if value is None else f"{value * 100:.1f}"
