"""The hash chain: how a record's hash is computed and how a sequence of stored rows is checked.

hash = sha256(prev_hash || canonical_json(envelope)), envelope = {actor, body, created_at, subject, type}.
The body is stored as its canonical JSON text, so the envelope is assembled from the stored text without
parsing it: verify hashes exactly the bytes in the database, and any edit to them shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GENESIS = "0" * 64


# canonical_json of a str or None, without building an encoder per call (verify encodes 4 per record)
_scalar = json.JSONEncoder(ensure_ascii=False).encode


def envelope_text(type_: str, body_json: str, created_at: str, actor: str, subject: str | None) -> str:
    """canonical_json({"actor", "body", "created_at", "subject", "type"}) with the body already canonical;
    keys are written in sorted order by hand, which is what canonical_json would produce."""
    return (
        f'{{"actor":{_scalar(actor)},"body":{body_json},"created_at":{_scalar(created_at)},'
        f'"subject":{_scalar(subject)},"type":{_scalar(type_)}}}'
    )


def link_hash(prev_hash: str, envelope: str) -> str:
    return hashlib.sha256((prev_hash + envelope).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BrokenRecord:
    """The first record where the chain does not hold. `expected` is what the chain requires there,
    `found` what is stored."""

    id: int
    reason: str  # "hash" (content edited) | "link" (record deleted/reordered) | "head" (truncated/forked)
    # | "anchor" (not the hash written down elsewhere, e.g. a bundle's head: the chain was rewritten or cut)
    # | "results" (a run record whose results_digest its stored attempt rows no longer match:
    # tunesafe.engine.verify)
    expected: str
    found: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    first_bad: BrokenRecord | None = None


Row = tuple[int, str, str, str, str, str | None, str, str]  # id, type, body, created_at, actor, subject,
# prev_hash, hash


MISSING_HEAD = "no chain head"
MISSING_RECORD = "no such record"


def verify_rows(rows: Iterable[Row], head_id: int | None, head_hash: str | None,
                anchors: Mapping[int, str] | None = None) -> VerifyResult:
    """Walk rows in id order; stop at the first record whose link or content hash is wrong, then check
    that the chain ends where chain_head says it does (so deleting the newest records is caught too).
    head_id None: the chain_head row itself is gone, which is an edit too (reported, never a crash).
    `anchors` {id: hash} were written down outside the database (a bundle's head): whoever can edit the
    file can rewrite or cut the chain and its head consistently, but not make record id hash to them."""
    anchors = anchors or {}
    if head_id is None or head_hash is None:
        walked = verify_rows(rows, 0, GENESIS, anchors)
        if walked.first_bad is not None and walked.first_bad.reason != "head":
            return walked
        # the records chain correctly; what they end at is what the missing head should have said
        last = walked.first_bad.found if walked.first_bad is not None else f"0:{GENESIS}"
        bad = BrokenRecord(int(last.split(":")[0]), "head", last, MISSING_HEAD)
        return VerifyResult(False, walked.checked, 0, "", bad)
    prev_hash, last_id, checked = GENESIS, 0, 0
    for rid, type_, body, created_at, actor, subject, stored_prev, stored_hash in rows:
        checked += 1
        if stored_prev != prev_hash or rid != last_id + 1:
            # a gap in ids or a foreign prev_hash: a record before this one was deleted or moved
            bad = BrokenRecord(rid, "link", prev_hash, stored_prev)
            return VerifyResult(False, checked, head_id, head_hash, bad)
        expected = link_hash(prev_hash, envelope_text(type_, body, created_at, actor, subject))
        if expected != stored_hash:
            bad = BrokenRecord(rid, "hash", expected, stored_hash)
            return VerifyResult(False, checked, head_id, head_hash, bad)
        if rid in anchors and anchors[rid] != stored_hash:
            bad = BrokenRecord(rid, "anchor", anchors[rid], stored_hash)
            return VerifyResult(False, checked, head_id, head_hash, bad)
        prev_hash, last_id = stored_hash, rid
    beyond = sorted(rid for rid in anchors if rid > last_id)
    if beyond:  # the anchored record is gone: the chain was cut before it
        bad = BrokenRecord(beyond[0], "anchor", anchors[beyond[0]], MISSING_RECORD)
        return VerifyResult(False, checked, head_id, head_hash, bad)
    if (last_id, prev_hash) != (head_id, head_hash):
        bad = BrokenRecord(head_id, "head", f"{head_id}:{head_hash}", f"{last_id}:{prev_hash}")
        return VerifyResult(False, checked, head_id, head_hash, bad)
    return VerifyResult(True, checked, head_id, head_hash)
