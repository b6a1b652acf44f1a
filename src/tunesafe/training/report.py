"""The training report, rendered from a `training_run` evidence body only (nothing is recomputed): a
self-contained HTML page in the gate report's look (its stylesheet and SVG charts), a Markdown summary
and the JSON body itself. Written by `tunesafe train-lora` at the end of every run it started (stopped,
refused or failed runs included) and by `tunesafe training report` from the store."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.reports import charts, decision_json, view, write_files
from tunesafe.types import EvidenceRecord, RecordType

FILES = {"html": "report.html", "markdown": "summary.md", "json": "training_run.json"}
STATUS_CLASS = {"completed": "pass", "stopped": "fail", "refused": "fail", "error": "inconclusive",
                "interrupted": "inconclusive"}
LOSS_COLOUR, ASR_COLOUR, OVER_REFUSAL_COLOUR = "#2962a8", charts.AFTER_COLOUR, "#a05a00"
MAX_MD_ROWS = 20

_ENV = Environment(loader=PackageLoader("tunesafe.reports", "templates"),
                   autoescape=select_autoescape(["j2"]), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(pct=view.pct, num=lambda v: "n/a" if v is None else f"{v:.4g}" if isinstance(v, float)
                    else str(v))


def outcome_line(body: Mapping[str, Any]) -> str:
    """Why the run ended, in one sentence."""
    status, steps, planned = body["status"], body["steps"], body["planned_steps"]
    stop = body.get("stopped_by")
    if status == "refused" and stop:
        return f"refused before the first step: {stop['reason']}"
    if status in ("error", "interrupted"):
        ended = "failed" if status == "error" else "interrupted"
        return f"{ended} at step {steps}: {body.get('error') or 'unknown error'}"
    if stop:
        return (f"stopped at step {steps} of {planned} by {stop['kind']} (step {stop['step']}): "
                f"{stop['reason']}")
    return f"completed {steps} of {planned} steps"


def probe_share_line(body: Mapping[str, Any]) -> str:
    """What the probes cost (docs/training.md, "Probe share"): the probes this run ran against its wall
    time; the judge load and a shared start probe were spent outside it and are named apart."""
    t = body["timing"]
    share = t.get("probe_share")
    line = (f"probe share {view.pct(share)}: the probes this run ran took "
            f"{t['probe_seconds']:.1f} s of its {t['wall_seconds']:.1f} s")
    apart = [f"judge load {t['judge_load_seconds']:.1f} s" if t.get("judge_load_seconds") else "",
             f"shared start probe {t['reused_probe_seconds']:.1f} s" if t.get("reused_probe_seconds") else ""]
    apart = [a for a in apart if a]
    return line + (f" (not counted, spent before the run: {', '.join(apart)})" if apart else "")


def loss_points(body: Mapping[str, Any]) -> list[tuple[float, Any]]:
    return [(step, loss) for step, loss in body["loss_curve"]]


def probe_points(body: Mapping[str, Any], key: str) -> list[tuple[float, Any]]:
    return [(p["step"], p[key]) for p in body["probes"] if p.get(key) is not None]


def nonfinite_losses(body: Mapping[str, Any]) -> list[tuple[int, str]]:
    return [(step, str(loss)) for step, loss in body["loss_curve"]
            if not isinstance(loss, (int, float)) or not math.isfinite(loss)]


def limit_rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policy's training limits with the action each takes, as recorded in the run."""
    section = body["policy"]["training"]
    actions = section.get("actions", {})
    keys = ("max_epochs", "max_steps", "max_learning_rate", "min_examples", "max_probe_asr_increase_points",
            "max_probe_over_refusal_increase_points", "max_probe_error_rate")
    action_of = {"max_probe_asr_increase_points": "probe_asr", "max_probe_error_rate": "probe_error",
                 "max_probe_over_refusal_increase_points": "probe_over_refusal"}
    rows = [{"limit": k, "value": section.get(k), "action": actions.get(action_of.get(k, k))} for k in keys]
    rows += [{"limit": k, "value": "(detector)", "action": actions.get(k)}
             for k in ("loss_nonfinite", "loss_anomaly") if k in actions]
    return rows


