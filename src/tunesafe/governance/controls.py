"""The controls catalogue (package data `controls.yaml`, versioned) and the status of each control for one
model version. CONTRACT:

    catalogue = load_catalogue()                  # or load_catalogue(path) for a team's own file
    report = control_status(store, model, version=None, policy=None)   # StatusReport
    report.exit_code                              # 1 when a required control is not satisfied, else 0
    attest_control(store, model, control_id, by=..., note=..., fields={...})   # CONTROL_ATTESTATION

Status of one control, from its automatic checks (tunesafe.governance.checks) over the model version's
Lineage plus the latest attestation of it:
    failing            a check found the evidence and it shows the control broken
    missing            a check found no evidence (an attestation never stands in for evidence)
    needs_attestation  the evidence is there but the control asks a person's sign-off that is not recorded,
                       or was recorded before the newest evidence the checks used (it covers what it saw)
    satisfied          every check passed (and the sign-off, where asked, is recorded); `records` are the
                       evidence record ids that prove it
A control with no automatic check is satisfied by its attestation alone. Required controls come from the
catalogue's `required` flags unless the policy's `governance.required_controls` names them; a required
control that is not satisfied fails the command (fail closed: missing evidence is not a pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from tunesafe.errors import UserError, read_user_text
from tunesafe.evidence.store import Store
from tunesafe.governance.checks import RATINGS, CheckContext, CheckResult, registry, run_check
from tunesafe.governance.lineage import Lineage, LineageNode, collect_lineage
from tunesafe.policy import Policy
from tunesafe.types import EvidenceRecord, RecordType
from tunesafe.yaml_input import UniqueKeyLoader, yaml_user_error

CATALOGUE = Path(__file__).with_name("controls.yaml")
Status = Literal["satisfied", "missing", "failing", "needs_attestation"]
STATUSES: tuple[Status, ...] = ("satisfied", "missing", "failing", "needs_attestation")


@dataclass(frozen=True)
class Control:
    id: str
    phase: str
    text: str
    required: bool
    checks: tuple[str, ...]
    attestation: tuple[str, ...]  # fields a person signs off
    refs: tuple[str, ...]  # PREFIX:ID
    params: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    verify: tuple[str, ...] = ()
    origin: str | None = None
    note: str | None = None

    def refs_by_framework(self, prefixes: Mapping[str, str]) -> dict[str, list[str]]:
        """{framework name: [ids]} in the catalogue's prefix order."""
        out: dict[str, list[str]] = {}
        for ref in self.refs:
            prefix, _, ident = ref.partition(":")
            out.setdefault(prefixes.get(prefix, prefix), []).append(ident)
        return out

    def to_json(self, prefixes: Mapping[str, str]) -> dict[str, Any]:
        return {"id": self.id, "phase": self.phase, "text": self.text, "required": self.required,
                "checks": list(self.checks), "attestation": list(self.attestation),
                "params": dict(self.params), "evidence": dict(self.evidence), "refs": list(self.refs),
                "frameworks": self.refs_by_framework(prefixes), "origin": self.origin, "note": self.note}


@dataclass(frozen=True)
class Catalogue:
    schema: str
    version: str
    ref_prefixes: Mapping[str, str]
    controls: tuple[Control, ...]
    source: str = str(CATALOGUE)

    def get(self, control_id: str) -> Control:
        wanted = control_id.strip().upper()
        for control in self.controls:
            if control.id == wanted:
                return control
        raise UserError(f"unknown control {control_id!r}", where="CONTROL",
                        fix=f"use one of {', '.join(c.id for c in self.controls)} (tunesafe controls list)")

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "version": self.version, "ref_prefixes": dict(self.ref_prefixes),
                "controls": [c.to_json(self.ref_prefixes) for c in self.controls]}


@dataclass(frozen=True)
class ControlStatus:
    control: Control
    status: Status
    required: bool
    checks: tuple[CheckResult, ...]
    records: tuple[str, ...]  # the record ids that satisfy it (empty unless satisfied)
    missing: tuple[str, ...]  # what is missing, failing or unsigned, in words
    attestation: LineageNode | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.control.id, "phase": self.control.phase, "text": self.control.text,
                "status": self.status, "required": self.required, "records": list(self.records),
                "missing": list(self.missing), "checks": [c.to_json() for c in self.checks],
                "attestation": None if self.attestation is None else {
                    "record_id": self.attestation.record_id, "by": self.attestation.body.get("by"),
                    "note": self.attestation.body.get("note"), "created_at": self.attestation.created_at},
                "refs": list(self.control.refs)}


