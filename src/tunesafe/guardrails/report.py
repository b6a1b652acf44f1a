"""The guardrail verification report: HTML (the gate report's look: verdict banner, cards, tables),
Markdown for a pull request or ticket, and the JSON evidence body; all from the evidence body."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesafe.reports import decision_json, write_files
from tunesafe.reports.view import VERDICT_TITLE, agreement, markdown_cell, pct
from tunesafe.types import EvidenceRecord

FILES = {"html": "guardrail.html", "markdown": "guardrail.md", "json": "guardrail.json"}


def rate_text(rate: Mapping[str, Any] | None) -> str:
    """k/n with its interval, and the attempts the rate leaves out as undecided (errored checks)."""
    undecided = (rate or {}).get("undecided")
    return agreement(rate) + (f"; {undecided} undecided" if undecided else "")


def rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per group (overall, family:X, category:Y) with each side's block rate as text."""
    figs = body["figures"]
    return [{"group": group, **{side: rate_text(rates.get(side)) for side in figs["sides"]}}
            for group, rates in figs["block_rate"].items()]


def render_markdown(body: Mapping[str, Any]) -> str:
    figs = body["figures"]
    lines = [f"## Guardrail verification: {VERDICT_TITLE[body['verdict']]} (exit {body['exit_code']})", "",
             f"guard `{body['guard_ref']}`" + (f", model `{body['model_ref']}`" if body["model_ref"] else "")
             + f", suite {body['suite']['name']} v{body['suite']['version']}", ""]
    lines += [f"- {markdown_cell(reason)}" for reason in body["reasons"]]
    lines += ["", "| group | " + " | ".join(figs["sides"]) + " |", "|---" * (len(figs["sides"]) + 1) + "|"]
    lines += ["| " + " | ".join(markdown_cell(row[c]) for c in ("group", *figs["sides"])) + " |"
              for row in rows(body)]
    fp, lat, err = figs["false_positive_rate"], figs["latency_ms"], figs["errors"]
    lines += ["", f"False positives: benign {rate_text(fp['benign'])}; "
              f"borderline {rate_text(fp['borderline'])}.",
              f"Added latency: p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}.",
              f"Errors: {err['attempts']} attempts ({pct(err['rate'])}); "
              f"fails {figs['fail_mode']['declared']} on errors, effective block rate "
              f"{agreement(figs['fail_mode']['effective_block_rate'])}.", ""]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def render_html(body: Mapping[str, Any], record: EvidenceRecord | None = None) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("tunesafe.guardrails", "templates"),
                      autoescape=select_autoescape(["j2"]), undefined=StrictUndefined)
    env.filters.update(pct=pct, rate=rate_text, ms=_ms)
    return env.get_template("verification.html.j2").render(
        body=body, record=record, figs=body["figures"], rows=rows(body),
        verdict_title=VERDICT_TITLE[body["verdict"]])


def write_reports(body: Mapping[str, Any], out_dir: Path,
                  record: EvidenceRecord | None = None) -> dict[str, Path]:
    return write_files(out_dir, FILES, html=render_html(body, record), markdown=render_markdown(body),
                       data=decision_json(body, record))
