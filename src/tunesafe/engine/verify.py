"""Verifying a store as a whole: the evidence chain, then every complete run's stored results against the
results_digest of its newest run record. The results live outside the chain (attempt_results), so the
chain alone cannot see a verdict or an answer edited, or a row added or deleted, in the database file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from sqlalchemy import select

from tunesafe.engine.results import load_results, read, results_digest
from tunesafe.evidence.chain import BrokenRecord, VerifyResult
from tunesafe.evidence.schema import RunRow
from tunesafe.evidence.store import Store
from tunesafe.types import EvidenceRecord, RecordType


def verify_store(store: Store, anchors: Mapping[int, str] | None = None) -> VerifyResult:
    """store.verify(anchors); when the chain holds, the first complete run whose results do not match
    its run record is the broken record (reason "results")."""
    result = store.verify(anchors)
    if not result.ok:
        return result
    for record in sorted(_newest_records(store).values(), key=lambda r: r.id):
        if _mismatch(store, record) is None:
            continue
        # a run re-opened while it was read (eval --retry-errors) is read again as it stands now: only a
        # mismatch that is still there is an edit
        again = _newest_records(store).get(record.body["run_id"])
        if again is not None and (bad := _mismatch(store, again)) is not None:
            return replace(result, ok=False, first_bad=bad)
    return result


def _newest_records(store: Store) -> dict[str, EvidenceRecord]:
    """Run id -> its newest run record, for the runs that are complete."""
    complete = {run_id for (run_id,) in read(store, select(RunRow.id).where(RunRow.status == "complete"))}
    newest: dict[str, EvidenceRecord] = {}
    for record in store.records(type=RecordType.RUN):
        if record.body.get("run_id") in complete:
            newest[record.body["run_id"]] = record
    return newest


def _mismatch(store: Store, record: EvidenceRecord) -> BrokenRecord | None:
    found = results_digest(load_results(store, record.body["run_id"]))
    expected = str(record.body.get("results_digest"))
    return None if found == expected else BrokenRecord(record.id, "results", expected, found)