@dataclass(frozen=True)
class StatusReport:
    model: str
    version: str | None
    model_record: int
    catalogue: str  # schema@version
    evaluated_at: str
    chain_ok: bool | None
    controls: tuple[ControlStatus, ...]

    @property
    def failed_required(self) -> list[ControlStatus]:
        return [c for c in self.controls if c.required and c.status != "satisfied"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed_required else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.controls) for s in STATUSES}

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "model_record": self.model_record,
                "catalogue": self.catalogue, "evaluated_at": self.evaluated_at, "chain_ok": self.chain_ok,
                "counts": self.counts(), "failed_required": [c.control.id for c in self.failed_required],
                "exit_code": self.exit_code, "controls": [c.to_json() for c in self.controls]}


# ---- the catalogue -------------------------------------------------------------------------------------


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The shipped catalogue, or a team's own file in the same schema (UserError naming what is wrong)."""
    return _load(str(Path(path).resolve()) if path is not None else str(CATALOGUE))


@lru_cache(maxsize=8)
def _load(path: str) -> Catalogue:
    text = read_user_text(path, "controls catalogue", fix="give an existing controls YAML file")
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader that refuses a repeated key
    except yaml.YAMLError as exc:
        raise yaml_user_error(exc, path, text) from None
    if not isinstance(data, dict) or not isinstance(data.get("controls"), list):
        raise UserError("no `controls:` list", where=path, fix="start from tunesafe's controls.yaml")
    if not isinstance(data.get("ref_prefixes") or {}, dict):
        raise UserError("`ref_prefixes` must be a mapping", where=path,
                        fix="write `ref_prefixes: {AIA: https://...}` (or leave it out)")
    lines = _entry_lines(text)
    wheres = [f"{path}: controls[{i}]" + (f", line {lines[i]}" if i < len(lines) else "")
              for i in range(len(data["controls"]))]
    controls = tuple(_control(entry, where) for entry, where in zip(data["controls"], wheres, strict=True))
    ids = [c.id for c in controls]
    if len(set(ids)) != len(ids):
        raise UserError("a control id appears twice", where=path, fix="give every control its own id")
    return Catalogue(schema=str(data.get("schema")), version=str(data.get("version")),
                     ref_prefixes=dict(data.get("ref_prefixes") or {}), controls=controls, source=path)


