"""Production endpoints in the inventory: a deployed model (its inventory name and the version record it
serves), its URL (redacted) and the guardrail refs in front of it, as RecordType.ENDPOINT records
(subject = the endpoint name). As with models, nothing is edited in place: re-recording an endpoint
appends a record and the current state is the fold of its records in chain order.

An endpoint "lacks a verified guardrail" when no RecordType.GUARDRAIL_VERIFICATION naming it (body
`endpoint`) that passed, for one of its guardrails, comes after its latest endpoint record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.guardrails.base import canonical_ref, check_guard_ref
from tunesafe.models.refs import redact_ref
from tunesafe.production.inventory import check_name, get_model
from tunesafe.types import EvidenceRecord, RecordType


@dataclass(frozen=True)
class Endpoint:
    name: str
    model: str
    model_version_record: int
    url: str | None
    guardrails: tuple[str, ...]
    record_id: int
    created_at: str
    verification: Mapping[str, Any] | None = None  # the latest passed verification, when there is one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fold(records: Iterable[EvidenceRecord]) -> dict[str, Endpoint]:
    state: dict[str, Endpoint] = {}
    for rec in sorted(records, key=lambda r: r.id):
        body = rec.body
        state[str(body["name"])] = Endpoint(
            name=str(body["name"]), model=str(body["model"]),
            model_version_record=int(body["model_version_record"]), url=body.get("url"),
            guardrails=tuple(body.get("guardrails", ())), record_id=rec.id,
            created_at=rec.created_at)
    return state


def _verified(endpoint: Endpoint, verifications: Sequence[EvidenceRecord]) -> EvidenceRecord | None:
    passed = [r for r in verifications if r.id > endpoint.record_id and r.body.get("verdict") == "pass"
              and r.body.get("endpoint") == endpoint.name and r.body.get("guard_ref") in endpoint.guardrails]
    return max(passed, key=lambda r: r.id) if passed else None


def endpoints(store: Store) -> dict[str, Endpoint]:
    """Every endpoint's current state with its latest passed guardrail verification, by name."""
    state = _fold(store.records(type=RecordType.ENDPOINT))
    verifications = list(store.records(type=RecordType.GUARDRAIL_VERIFICATION))
    out = {}
    for name, endpoint in state.items():
        found = _verified(endpoint, verifications)
        summary = None if found is None else {"id": found.id, "guard_ref": found.body["guard_ref"],
                                              "created_at": found.created_at}
        out[name] = Endpoint(**{**endpoint.as_dict(), "verification": summary})
    return out


def get_endpoint(store: Store, name: str) -> Endpoint:
    known = endpoints(store)
    if name not in known:
        raise UserError(f"endpoint {name!r} is not in the inventory", where="--endpoint",
                        fix="add it first: tunesafe models endpoint NAME --model MODEL --guard REF")
    return known[name]


def add_endpoint(store: Store, name: str, *, model: str, url: str | None, guardrails: Sequence[str],
                 actor: str | None = None) -> Endpoint:
    """Record (or re-record) an endpoint serving inventory model `model`'s current version."""
    check_name(name)
    version = get_model(store, model)
    for guard in guardrails:  # a ref no verification can name would leave the endpoint unverifiable
        check_guard_ref(guard)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(f"not an http(s) URL: {redact_ref(url)!r}", where="--url",
                            fix="write it in full, e.g. https://bot.example/v1")
    body = {"name": name, "model": model, "model_version_record": version.record_id,
            "url": redact_ref(url) if url else None,
            "guardrails": sorted({redact_ref(canonical_ref(g)) for g in guardrails})}  # never credentials
    store.append(RecordType.ENDPOINT, body, actor=actor, subject=name)
    return endpoints(store)[name]


def list_endpoints(store: Store, *, missing_guardrail: bool = False) -> list[Endpoint]:
    found = endpoints(store).values()
    return sorted((e for e in found if not missing_guardrail or e.verification is None), key=lambda e: e.name)
