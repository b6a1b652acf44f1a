"""What the gate reports show, read from the gate-decision evidence body (never recomputed): the
HTML, Markdown and JSON renderers all start here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def run_sizes(body: Mapping[str, Any]) -> str:
    """"base / candidate" attempts: what the error rates, taken over each whole run, are of."""
    info = body["comparison"]["info"]
    return f"{info.get('n_base', '?')} / {info.get('n_candidate', '?')}"


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


def pct(value: float | None, limit: float | None = None) -> str:
    """A rate in percent; next to a policy `limit` (a fraction) with the decimals that keep them apart."""
    if value is None:
        return "n/a"
    return f"{apart(value, limit)}%"


def points(value: float | None, limit: float | None = None) -> str:
    """A change in signed percentage points; next to a policy `limit` (in points), kept apart from it."""
    if value is None:
        return "n/a"
    return apart(value, None if limit is None else limit / 100, "+")


def apart(value: float, limit: float | None, sign: str = "") -> str:
    """value (a fraction) in percent: one decimal, or as many as keep it apart from a limit it is not."""
    # within float noise of the limit (a percentile's interpolation, a root found to 1e-10) it is the limit
    if limit is None or abs(value - limit) < 1e-9:
        # + 0.0 turns the -0.0 that a small fall rounds to into 0.0: a zero has no direction
        return f"{round(value * 100, 1) + 0.0:{sign}.1f}"
    return percent_apart(value, limit, sign)[0]


def percent_apart(value: float, limit: float, sign: str = "") -> tuple[str, str]:
    """A fraction beyond a limit and the limit, both in percent with the fewest decimals (one to twelve) that
    keep them apart: 11 / 218 = 5.046% rounds to the 5.0 of a 5-point limit it exceeds. A limit written
    with more decimals gets as many as it needs."""
    (shown,), bound = percents_apart((value,), limit, sign)
    return shown, bound


def percents_apart(values: Sequence[float], limit: float, sign: str = "") -> tuple[list[str], str]:
    """Figures printed beside one limit (a rate and its interval's ends) and the limit, all in percent with
    the fewest common decimals that keep each figure apart from the limit."""
    bound = limit * 100
    digits = max((next((n for n in range(1, 13) if round(v * 100, n) != round(bound, n)), 12)
                  for v in values), default=1)
    return [f"{v * 100:{sign}.{digits}f}" for v in values], f"{bound:.{digits}f}"


def figures_apart(value: float, limit: float) -> tuple[str, str]:
    """A number beside a limit it is not (compute against a FLOP threshold) and the limit, in %g notation
    with the fewest significant digits, three to twelve, that keep them apart."""
    digits = next((n for n in range(3, 13) if f"{value:.{n}g}" != f"{limit:.{n}g}"), 3)
    return f"{value:.{digits}g}", f"{limit:.{digits}g}"


CHANGE_LIMITS = {"asr": "max_regression_points", "over_refusal": "max_over_refusal_increase_points",
                 "degenerate": "max_degenerate_increase_points"}


def change_limit(body: Mapping[str, Any], delta: Mapping[str, Any]) -> float | None:
    """The policy's limit on this delta's rise, in points; None when it has none."""
    key = CHANGE_LIMITS.get(str(delta["metric"]))
    value = None if key is None else body["policy"].get(key)
    return None if value is None else float(value)


def rate_limit(body: Mapping[str, Any], delta: Mapping[str, Any]) -> float | None:
    """The policy's ceiling (or floor) on this delta's candidate rate (both rates, for the error rate), a
    fraction; None when it has none. Read as the policy reads it: a per-group map's "*" entry covers the
    groups it does not name."""
    policy, metric, group = body["policy"], delta["metric"], str(delta["group"])
    axis, _, group_name = group.partition(":")
    value: Any = None
    if metric == "asr":
        ceilings = policy.get("max_asr") or {}
        table = ceilings.get(f"per_{axis}") or {}
        value = ceilings.get("overall") if group == "overall" else table.get(group_name, table.get("*"))
    elif metric == "refusal" and group == "overall":
        value = policy.get("min_refusal_rate")
    elif metric == "over_refusal" and axis == "kind":
        value = (policy.get("max_over_refusal") or {}).get(group_name)
    elif metric == "error":  # both runs' error rates are held to it
        value = policy.get("max_error_rate")
    return None if value is None else float(value)


def pvalue(value: float | None, alpha: float | None = None) -> str:
    """Three decimals, or more where three would put the p-value on the other side of the gate's alpha:
    0.0503 is not significant at 0.05, but "0.050" reads as if it were. Below 0.001, "<0.001"; or, under an
    alpha below that, in scientific notation."""
    if value is None:
        return "n/a"
    if value < 0.001:
        if alpha is None or alpha >= 0.001:
            return "<0.001"
        # under a smaller alpha: significant digits, as many as keep it on its side (never "0.000")
        digits = 0
        while digits < 8 and (float(f"{value:.{digits}e}") <= alpha) != (value <= alpha):
            digits += 1
        return f"{value:.{digits}e}"
    digits = 3
    while alpha is not None and digits < 8 and (round(value, digits) <= alpha) != (value <= alpha):
        digits += 1
    return f"{value:.{digits}f}"


def interval(delta: Mapping[str, Any], limit: float | None = None) -> str:
    """The paired change's 95% interval in points; each bound kept apart from a `limit` in points."""
    low, high = delta.get("ci_low"), delta.get("ci_high")
    return "n/a" if low is None or high is None else f"[{points(low, limit)}, {points(high, limit)}]"


def mde(delta: Mapping[str, Any], limit: float | None = None) -> str:
    """The detectable regression in points; kept apart from a `limit` in points."""
    value = delta.get("mde")
    return "none" if value is None else points(value, limit).lstrip("+")


def flagged(body: Mapping[str, Any], delta: Mapping[str, Any]) -> bool:
    """Whether the decision holds this row against the candidate, so a report marks it: a decisive reason
    names it, or it breaches the limit it is checked against. A significant rise within its limit is not
    marked (the decision passes it); a rate past its ceiling is, changed or not."""
    return _breaches(body, delta) or any(_names(reason, delta) for reason in reasons(body)[0])


def _breaches(body: Mapping[str, Any], delta: Mapping[str, Any]) -> bool:
    policy, metric = body["policy"], delta["metric"]
    bound = rate_limit(body, delta)
    if bound is not None:
        # the error rate is held to its limit in both runs; the refusal rate has a floor, the rest ceilings
        rates = (delta.get("before"), delta.get("after")) if metric == "error" else (delta.get("after"),)
        if any(r is not None and (r < bound if metric == "refusal" else r > bound) for r in rates):
            return True
    limit, diff = change_limit(body, delta), delta.get("diff")
    if limit is None or diff is None or diff <= limit / 100:  # as the gate compares: both fractions
        return False
    p = delta["p_adjusted"] if delta.get("p_adjusted") is not None else delta.get("p_value")
    return not policy.get("require_significance", True) or (p is not None and p <= policy["alpha"])


# words by which a reason "<group>: ..." names the metric of a row (the overall rows share a group)
_REASON_WORDS = {"asr": ("ASR", "harmful attempts", "attack success"), "refusal": ("refusal rate",),
                 "over_refusal": ("over-refusal", "over_refusal")}
# the reasons on a whole-run figure start with it, not with a group
_REASON_START = {"error": "error rate", "degenerate": "degenerate answers"}


def _names(reason: str, delta: Mapping[str, Any]) -> bool:
    metric = str(delta["metric"])
    if metric in _REASON_START:
        return reason.startswith(_REASON_START[metric])
    words = _REASON_WORDS.get(metric, ())
    return reason.startswith(f"{delta['group']}: ") and any(word in reason for word in words)
