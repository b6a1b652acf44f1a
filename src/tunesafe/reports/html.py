"""The self-contained HTML gate report: one file, inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tunesafe.reports import charts, view
from tunesafe.types import EvidenceRecord

_ENV = Environment(loader=PackageLoader("tunesafe.reports", "templates"),
                   autoescape=select_autoescape(["j2"]), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(pct=view.pct, points=view.points, pvalue=view.pvalue, interval=view.interval,
                    mde=view.mde, name=view.name, reported_models=view.reported_models)


def render_html(body: Mapping[str, Any], record: EvidenceRecord | None = None) -> str:
    return _ENV.get_template("report.html.j2").render(**report_context(body, record))


def report_context(body: Mapping[str, Any], record: EvidenceRecord | None = None) -> dict[str, Any]:
    """What the report shows (tables, charts as SVG markup), for this page and the dashboard's gate page."""
    decisive, notes = view.reasons(body)
    comparison = body["comparison"]
    families = view.deltas(body, "asr", "family")
    overall = [
        ("attack success rate (harmful)", view.deltas(body, "asr")),
        ("refusal rate (harmful)", view.deltas(body, "refusal")),
        ("over-refusal (benign + borderline)", view.deltas(body, "over_refusal")),
        *((f"over-refusal ({kind})", [d for d in view.deltas(body, "over_refusal", "kind")
                                      if view.name(d) == kind]) for kind in ("benign", "borderline")),
        ("degenerate answers (all prompts)", view.deltas(body, "degenerate")),
    ]
    side_by_side = [view.bar_row(rows[0], label) for label, rows in overall if rows]
    return dict(
        body=body, record=record, title=title(body), verdict_title=view.VERDICT_TITLE[body["verdict"]],
        decisive=decisive, notes=notes, alpha=body["policy"]["alpha"],
        overall=[(label, rows[0]) for label, rows in overall if rows],
        error=view.deltas(body, "error")[0], counts=view.whole_run_counts(body),
        family_chart=Markup(charts.grouped_bars([view.bar_row(d) for d in families],
                                                title="Attack success rate by attack family")),
        refusal_chart=Markup(charts.grouped_bars(side_by_side, title="ASR next to refusal and over-refusal")),
        heat_map=Markup(charts.heat_map(comparison["info"].get("asr_cells", []),
                                        title="ASR change (points) by attack family x harm category")),
        tables=[("Attack families (ASR)", families),
                ("Harm categories (ASR)", view.deltas(body, "asr", "category")),
                ("Over-refusal by prompt kind", view.deltas(body, "over_refusal", "kind"))],
        agreement=comparison["judge_agreement"], regressions=comparison["regressions"],
        info=comparison["info"], runs=[("base", body["base"]), ("candidate", body["candidate"])],
        prov=body["provenance"], judge_checks=view.judge_checks(body),
        # the policy limits a row's figures print apart from, as the reasons print them
        change_limit=lambda d: view.change_limit(body, d), rate_limit=lambda d: view.rate_limit(body, d),
        flagged=lambda d: view.flagged(body, d),
    )


def title(body: Mapping[str, Any]) -> str:
    base, cand = body["base"], body["candidate"]
    candidate = body.get("candidate_model") or cand.get("model_name") or cand["model_ref"]
    return f"{candidate} vs {body.get('base_model') or base.get('model_name') or base['model_ref']}"