def lineage_rows(body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(link, what, sha256) for base -> dataset -> run -> adapter."""
    lineage = body["lineage"]
    base, data, adapter = lineage.get("base") or {}, lineage.get("dataset") or {}, lineage.get("adapter")
    n = data.get("n_examples")
    data_what = f"{data.get('path') or '(rows as trained)'}" + (f", {n} examples" if n is not None else "") \
        + (f", hash of {data['hash_of']}" if data.get("hash_of") else "")
    return [("base", str(base.get("ref") or "unknown"), base.get("sha256") or "not hashed"),
            ("dataset", data_what, data.get("sha256") or "not hashed"),
            ("run", f"training_run {body['run_id']} under policy {body['policy']['hash'][:16]}",
             body["probe_set"]["hash"] and f"probe set {body['probe_set']['hash']}"),
            ("adapter", adapter["path"] if adapter else "none saved",
             adapter["sha256"] if adapter else "-")]


def charts_of(body: Mapping[str, Any]) -> dict[str, str]:
    section = body["policy"]["training"]
    probes = body["probes"]
    baseline = probes[0] if probes else {}
    rules = []
    for key, limit_key, label, colour in (
            ("asr", "max_probe_asr_increase_points", "ASR limit", ASR_COLOUR),
            ("over_refusal", "max_probe_over_refusal_increase_points", "over-refusal limit",
             OVER_REFUSAL_COLOUR)):
        if baseline.get(key) is not None and section.get(limit_key) is not None:
            rules.append({"label": f"{label}: step-0 probe + {section[limit_key]:g} points",
                          "y": baseline[key] + section[limit_key] / 100, "colour": colour})
    loss = charts.line_chart([{"label": "training loss", "colour": LOSS_COLOUR, "points": loss_points(body)}],
                             title="Training loss per step")
    probe = charts.line_chart(
        [{"label": "probe ASR (harmful)", "colour": ASR_COLOUR, "points": probe_points(body, "asr")},
         {"label": "probe over-refusal", "colour": OVER_REFUSAL_COLOUR,
          "points": probe_points(body, "over_refusal")}],
        title="Checkpoint safety probes per step", percent=True, rules=rules)
    return {"loss": loss, "probe": probe}


def render_html(body: Mapping[str, Any], record: EvidenceRecord | None = None) -> str:
    chart = charts_of(body)
    return _ENV.get_template("training_report.html.j2").render(
        body=body, record=record, title=title(body),
        status_class=STATUS_CLASS.get(body["status"], "inconclusive"),
        outcome=outcome_line(body), probe_share=probe_share_line(body), loss_chart=Markup(chart["loss"]),
        probe_chart=Markup(chart["probe"]),
        nonfinite=nonfinite_losses(body), limits=limit_rows(body), lineage=lineage_rows(body),
        config=sorted((k, v) for k, v in body["config"].items() if k != "adapter"),
        adapter_config=body["config"].get("adapter"))


def render_markdown(body: Mapping[str, Any]) -> str:
    icon = {"completed": "✅", "stopped": "🛑", "refused": "🛑"}.get(body["status"], "⚠️")
    lines = [f"### {icon} tunesafe training: **{body['status'].upper()}**", "",
             f"{title(body)} · policy `{body['policy']['hash'][:12]}` · probe set "
             f"`{body['probe_set']['hash'][:12]}`", "", f"- {_cell(outcome_line(body))}",
             f"- {probe_share_line(body)}"]
    losses = [loss for _, loss in loss_points(body)]
    if losses:
        lines.append(f"- loss: {_num(losses[0])} at step {body['loss_curve'][0][0]} -> {_num(losses[-1])} at "
                     f"step {body['loss_curve'][-1][0]} ({len(losses)} points)")
    lines += ["", "| step | trigger | probe ASR | over-refusal | error rate | worse than step 0 |",
              "|---:|---|---:|---:|---:|---:|"]
    for p in body["probes"][:MAX_MD_ROWS]:
        lines.append(f"| {p['step']} | {p['trigger']} | {view.pct(p['asr'])} | "
                     f"{view.pct(p['over_refusal'])} | {view.pct(p['error_rate'])} | "
                     f"{len(p.get('worse_than_start') or [])} |")
    if body["events"]:
        lines += ["", "| step | event | action | value | limit | reason |", "|---:|---|---|---:|---:|---|"]
        lines += [f"| {e['step']} | {e['kind']} | {e['action']} | {_num(e['value'])} | {_num(e['limit'])} | "
                  f"{_cell(e['reason'])} |" for e in body["events"][:MAX_MD_ROWS]]
        if len(body["events"]) > MAX_MD_ROWS:
            lines.append(f"\n… and {len(body['events']) - MAX_MD_ROWS} more events (see report.html)")
    else:
        lines += ["", "No events."]
    lines += ["", "**Lineage**",
              *(f"- {link}: {_cell(what)} `{digest}`" for link, what, digest in lineage_rows(body)), ""]
    return "\n".join(lines)


def title(body: Mapping[str, Any]) -> str:
    base = (body["lineage"].get("base") or {}).get("ref") or "unknown base"
    return f"{body.get('model_name') or 'run ' + body['run_id']} on {base}"


def write_training_report(body: Mapping[str, Any], out_dir: Path, *,
                          record: EvidenceRecord | None = None) -> dict[str, Path]:
    """Write report.html, summary.md and training_run.json into out_dir; returns format -> path."""
    return write_files(out_dir, FILES, html=render_html(body, record), markdown=render_markdown(body),
                       data=decision_json(body, record))


def find_training_run(store: Store, ref: str) -> EvidenceRecord:
    """A training_run record by evidence record id (a number) or by its run_id."""
    if ref.isdigit():
        try:
            record: EvidenceRecord | None = store.get(int(ref))
        except UserError:  # not a record id: maybe a run id made of digits
            record = None
        if record is not None and record.type == RecordType.TRAINING_RUN:
            return record
    matches = [r for r in store.records(type=RecordType.TRAINING_RUN) if r.body.get("run_id") == ref]
    if not matches:
        raise UserError("no training_run record with this record id or run id", where=ref,
                        fix="list them with `tunesafe training list` (or check --db)")
    return matches[-1]


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
