"""The Markdown summary, sized for a pull-request comment: verdict, reasons, the overall and per-family
figures and a short regressions list. No responses (they can be harmful): those stay in the HTML."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesafe.reports import view
from tunesafe.reports.html import title

MAX_REASONS = 12
MAX_ROWS = 20
ICON = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️"}


def render_markdown(body: Mapping[str, Any]) -> str:
    decisive, notes = view.reasons(body)
    verdict = body["verdict"]
    heading = f"**{view.VERDICT_TITLE[verdict]}** (exit {body['exit_code']})"
    lines = [f"### {ICON[verdict]} tunesafe gate: {heading}",
             "", f"{_cell(title(body))} · judge `{body['judge']}` · policy `{body['policy_hash'][:12]}`", ""]
    lines += [f"- {_cell(r)}" for r in decisive[:MAX_REASONS]]
    if len(decisive) > MAX_REASONS:
        lines.append(f"- … and {len(decisive) - MAX_REASONS} more (see report.html)")
    lines += ["", "| metric | n | base | candidate | change (pts) | 95% CI | p (one-sided) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, metric in (("ASR", "asr"), ("refusal", "refusal"), ("over-refusal", "over_refusal"),
                          ("degenerate answers", "degenerate")):
        for d in view.deltas(body, metric):
            lines.append(_row(label, d, body))
    error = view.deltas(body, "error")[0]
    most = view.rate_limit(body, error)
    lines.append(f"| error rate (whole runs) | {view.run_sizes(body)} | {view.pct(error['before'], most)} | "
                 f"{view.pct(error['after'], most)} | {view.points(error['diff'])} | | |")
    for label, counts, _why in view.whole_run_counts(body):
        lines.append(f"| {label} | | {counts['base']} | {counts['candidate']} | | | |")
    families = view.deltas(body, "asr", "family")
    if families:
        lines += ["", "| attack family | n | base ASR | candidate ASR | change (pts) | 95% CI | Holm p |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [_row(view.name(d), d, body, holm=True) for d in families[:MAX_ROWS]]
        lines += _more(len(families), "attack families")
    agents = body.get("agents")
    if agents:  # rates decided by the environment's end state, not by a text judge
        lines += ["", "| agents: group | metric | base | candidate |", "|---|---|---:|---:|"]
        lines += [f"| {_cell(r['group'])} | {_cell(r['metric'])} | {_rate(r['base'])} | "
                  f"{_rate(r['candidate'])} |" for r in agents["rows"][:MAX_ROWS]]
        lines += _more(len(agents["rows"]), "agent rows")
    regressions = body["comparison"]["regressions"]
    total = body["comparison"]["info"].get("n_regressions", len(regressions))
    if total:
        lines += ["", f"<details><summary>{total} attempts became attack successes</summary>", ""]
        lines += [f"- `{r['attack']}` ({_cell(r['family'])} / {_cell(r['category'])}), was {r['before']}"
                  for r in regressions[:MAX_ROWS]]
        lines += ["", "</details>"]
    checks = view.judge_checks(body)
    if checks:
        lines += ["", "**Judge checks**", *(f"- {_cell(c)}" for c in checks)]
    if notes:
        lines += ["", *(f"> {_cell(n)}" for n in notes[:MAX_REASONS])]
    base, cand = body["base"], body["candidate"]
    lines += ["", f"_base `{base['model_hash'][:12]}` · candidate `{cand['model_hash'][:12]}`"
              f" · runs `{base['run_id']}` / `{cand['run_id']}`_", ""]
    answered = [view.reported_models(run) for run in (base, cand)]
    if any(answered):  # what the servers say answered, next to the refs' names
        lines[-1:] = [f"_answered as (the replies' model): base {_cell(answered[0] or 'unknown')} · "
                      f"candidate {_cell(answered[1] or 'unknown')}_", ""]
    return "\n".join(lines)


def _row(label: str, d: Mapping[str, Any], body: Mapping[str, Any], *, holm: bool = False) -> str:
    """One delta's row; its figures next to a policy limit (alpha, a ceiling, a change limit) print apart
    from it, as the reasons print them."""
    p = d["p_adjusted"] if holm else d["p_value"]
    flag = " ⚠️ too few" if d.get("inconclusive") else ""
    change = view.change_limit(body, d)
    return (f"| {_cell(label)}{flag} | {d['n_pairs']} | {view.pct(d['before'])} | "
            f"{view.pct(d['after'], view.rate_limit(body, d))} | {view.points(d['diff'], change)} | "
            f"{view.interval(d, change)} | {view.pvalue(p, body['policy']['alpha'])} |")


def _more(total: int, what: str) -> list[str]:
    """Under a table cut at MAX_ROWS, how many rows it leaves out: a group past the cut is otherwise
    missing without a word."""
    return ["", f"… and {total - MAX_ROWS} more {what} (see report.html)"] if total > MAX_ROWS else []


def _rate(c: Mapping[str, Any]) -> str:
    return f"{c['k']}/{c['n']} {view.pct(c['rate'])} [{view.pct(c['low'])}, {view.pct(c['high'])}]"


def _cell(text: str) -> str:
    return view.markdown_cell(text)
