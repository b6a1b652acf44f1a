"""The safety lineage of one model version, read from the evidence store. CONTRACT (the controls, the
documents and the exports code against it):

    lineage = collect_lineage(store, model, version=None)   # UserError (exit 2): unknown model or version
    lineage.nodes                # base -> datasets (mixes, scans) -> training runs -> adapters -> model
                                 # -> evaluations -> gates -> deployments -> guardrail verifications ->
                                 # incidents (and their updates) / red-team runs; plus role decisions
                                 # and control attestations
    lineage.of_kind("gate")      # nodes of one kind, in chain order
    lineage.to_json()            # {"schema", "model", "version", "model_record", "nodes": [...]}

Every node names the evidence record it comes from (`record_id`, `record_hash`, `record_type`) and
carries that record's body. Most nodes *are* a record; a dataset or an adapter is an artefact declared
inside a record (a model version, a training run), so its `node_id` is `dataset:<sha256>` or
`adapter:<sha256>` while `record_id` names the declaring record. `parents` are node ids, which equal
record ids for record nodes.

How records join (nothing is guessed from names alone where a hash exists):
- versions: the n-th `model_version` record of the name is version n; evidence *after* a version's
  record and before the next version's record is about that version (as the inventory reads it).
- bases: the base named in the version record, at its latest version recorded before this one.
- training runs: subject = the model name (recorded between the previous version and the next), or the
  saved adapter's sha256 / path equals a file of the model version.
- datasets: those the model version declares plus those its training runs trained on (sha256);
  `data_mix` records whose mixed file is one of them; `data_scan` records of the same sha256.
- evaluations: `run` records naming the model of this version (the version the run was checked against
  when it started, else in the window; a re-judged run where the run that generated its answers stands:
  production.inventory.evaluates), and the runs each gate compared.
- gates: `gate_decision` with candidate_model = the model; deployments: `endpoint` records serving
  this version record; guardrail verifications: of an endpoint, after its record (until re-recorded).
- incidents and red-team runs: subject = the model name, in the version's window; role decisions and
  attestations: naming this version record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import evaluates
from tunesafe.types import EvidenceRecord, RecordType

SCHEMA = "tunesafe.lineage/v1"
# chain order: how nodes are listed and laid out
KINDS = ("base", "dataset", "data_mix", "data_scan", "training_run", "adapter", "model", "role_decision",
         "evaluation", "gate", "deployment", "guardrail_verification", "incident", "incident_update",
         "redteam_run", "attestation")


@dataclass(frozen=True)
class LineageNode:
    kind: str
    record_id: str
    record_hash: str
    label: str
    created_at: str
    body: Mapping[str, Any]
    parents: tuple[str, ...] = ()
    node_id: str = ""  # unique in the lineage; empty means the record id
    record_type: str = ""
    record: EvidenceRecord | None = field(default=None, compare=False, repr=False)  # the record itself

    def __post_init__(self) -> None:
        if not self.node_id:
            object.__setattr__(self, "node_id", self.record_id)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.node_id, "kind": self.kind, "record_id": self.record_id,
                "record_type": self.record_type, "record_hash": self.record_hash, "label": self.label,
                "created_at": self.created_at, "parents": list(self.parents), "body": dict(self.body)}


@dataclass(frozen=True)
class Lineage:
    model: str
    version: str | None
    nodes: tuple[LineageNode, ...]
    model_record: int = 0  # the model_version record of this version
    versions: tuple[int, ...] = field(default=())  # every version record of the model, oldest first

    def of_kind(self, kind: str) -> list[LineageNode]:
        return [n for n in self.nodes if n.kind == kind]

    def node(self, node_id: str) -> LineageNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def children(self, node_id: str) -> list[LineageNode]:
        return [n for n in self.nodes if node_id in n.parents]

    def roots(self) -> list[LineageNode]:
        ids = {n.node_id for n in self.nodes}
        return [n for n in self.nodes if not any(p in ids for p in n.parents)]

    @property
    def model_node(self) -> LineageNode:
        return self.of_kind("model")[0]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "version": self.version,
                "model_record": self.model_record, "nodes": [n.to_json() for n in self.nodes]}


def collect_lineage(store: Store, model: str, version: str | None = None) -> Lineage:
    """The lineage of `model` at `version` ("3" or "v3"; None: the newest) from one read of the chain."""
    return lineage_from_records(list(store.records()), model, version)


def lineage_from_records(records: Sequence[EvidenceRecord], model: str,
                         version: str | None = None) -> Lineage:
    by_type: dict[str, list[EvidenceRecord]] = {}
    for rec in records:
        by_type.setdefault(rec.type, []).append(rec)
    versions = [r for r in by_type.get(RecordType.MODEL_VERSION, []) if r.body.get("name") == model]
    if not versions:
        raise UserError(f"model {model!r} is not in the inventory", where="MODEL",
                        fix="see `tunesafe models list`, or add it with `tunesafe models add`")
    index = _version_index(version, len(versions))
    builder = _Builder(by_type, model, versions, index)
    builder.build()
    return Lineage(model=model, version=str(index + 1), nodes=builder.ordered(),
                   model_record=versions[index].id, versions=tuple(r.id for r in versions))


# ---- private -------------------------------------------------------------------------------------------


def _version_index(version: str | None, count: int) -> int:
    if version is None:
        return count - 1
    text = version.strip().lower().removeprefix("v")
    # isdigit() alone accepts digits int() refuses (superscripts): a ValueError traceback, not a UserError
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= count:
        raise UserError(f"no version {version!r}", where="--version",
                        fix=f"use 1..{count} (the inventory numbers versions from 1), or leave it out "
                            "for the newest")
    return int(text) - 1


class _Builder:
    """Walks the record types in chain order and adds the nodes of one model version."""

    def __init__(self, by_type: Mapping[str, list[EvidenceRecord]], model: str,
                 versions: Sequence[EvidenceRecord], index: int) -> None:
        self.by_type = by_type
        self.model = model
        self.record = versions[index]
        self.lo = self.record.id
        self.hi = versions[index + 1].id if index + 1 < len(versions) else math.inf
        self.previous = versions[index - 1].id if index else 0
        self.version = index + 1
        self.nodes: dict[str, LineageNode] = {}
        self.base_id: str | None = None  # the immediate base's node id

    def records(self, type_: str) -> list[EvidenceRecord]:
        return self.by_type.get(type_, [])

    def in_window(self, rec: EvidenceRecord) -> bool:
        return self.lo < rec.id < self.hi

    def add(self, kind: str, rec: EvidenceRecord, label: str, parents: Iterable[str | None] = (), *,
            node_id: str | None = None, body: Mapping[str, Any] | None = None) -> str:
        key = node_id or str(rec.id)
        if key not in self.nodes:
            self.nodes[key] = LineageNode(
                kind=kind, record_id=str(rec.id), record_hash=rec.hash, label=label,
                created_at=rec.created_at, body=rec.body if body is None else body,
                parents=tuple(p for p in dict.fromkeys(parents) if p), node_id=key, record_type=rec.type,
                record=rec)
        return key

    def build(self) -> None:
        self.add_bases()
        files = list(self.record.body.get("files", ()))
        runs = self.training_runs(files)
        self.add_datasets(runs)
        adapters = self.add_adapters(runs, files)
        label = f"{self.model} v{self.version} ({self.record.body.get('ref')})"
        model_id = self.add("model", self.record, label, adapters or [self.base_id])
        self.add_evaluations(model_id)
        self.add_production(model_id)
        for type_, kind in ((RecordType.ROLE_DECISION, "role_decision"),
                            (RecordType.CONTROL_ATTESTATION, "attestation")):
            for rec in self.records(type_):
                if rec.subject == self.model and rec.body.get("model_version_record") == self.lo:
                    self.add(kind, rec, _decision_label(kind, rec), [model_id])

    def ordered(self) -> tuple[LineageNode, ...]:
        return tuple(sorted(self.nodes.values(), key=lambda n: (KINDS.index(n.kind), int(n.record_id),
                                                                 n.node_id)))

    # -- before: bases, datasets, training ------------------------------------------------------------

    def add_bases(self) -> None:
        chain: list[EvidenceRecord] = []
        name, before = self.record.body.get("base"), self.lo
        all_versions = self.records(RecordType.MODEL_VERSION)
        while name and len(chain) < 50:
            found = [r for r in all_versions if r.body.get("name") == name and r.id < before]
            if not found or any(r.body.get("name") == name for r in chain):
                break
            chain.append(found[-1])
            name, before = found[-1].body.get("base"), found[-1].id
        parent: str | None = None
        for rec in reversed(chain):  # root first
            parent = self.add("base", rec, f"{rec.body['name']} ({rec.body.get('ref')})", [parent])
        self.base_id = parent

    def training_runs(self, files: Sequence[Mapping[str, Any]]) -> list[EvidenceRecord]:
        shas = {f.get("sha256") for f in files}
        paths = {f.get("path") for f in files}
        found = []
        for rec in self.records(RecordType.TRAINING_RUN):
            adapter = (rec.body.get("lineage") or {}).get("adapter") or {}
            named = rec.subject == self.model and self.previous < rec.id < self.hi
            if named or adapter.get("sha256") in shas - {None} or adapter.get("path") in paths - {None}:
                found.append(rec)
        return found

    def add_datasets(self, runs: Sequence[EvidenceRecord]) -> None:
        declared: list[tuple[Mapping[str, Any], EvidenceRecord]] = [
            (d, self.record) for d in self.record.body.get("datasets", ())]
        declared += [((r.body.get("lineage") or {}).get("dataset") or {}, r) for r in runs]
        for entry, rec in sorted(declared, key=lambda pair: pair[1].id):
            sha = entry.get("sha256")
            if not sha:
                continue
            mix = next((m for m in self.records(RecordType.DATA_MIX) if m.body.get("mixed_sha256") == sha),
                       None)
            parent = self.base_id
            if mix is not None:
                source = f"dataset:{mix.body.get('data_sha256')}"
                self.add("dataset", mix, f"dataset {str(mix.body.get('data_sha256'))[:12]} (before mixing)",
                         [self.base_id], node_id=source,
                         body={"sha256": mix.body.get("data_sha256"), "path": mix.body.get("data")})
                parent = self.add("data_mix", mix, f"safety mix ratio {mix.body.get('ratio')} "
                                  f"(+{mix.body.get('n_added')} examples)", [source])
            node = f"dataset:{sha}"
            self.add("dataset", rec, f"dataset {sha[:12]} ({entry.get('path') or 'rows'})", [parent],
                     node_id=node, body=dict(entry))
        shas = {n.body.get("sha256"): n.node_id for n in self.nodes.values() if n.kind == "dataset"}
        for scan in self.records(RecordType.DATA_SCAN):
            sha = (scan.body.get("dataset") or {}).get("sha256")
            if sha in shas:
                self.add("data_scan", scan, f"data scan: rating {scan.body.get('rating')}", [shas[sha]])
        for rec in runs:
            lineage = rec.body.get("lineage") or {}
            sha = (lineage.get("dataset") or {}).get("sha256")
            self.add("training_run", rec, f"training run {rec.body.get('run_id')}: {rec.body.get('status')}, "
                     f"{rec.body.get('steps')} steps", [shas.get(sha), self.base_id])

    def add_adapters(self, runs: Sequence[EvidenceRecord],
                     files: Sequence[Mapping[str, Any]]) -> list[str]:
        """Adapter nodes: each training run's saved weights (its `output` event when there is one) and the
        projections of those; returns the ones the model version is made of."""
        outputs = {e.body.get("run_id"): e for e in self.records(RecordType.TRAINING_EVENT)
                   if e.body.get("kind") == "output"}
        by_sha: dict[str, str] = {}
        by_path: dict[str, str] = {}
        for rec in runs:
            run_id = rec.body.get("run_id")
            event = outputs.get(run_id)
            adapter = ((event.body.get("adapter") if event else None)
                       or (rec.body.get("lineage") or {}).get("adapter"))
            if not adapter or not adapter.get("sha256"):
                continue
            key = self.add("adapter", event or rec, f"adapter {adapter['sha256'][:12]} (run {run_id})",
                           [str(rec.id)], node_id=f"adapter:{adapter['sha256']}", body=dict(adapter))
            by_sha[adapter["sha256"]], by_path[str(adapter.get("path"))] = key, key
        model_shas = {f.get("sha256") for f in files}
        for rec in self.records(RecordType.ADAPTER_PROJECTION):
            source = (rec.body.get("input_adapter") or {}).get("sha256")
            out = rec.body.get("output_adapter") or {}
            if out.get("sha256") and (source in by_sha or out.get("sha256") in model_shas):
                key = self.add("adapter", rec, f"adapter {out['sha256'][:12]} ({rec.body.get('method')} "
                               "projection)", [by_sha.get(str(source))], node_id=f"adapter:{out['sha256']}",
                               body=rec.body)
                by_sha[out["sha256"]], by_path[str(out.get("path"))] = key, key
        made_of = []
        for entry in files:
            found: str | None = by_sha.get(str(entry.get("sha256"))) or by_path.get(str(entry.get("path")))
            if found is None and entry.get("role") == "adapter":  # produced outside tunesafe's records
                sha = str(entry.get("sha256"))
                found = self.add("adapter", self.record, f"adapter {sha[:12]} (declared)", [self.base_id],
                                 node_id=f"adapter:{sha}", body=dict(entry))
            if found is not None:
                made_of.append(found)
        return made_of

    # -- after: evaluations and gates -----------------------------------------------------------------

    def add_evaluations(self, model_id: str) -> None:
        runs = {r.body.get("run_id"): r for r in self.records(RecordType.RUN)}
        for rec in self.records(RecordType.RUN):
            if rec.body.get("model_name") == self.model and evaluates(rec, self.lo, self.hi):
                self.add("evaluation", rec, _run_label(rec), [model_id])
        for rec in self.records(RecordType.SAFETY_EVAL):
            pointer = str((rec.body.get("details") or {}).get("run_record"))
            if rec.body.get("model_version_record") == self.lo and pointer not in self.nodes:
                self.add("evaluation", rec, f"safety evaluation: {rec.body.get('verdict') or 'recorded'}",
                         [model_id])
        for rec in self.records(RecordType.GATE_DECISION):
            if rec.body.get("candidate_model") != self.model or not self.in_window(rec):
                continue
            parents = []
            # candidate first: a tree shows the gate under the run of the model it decided on
            for side, parent in (("candidate", model_id), ("base", self.base_id)):
                run = runs.get((rec.body.get(side) or {}).get("run_id"))
                if run is not None:
                    parents.append(self.add("evaluation", run, _run_label(run), [parent]))
            policy = str(rec.body.get("policy_hash"))[:12]
            self.add("gate", rec, f"gate: {rec.body.get('verdict')} (policy {policy})", parents or [model_id])

    # -- production: deployments, guardrails, incidents, red-teaming ----------------------------------

    def add_production(self, model_id: str) -> None:
        gates = [n for n in self.nodes.values() if n.kind == "gate"]
        endpoints = [r for r in self.records(RecordType.ENDPOINT)
                     if r.body.get("model") == self.model and r.body.get("model_version_record") == self.lo]
        later = self.records(RecordType.ENDPOINT)
        for rec in endpoints:
            before = [g.node_id for g in gates if int(g.record_id) < rec.id]
            name = rec.body.get("name")
            guards = ", ".join(rec.body.get("guardrails", ())) or "no guardrail"
            key = self.add("deployment", rec, f"endpoint {name} ({guards})", before[-1:] or [model_id])
            # verifications count for this endpoint record until the endpoint is re-recorded
            until = min((r.id for r in later if r.body.get("name") == name and r.id > rec.id),
                        default=math.inf)
            for ver in self.records(RecordType.GUARDRAIL_VERIFICATION):
                if ver.body.get("endpoint") == name and rec.id < ver.id < until:
                    self.add("guardrail_verification", ver,
                             f"guardrail {ver.body.get('guard_ref')}: {ver.body.get('verdict')}", [key])
        deployments = [n for n in self.nodes.values() if n.kind == "deployment"]
        updates = self.records(RecordType.INCIDENT_UPDATE)
        status = {u.body.get("incident"): u.body.get("status") for u in updates if u.body.get("status")}
        for type_, kind in ((RecordType.INCIDENT, "incident"), (RecordType.REDTEAM_RUN, "redteam_run")):
            for rec in self.records(type_):
                if rec.subject != self.model or not self.in_window(rec):
                    continue
                serving = [d.node_id for d in deployments if int(d.record_id) < rec.id]
                label = (f"incident {rec.id}: {rec.body.get('title')} ({rec.body.get('severity')}, "
                         f"{status.get(rec.id, rec.body.get('status'))})" if kind == "incident"
                         else f"red-team run {rec.body.get('period')}: {rec.body.get('verdict')}")
                key = self.add(kind, rec, label, serving[-1:] or [model_id])
                for update in (u for u in updates if u.body.get("incident") == rec.id):
                    self.add("incident_update", update, f"incident {rec.id} update: "
                             + ", ".join(sorted(k for k in update.body if k != "incident")), [key])


def _run_label(rec: EvidenceRecord) -> str:
    body = rec.body
    name = body.get("model_name") or body.get("model_ref")
    return f"evaluation run {body.get('run_id')} of {name} ({body.get('n_attempts')} attempts)"


def _decision_label(kind: str, rec: EvidenceRecord) -> str:
    if kind == "role_decision":
        return f"role decision: {rec.body.get('eu_role')}"
    return f"attestation {rec.body.get('control')} by {rec.body.get('by')}"
