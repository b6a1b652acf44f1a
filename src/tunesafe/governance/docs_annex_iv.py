"""Technical documentation following EU AI Act Annex IV, generated from one model version's evidence.
CONTRACT:

    doc = annex_iv(facts) -> AnnexIV          # sections IV.1(a) .. IV.9 in the Annex's order
    paths = write_annex_iv(doc, out_dir)      # annex-iv.md, .html, .json; UserError if unwritable

Each section lists statements drawn from lineage records, each naming its record id and sha256. A section
no record fills says "missing evidence" and names the tunesafe controls whose evidence would fill it (or
that no control covers it: those parts, such as the EU declaration of conformity, are written by people).
The document never claims more than the records hold: it is a draft to complete, not a filing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesafe import __version__
from tunesafe.errors import UserError
from tunesafe.governance.facts import Facts, Source
from tunesafe.governance.lineage import LineageNode
from tunesafe.governance.lineage_svg import render_svg
from tunesafe.governance.render import render_template
from tunesafe.reports import view

__all__ = ["SECTIONS", "AnnexIV", "Section", "Statement", "annex_iv", "write_annex_iv"]

FILES = {"markdown": "annex-iv.md", "html": "annex-iv.html", "json": "annex-iv.json"}


@dataclass(frozen=True)
class Statement:
    text: str
    record_id: str
    record_hash: str


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    requires: str  # what the Annex asks for, abridged
    controls: tuple[str, ...]  # the controls whose evidence fills this section
    statements: tuple[Statement, ...]

    @property
    def missing(self) -> bool:
        return not self.statements


@dataclass(frozen=True)
class AnnexIV:
    model: str
    version: str | None
    model_record: str
    model_hash: str
    generated_at: str
    tool_version: str
    sections: tuple[Section, ...]
    lineage_svg: str = ""  # the lineage graph for the HTML output (each box names its record)

    def section(self, section_id: str) -> Section:
        return next(s for s in self.sections if s.id == section_id)

    def as_dict(self) -> dict[str, Any]:
        body = {**asdict(self), "sections": [{**asdict(s), "missing": s.missing} for s in self.sections]}
        del body["lineage_svg"]  # a picture of the records the JSON already lists
        return body


Filler = Callable[[Facts], list[Statement]]


def _nodes(*kinds: str) -> Filler:
    """One statement per lineage node of these kinds."""
    def fill(facts: Facts) -> list[Statement]:
        return [_stated(describe(node), Source.of(node)) for kind in kinds for node in facts.kind(kind)]
    return fill


def _performance(facts: Facts) -> list[Statement]:
    """IV.3: measured capabilities and limitations: the figures by attack family, then the limitations the
    evidence states."""
    out = [_stated(_metric_text(m.measure, m.group, m.value, m.low, m.high, m.k, m.n), m.source)
           for m in facts.metrics if m.group == "overall" or m.group.startswith("family:")]
    out += [_stated(f"Limitation: {text}", source) for text, source in facts.limitations
            if source is not None]
    return out


def _metrics_choice(facts: Facts) -> list[Statement]:
    """IV.4: which metrics decide (the gate's policy) and how far the judge behind them was validated."""
    out = []
    if facts.gate is not None:
        policy = facts.gate.body.get("policy") or {}
        out.append(_stated(
            f"Release metrics: paired attack success rate, refusal and over-refusal changes against the base "
            f"model, decided by policy {str(facts.gate.body.get('policy_hash'))[:12]} at alpha "
            f"{policy.get('alpha')} (the overall change tested alone; a group's p-value Holm-adjusted across "
            "its metric's attack families and harm categories together, and prompt kinds for over-refusal)",
            Source.of(facts.gate)))
    judge = facts.judge
    if judge is not None:
        if judge.agreement:
            agreed = (f"agreement with people's labels {view.pct(judge.agreement.get('rate'))} "
                      f"({judge.agreement.get('k')}/{judge.agreement.get('n')}, 95% CI "
                      f"{view.pct(judge.agreement.get('low'))}-{view.pct(judge.agreement.get('high'))}; "
                      f"judge audit record {judge.audit_record})")
        else:
            agreed = "not validated against people's labels (no judge audit: run `tunesafe judge audit`)"
        out.append(_stated(f"Judge {judge.name} v{judge.version}: {agreed}", judge.source))
    return out


def _not_recorded(_facts: Facts) -> list[Statement]:
    """Sections tunesafe keeps no record for (hardware, user interface, the declaration of conformity):
    always missing evidence, to be written by people."""
    return []


# (id, title, what the Annex requires, controls, filler); ids and wording from governance.md 1.5
SECTIONS: tuple[tuple[str, str, str, tuple[str, ...], Filler], ...] = (
    ("IV.1(a)", "General description", "intended purpose, provider, version and its relation to previous "
     "versions", ("PRE-00", "POST-04"), _nodes("model", "base", "role_decision")),
    ("IV.1(b)", "Interaction with other systems", "hardware or software, including other AI systems, it "
     "interacts with", ("PRE-05",), _nodes("deployment")),
    ("IV.1(c)", "Software versions", "versions of relevant software and requirements for updates",
     ("POST-04",), _nodes("adapter")),
    ("IV.1(d)", "Forms placed on the market", "packages, downloads, APIs", ("PRI-01",), _nodes("deployment")),
    ("IV.1(e)", "Hardware", "hardware on which it is intended to run", (), _not_recorded),
    ("IV.1(f)", "Product integration", "photos or illustrations when part of a product", (),
     _not_recorded),
    ("IV.1(g)", "User interface", "basic description of the user interface for the deployer", (),
     _not_recorded),
    ("IV.1(h)", "Instructions for use", "instructions for use for the deployer", (), _not_recorded),
    ("IV.2(a)", "Development methods", "development steps, including pre-trained systems and how they were "
     "used, integrated or modified (fine-tuning)", ("PRE-01", "DUR-01", "POST-04"),
     _nodes("base", "training_run", "adapter", "data_mix")),
    ("IV.2(b)", "Design specifications", "general logic, key design choices, what it optimises, trade-offs",
     ("DUR-01",), _nodes("training_run", "role_decision")),
    ("IV.2(c)", "Architecture and compute", "system architecture; computational resources used to develop, "
     "train, test and validate", ("DUR-01", "DUR-02"), _nodes("training_run")),
    ("IV.2(d)", "Data requirements", "datasheets: training data provenance, scope, selection, labelling, "
     "cleaning", ("PRE-02", "PRE-03"), _nodes("dataset", "data_mix", "data_scan")),
    ("IV.2(e)", "Human oversight", "human oversight measures (Art. 14) and interpretation aids",
     ("POST-05",), _nodes("attestation")),
    ("IV.2(f)", "Pre-determined changes", "pre-determined changes and how compliance is kept",
     ("PRE-00",), _nodes("role_decision")),
    ("IV.2(g)", "Validation and testing", "test data, metrics for accuracy and robustness, dated and signed "
     "test logs and reports", ("POST-01", "POST-02", "DUR-02"), _nodes("evaluation", "gate")),
    ("IV.2(h)", "Cybersecurity", "cybersecurity measures", ("PRE-05", "POST-03", "PROD-02"),
     _nodes("guardrail_verification", "redteam_run")),
    ("IV.3", "Monitoring, functioning and control", "capabilities and limitations in performance, "
     "foreseeable unintended outcomes and risks", ("POST-01", "POST-02"), _performance),
    ("IV.4", "Appropriateness of the performance metrics", "why these metrics fit the system",
     ("PRE-04", "POST-01"), _metrics_choice),
    ("IV.5", "Risk management system", "the risk management system (Art. 9)", ("PRE-04", "POST-05"),
     _nodes("gate", "attestation")),
    ("IV.6", "Changes through the lifecycle", "relevant changes made by the provider", ("POST-04",),
     _nodes("model", "training_run", "adapter")),
    ("IV.7", "Standards applied", "harmonised standards or other specifications applied", (),
     _not_recorded),
    ("IV.8", "EU declaration of conformity", "a copy of the declaration (Art. 47)", (), _not_recorded),
    ("IV.9", "Post-market monitoring", "the post-market monitoring system and plan (Art. 72)",
     ("PROD-01", "PROD-02", "PROD-04"), _nodes("deployment", "incident", "redteam_run")),
)


def annex_iv(facts: Facts, *, generated_at: str | None = None) -> AnnexIV:
    sections = tuple(Section(sid, title, requires, controls, tuple(_dedupe(fill(facts))))
                     for sid, title, requires, controls, fill in SECTIONS)
    lineage = facts.lineage
    return AnnexIV(model=lineage.model, version=lineage.version, model_record=facts.model.record_id,
                   model_hash=facts.model.record_hash,
                   generated_at=generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   tool_version=__version__, sections=sections, lineage_svg=render_svg(lineage))


def render(doc: AnnexIV) -> dict[str, str]:
    """format -> text, for every format in FILES."""
    context = {"doc": doc, "files": FILES}
    return {"markdown": render_template("annex_iv.md.j2", **context),
            "html": render_template("annex_iv.html.j2", **context),
            "json": json.dumps(doc.as_dict(), indent=2, ensure_ascii=False) + "\n"}


def write_annex_iv(doc: AnnexIV, out_dir: Path) -> dict[str, Path]:
    texts = render(doc)
    paths = {fmt: out_dir / name for fmt, name in FILES.items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt, path in paths.items():
            path.write_text(texts[fmt], encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the documentation: {exc.strerror or exc}", where=str(out_dir),
                        fix="pass a writable folder with --out") from None
    return paths


# ---- statements ----------------------------------------------------------------------------------------


def describe(node: LineageNode) -> str:
    """One sentence about a lineage node, from its record body."""
    body = node.body
    describer = _DESCRIBERS.get(node.kind)
    return describer(body, node) if describer is not None else node.label


def _model(body: Mapping[str, Any], node: LineageNode) -> str:
    role = "Base model" if node.kind == "base" else "Model"
    files = "; ".join(f"{f.get('role')} sha256 {f.get('sha256')}" for f in body.get("files") or ())
    parts = [f"{role} {body.get('name')} ({body.get('ref')})", f"stage {body.get('stage')}"]
    if body.get("owner"):
        parts.append(f"owner {body['owner']}")
    if body.get("base"):
        parts.append(f"fine-tuned from {body['base']}")
    if files:
        parts.append(files)
    return ", ".join(parts)


def _dataset(body: Mapping[str, Any], _node: LineageNode) -> str:
    size = f", {body['size']} bytes" if body.get("size") is not None else ""
    files = f" in {body['files']} files" if (body.get("files") or 1) > 1 else ""
    return f"Fine-tuning dataset {body.get('path') or 'rows'} (sha256 {body.get('sha256')}{size}{files})"


def _evaluation(body: Mapping[str, Any], node: LineageNode) -> str:
    summary = body.get("summary")
    if not isinstance(summary, Mapping):
        return node.label
    config = body.get("config") or {}
    suite = config.get("suite") or {}
    attacks = sorted({str(a.get("family")) for a in config.get("attacks") or ()})
    judges = ", ".join(f"{j.get('name')} v{j.get('version')}" for j in config.get("judges") or ())
    overall = (summary.get("groups") or {}).get("overall") or {}
    asr = overall.get("asr") or {}
    return (f"Evaluation run {body.get('run_id')} of {body.get('model_name') or body.get('model_ref')} "
            f"(model hash {str(body.get('model_hash'))[:16]}): suite {suite.get('name')} "
            f"v{suite.get('version')}, "
            f"{body.get('n_attempts')} attempts, attack families {', '.join(attacks) or 'none'}, judge "
            f"{judges or 'none'}, attack success rate {view.pct(asr.get('rate'))} "
            f"({asr.get('k')}/{asr.get('n')}), finished {body.get('finished_at')}")


def _gate(body: Mapping[str, Any], _node: LineageNode) -> str:
    decisive, _notes = view.reasons(body)
    because = f": {'; '.join(decisive[:3])}" if decisive else ""
    return (f"Release gate {str(body.get('verdict')).upper()} for {body.get('candidate_model')} against "
            f"{body.get('base_model')} (runs {(body.get('base') or {}).get('run_id')} / "
            f"{(body.get('candidate') or {}).get('run_id')}, policy {str(body.get('policy_hash'))[:12]}, "
            f"judge {body.get('judge')}){because}")


def _training_run(body: Mapping[str, Any], node: LineageNode) -> str:
    """Method, hyperparameters, data and compute of a fine-tuning run (IV.2(a)-(c))."""
    config = body.get("config") or {}
    adapters = config.get("adapter") or {}
    methods = [f"{a.get('peft_type')} r={a.get('r')} alpha={a.get('lora_alpha')} on "
               f"{', '.join(map(str, a.get('target_modules') or [])) or 'default modules'}"
               for a in adapters.values() if isinstance(a, Mapping)]
    lineage = body.get("lineage") or {}
    dataset = lineage.get("dataset") or {}
    timing = body.get("timing") or {}
    stopped = body.get("stopped_by") or {}
    why = f", stopped by {stopped.get('rule') or stopped.get('kind') or 'the callback'}" if stopped else ""
    parts = [f"Fine-tuning run {body.get('run_id')} ({body.get('status')}{why})",
             f"method {'; '.join(methods) or 'full fine-tuning'}",
             f"learning rate {config.get('learning_rate')}, epochs {config.get('num_train_epochs')}, "
             f"{body.get('steps')} of {body.get('planned_steps')} steps, seed {config.get('seed')}",
             f"base {(lineage.get('base') or {}).get('ref')}",
             f"data sha256 {dataset.get('sha256')}",
             f"{timing.get('wall_seconds')} s wall time, {len(body.get('probes') or ())} safety probes"]
    return ", ".join(parts) if body.get("run_id") else node.label


_DESCRIBERS: dict[str, Callable[[Mapping[str, Any], LineageNode], str]] = {
    "base": _model, "model": _model, "dataset": _dataset, "evaluation": _evaluation, "gate": _gate,
    "training_run": _training_run,
}


def _metric_text(measure: str, group: str, value: float | None, low: float | None, high: float | None,
                 k: int, n: int) -> str:
    return (f"{measure.replace('_', ' ')} ({group}): {view.pct(value)} ({k}/{n}, 95% CI "
            f"{view.pct(low)}-{view.pct(high)})")


def _stated(text: str, source: Source) -> Statement:
    return Statement(text, source.record_id, source.record_hash)


def _dedupe(statements: Sequence[Statement]) -> list[Statement]:
    return list(dict.fromkeys(statements))
