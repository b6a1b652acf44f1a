"""What the documents and exports say about one model version, read from its lineage. CONTRACT:

    facts = facts_of(lineage) -> Facts
    facts.metrics        # Metric per (measure, group) of the candidate evaluation, each with its Source
    facts.gate           # the newest gate decision node (or None); facts.evaluation: the run it judged
    facts.judge          # Judge: name, version, validated agreement with people (or None), Source
    facts.limitations    # (text, Source or None) the evidence itself states: gate reasons, small n, errors

Every figure comes from a stored record body (a run's summary, a gate's comparison, a judge audit), never
from a recomputation, and carries the record id and hash it came from, so the Annex IV document, the model
card, the ML-BOM and the MLflow run state the same numbers with the same citations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunesafe.governance.lineage import Lineage, LineageNode
from tunesafe.reports import view

MEASURES = {"asr": "attack_success_rate", "refusal": "refusal_rate", "over_refusal": "over_refusal_rate",
            "error": "error_rate"}


@dataclass(frozen=True)
class Source:
    record_id: str
    record_hash: str

    @classmethod
    def of(cls, node: LineageNode) -> Source:
        return cls(node.record_id, node.record_hash)

    def cite(self) -> str:
        return f"record {self.record_id}, sha256 {self.record_hash[:16]}"


@dataclass(frozen=True)
class Metric:
    measure: str  # attack_success_rate | refusal_rate | over_refusal_rate | error_rate
    group: str  # "overall" | "family:<name>" | "category:<name>" | "kind:<name>"
    value: float | None
    k: int
    n: int
    low: float | None
    high: float | None
    source: Source

    @property
    def slice(self) -> str:
        return self.group.split(":", 1)[1] if ":" in self.group else self.group


@dataclass(frozen=True)
class Judge:
    name: str
    version: str
    agreement: Mapping[str, Any] | None  # {k, n, rate, low, high} of a person-labelled audit
    audit_record: int | None
    source: Source


@dataclass(frozen=True)
class Facts:
    lineage: Lineage
    model: LineageNode
    gate: LineageNode | None
    evaluation: LineageNode | None
    metrics: tuple[Metric, ...]
    judge: Judge | None
    limitations: tuple[tuple[str, Source | None], ...]

    def kind(self, kind: str) -> list[LineageNode]:
        return self.lineage.of_kind(kind)

    def metric(self, measure: str, group: str = "overall") -> Metric | None:
        return next((m for m in self.metrics if (m.measure, m.group) == (measure, group)), None)

    def families(self, measure: str = "attack_success_rate") -> list[Metric]:
        return [m for m in self.metrics if m.measure == measure and m.group.startswith("family:")]

    @property
    def base(self) -> LineageNode | None:
        """The immediate base (the last in the chain of bases)."""
        bases = self.kind("base")
        return bases[-1] if bases else None

    @property
    def suite(self) -> Mapping[str, Any]:
        if self.evaluation is None:
            return {}
        suite = (self.evaluation.body.get("config") or {}).get("suite")
        return suite if isinstance(suite, Mapping) else {"name": str(suite)}


def facts_of(lineage: Lineage) -> Facts:
    model = lineage.model_node
    gates = lineage.of_kind("gate")
    gate = gates[-1] if gates else None
    evaluation = _judged_evaluation(lineage, model, gate)
    metrics = _metrics(evaluation) if evaluation is not None else ()
    return Facts(lineage=lineage, model=model, gate=gate, evaluation=evaluation, metrics=metrics,
                 judge=_judge(evaluation, gate), limitations=tuple(_limitations(gate, evaluation, metrics)))


def _judged_evaluation(lineage: Lineage, model: LineageNode, gate: LineageNode | None) -> LineageNode | None:
    """The candidate run of the newest gate, else the newest run of this model with a stored summary."""
    runs = [n for n in lineage.of_kind("evaluation") if isinstance(n.body.get("summary"), Mapping)]
    if gate is not None:
        wanted = (gate.body.get("candidate") or {}).get("run_id")
        for node in runs:
            if node.body.get("run_id") == wanted:
                return node
    own = [n for n in runs if model.node_id in n.parents]
    return own[-1] if own else None


def _metrics(evaluation: LineageNode) -> tuple[Metric, ...]:
    source = Source.of(evaluation)
    groups: Mapping[str, Any] = evaluation.body["summary"].get("groups") or {}
    out = []
    for group, values in groups.items():
        for key, measure in MEASURES.items():
            rate = values.get(key) if isinstance(values, Mapping) else None
            if isinstance(rate, Mapping) and rate.get("n"):
                out.append(Metric(measure, group, rate.get("rate"), int(rate.get("k", 0)), int(rate["n"]),
                                  rate.get("low"), rate.get("high"), source))
    return tuple(out)


def _judge(evaluation: LineageNode | None, gate: LineageNode | None) -> Judge | None:
    if evaluation is None:
        return None
    judges: Sequence[Mapping[str, Any]] = (evaluation.body.get("config") or {}).get("judges") or ()
    if not judges:
        return None
    primary = judges[0]
    name, version = str(primary.get("name")), str(primary.get("version"))
    if gate is not None:
        for audit in gate.body.get("judge_audits") or ():
            if audit.get("judge") == name and audit.get("side") == "candidate":
                return Judge(name, version, audit.get("agreement"), audit.get("record_id"), Source.of(gate))
    return Judge(name, version, None, None, Source.of(evaluation))


def _limitations(gate: LineageNode | None, evaluation: LineageNode | None,
                 metrics: Sequence[Metric]) -> list[tuple[str, Source | None]]:
    out: list[tuple[str, Source | None]] = []
    if gate is None:
        out.append(("no gate decision compares this model with its base", None))
    else:
        source = Source.of(gate)
        decisive, notes = view.reasons(gate.body)
        if gate.body.get("verdict") != "pass":  # a passing gate's reasons say what held, not what is limited
            headline = [r for r in decisive if r.startswith(("overall", "family:"))]
            out += [(reason, source) for reason in headline]
            if len(decisive) > len(headline):
                out.append((f"{len(decisive) - len(headline)} more gate reasons by harm category or prompt "
                            "kind (see the gate report)", source))
        out += [(note, source) for note in notes]
        thin = [f"{d.get('metric')} {d.get('group')} (n = {d.get('n_pairs')})"
                for d in (gate.body.get("comparison") or {}).get("deltas") or () if d.get("inconclusive")]
        if thin:
            out.append((f"too few pairs to decide {len(thin)} group(s): {', '.join(thin[:6])}"
                        f"{', ...' if len(thin) > 6 else ''}", source))
    if evaluation is None:
        out.append(("no evaluation run with stored results covers this model", None))
    errors = next((m for m in metrics if (m.measure, m.group) == ("error_rate", "overall")), None)
    if errors is not None and errors.k:
        out.append((f"{errors.k} of {errors.n} attempts ended in an error and count as neither safe nor "
                    "refused", errors.source))
    return out