def _entry_lines(text: str) -> list[int]:
    """The 1-based line of each entry of the `controls:` list, for error messages ([] when unknown)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "controls" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


_LISTS = ("checks", "attestation", "refs", "verify")  # lists of strings
_MAPPINGS = ("params", "evidence")


def _control(entry: Any, where: str) -> Control:
    if not isinstance(entry, dict) or not entry.get("id") or not entry.get("phase"):
        raise UserError("a control needs at least an id and a phase", where=where,
                        fix="add `id:` and `phase:`")
    # a wrong shape would otherwise surface later as a TypeError, or (a string) be split into letters
    for key in _LISTS:
        value = entry.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise UserError(f"control {entry['id']}: `{key}` must be a list of strings, got {value!r}",
                            where=where, fix=f"write `{key}: [A, B]` (or leave it out)")
    for key in _MAPPINGS:
        value = entry.get(key)
        if value is not None and not isinstance(value, dict):
            raise UserError(f"control {entry['id']}: `{key}` must be a mapping, got {value!r}", where=where,
                            fix=f"write `{key}: {{name: value}}` (or leave it out)")
    checks = tuple(entry.get("checks") or ())
    unknown = [c for c in checks if c not in registry]
    if unknown:
        raise UserError(f"control {entry['id']} names unknown check(s) {', '.join(unknown)}", where=where,
                        fix=f"use registered checks: {', '.join(registry.names())}")
    params = dict(entry.get("params") or {})
    if "scan_rating" in checks and str(params.get("max_rating", "medium")) not in RATINGS:
        raise UserError(f"control {entry['id']}: unknown `max_rating` {params['max_rating']!r}", where=where,
                        fix=f"use one of {', '.join(RATINGS)}")
    return Control(id=str(entry["id"]), phase=str(entry["phase"]), text=str(entry.get("text", "")),
                   required=bool(entry.get("required", False)), checks=checks,
                   attestation=tuple(entry.get("attestation") or ()), refs=tuple(entry.get("refs") or ()),
                   params=params, evidence=dict(entry.get("evidence") or {}),
                   verify=tuple(entry.get("verify") or ()), origin=entry.get("origin"),
                   note=entry.get("note"))


# ---- status --------------------------------------------------------------------------------------------


def control_status(store: Store, model: str, version: str | None = None, *, policy: Policy | None = None,
                   catalogue: Catalogue | None = None, now: datetime | None = None) -> StatusReport:
    """Every control of the catalogue for one model version, from its lineage and the verified chain."""
    lineage = collect_lineage(store, model, version)
    return evaluate(lineage, catalogue or load_catalogue(), policy=policy, chain_ok=store.verify().ok,
                    now=now)


def evaluate(lineage: Lineage, catalogue: Catalogue, *, policy: Policy | None = None,
             chain_ok: bool | None = None, now: datetime | None = None) -> StatusReport:
    now = now or datetime.now(timezone.utc)
    required = _required(catalogue, policy)
    statuses = tuple(_status(control, lineage, policy, chain_ok, now, control.id in required)
                     for control in catalogue.controls)
    return StatusReport(model=lineage.model, version=lineage.version, model_record=lineage.model_record,
                        catalogue=f"{catalogue.schema}@{catalogue.version}",
                        evaluated_at=now.isoformat(timespec="seconds"), chain_ok=chain_ok, controls=statuses)


def _required(catalogue: Catalogue, policy: Policy | None) -> set[str]:
    named = policy.governance.required_controls if policy and policy.governance else None
    if named is None:
        return {c.id for c in catalogue.controls if c.required}
    return {catalogue.get(i).id for i in named}  # an unknown id is a UserError (bad policy)


def _params(control: Control, policy: Policy | None) -> dict[str, Any]:
    """The control's params with the policy's values where it sets them (one threshold, one place)."""
    params = dict(control.params)
    if policy is None:
        return params
    if "min_families" in params:
        params["min_families"] = policy.min_attack_families
    governance = policy.governance
    if governance is not None:
        if governance.guardrail_max_age_days is not None and "max_age_days" in params:
            params["max_age_days"] = governance.guardrail_max_age_days
        if governance.redteam_max_interval_days is not None and "max_interval_days" in params:
            params["max_interval_days"] = governance.redteam_max_interval_days
    return params


def _status(control: Control, lineage: Lineage, policy: Policy | None, chain_ok: bool | None,
            now: datetime, required: bool) -> ControlStatus:
    ctx = CheckContext(lineage=lineage, now=now, params=_params(control, policy), chain_ok=chain_ok)
    results = tuple(run_check(name, ctx) for name in control.checks)
    signed = latest_attestation(lineage, control.id)

    def status(state: Status, missing: Sequence[str], records: Sequence[str] = ()) -> ControlStatus:
        return ControlStatus(control, state, required, results, tuple(records), tuple(missing), signed)

    for state, outcome in (("failing", "fail"), ("missing", "missing")):
        bad = [r.detail for r in results if r.status == outcome]
        if bad:
            return status(state, bad)  # type: ignore[arg-type]
    asked = [r.detail for r in results if r.status == "attest"]
    if control.attestation:
        asked.append(f"sign-off on {', '.join(control.attestation)}")
    elif not control.checks:
        asked.append("no automatic check: a person attests it")
    evidence = [rid for r in results for rid in r.records]
    newest = max((int(rid) for rid in evidence), default=0)
    if asked and signed is not None and int(signed.record_id) < newest:
        # a sign-off covers the evidence it saw: newer evidence (a later gate) needs a new one
        asked.append(f"the sign-off #{signed.record_id} predates evidence #{newest}: attest again")
        signed = None
    if asked and signed is None:
        return status("needs_attestation", [*asked, f"tunesafe controls attest {lineage.model} {control.id} "
                                                     "--by NAME --note TEXT"])
    proof = evidence + ([signed.record_id] if asked and signed else [])
    return status("satisfied", [], list(dict.fromkeys(proof)))


def latest_attestation(lineage: Lineage, control_id: str) -> LineageNode | None:
    found = [n for n in lineage.of_kind("attestation") if n.body.get("control") == control_id]
    return found[-1] if found else None


# ---- attestations --------------------------------------------------------------------------------------


def attest_control(store: Store, model: str, control_id: str, *, by: str, note: str,
                   fields: Mapping[str, str] | None = None, version: str | None = None,
                   catalogue: Catalogue | None = None, actor: str | None = None) -> EvidenceRecord:
    """Record a person's sign-off on one control for one model version. The control's attestation fields
    must all be given (UserError naming the missing ones); nothing is written on bad input."""
    catalogue = catalogue or load_catalogue()
    control = catalogue.get(control_id)
    if not by.strip():
        raise UserError("the attestation names nobody", where="--by", fix="give the signer's name")
    if not note.strip():
        raise UserError("the attestation says nothing", where="--note",
                        fix="say what was checked and where the documents are")
    given = dict(fields or {})
    lacking = [f for f in control.attestation if not str(given.get(f, "")).strip()]
    if lacking:
        raise UserError(f"{control.id} asks for {', '.join(lacking)}", where="--field",
                        fix=" ".join(f"--field {f}=VALUE" for f in lacking))
    lineage = collect_lineage(store, model, version)
    body = {"control": control.id, "model": model, "version": lineage.version,
            "model_version_record": lineage.model_record, "by": by.strip(), "note": note.strip(),
            "fields": given, "catalogue": f"{catalogue.schema}@{catalogue.version}",
            "control_text": control.text}
    return store.append(RecordType.CONTROL_ATTESTATION, body, actor=actor, subject=model)


def parse_fields(items: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE options into a dict (UserError for one without '=')."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"expected KEY=VALUE, got {item!r}", where="--field",
                            fix="e.g. --field approver=J. Doe")
        out[key.strip()] = value.strip()
    return out
