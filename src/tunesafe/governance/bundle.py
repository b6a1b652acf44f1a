"""Evidence bundles an auditor checks offline. CONTRACT:

    info = bundle_model(evidence, out, signing_key=None) -> BundleInfo       # lineage + documents, zipped
    files = bundle_files(records, chain, documents, model=..., version=...)   # path -> bytes
    info = write_bundle(out, files, signing_key=None) -> BundleInfo           # a zip; UserError if unwritable
    check = verify_bundle(path, public_key=None) -> BundleCheck               # .ok, .problems (all of them)
    anchors = bundle_anchors(path) -> {record id: hash}   # its records and head, for `tunesafe verify`

A bundle is a zip of:
    manifest.json             format, model, the lineage records (id, type, hash), the chain segment's
                              first id and head, and the sha256 and size of every other file
    manifest.sig, signer.pub  optional: Ed25519 signature of manifest.json's exact bytes, the signer's key
    evidence/records.jsonl    the lineage's evidence records in chain order, each with its prev_hash/hash
    evidence/chain.jsonl      (id, prev_hash, hash) of every record from the first lineage record to the
                              store's head: the lineage records are shown to sit in one unbroken chain
    documents/..., reports/...  what was generated from those records

verify_bundle needs neither the store nor the network: it recomputes each record's hash from its content
(tunesafe.evidence.chain), walks the chain segment, and compares every file with the manifest. Tampering is
a finding, never an exception: every changed byte, missing or unlisted file, reordered or dropped record and
bad signature is named, so one run tells the auditor everything wrong. Only input that is not a bundle at
all (no such file, not a zip) is a UserError (exit 2).
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tunesafe import __version__
from tunesafe.errors import UserError
from tunesafe.evidence.chain import GENESIS, envelope_text, link_hash
from tunesafe.governance import keys
from tunesafe.governance.documents import ModelEvidence, model_documents
from tunesafe.governance.zip_layout import layout_problems
from tunesafe.json_lines import BadJson, decode, numbered_lines
from tunesafe.types import EvidenceRecord, canonical_json, sha256_hex

__all__ = ["FORMAT", "BundleCheck", "BundleInfo", "ChainLink", "bundle_anchors", "bundle_files",
           "bundle_model", "verify_bundle", "write_bundle"]

FORMAT = "tunesafe.bundle/v1"
MANIFEST, SIGNATURE, SIGNER = "manifest.json", "manifest.sig", "signer.pub"
RECORDS, CHAIN = "evidence/records.jsonl", "evidence/chain.jsonl"
_OWN = (MANIFEST, SIGNATURE, SIGNER)  # not listed in the manifest (it cannot list itself)


@dataclass(frozen=True)
class ChainLink:
    id: int
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    files: int  # listed in the manifest (it, the signature and the signer's key come on top)
    records: int
    chain_links: int
    signer: str | None  # fingerprint of the signing key


@dataclass
class BundleCheck:
    path: Path
    problems: list[str] = field(default_factory=list)
    model: str | None = None
    records: int = 0
    chain_links: int = 0
    files: int = 0
    signer: str | None = None  # fingerprint of the key whose signature verified
    pinned: bool = False  # the signature was checked against a key the auditor supplied

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "problems": self.problems, "model": self.model,
                "records": self.records, "chain_links": self.chain_links, "files": self.files,
                "signer": self.signer, "pinned": self.pinned}


# ---- building --------------------------------------------------------------------------------------------


def chain_segment(records: Iterable[EvidenceRecord], first_id: int) -> list[ChainLink]:
    """The links of `records` (a store's records in chain order) from first_id to the end."""
    return [ChainLink(r.id, r.prev_hash, r.hash) for r in records if r.id >= first_id]


def bundle_files(records: Sequence[EvidenceRecord], chain: Sequence[ChainLink],
                 documents: Mapping[str, bytes], *, model: str, version: str | None = None,
                 created_at: str | None = None) -> dict[str, bytes]:
    """Every file of an unsigned bundle, manifest included. `chain` must run from the first of `records`
    to the store's head; `documents` maps paths (under documents/ or reports/) to their bytes."""
    ordered = sorted(records, key=lambda r: r.id)
    if not ordered:
        raise UserError("no evidence records to bundle", where=model,
                        fix="record evidence for the model first (tunesafe models add, eval, gate)")
    for path in documents:
        if path in _OWN or path in (RECORDS, CHAIN) or not path.startswith(("documents/", "reports/")):
            raise ValueError(f"document path {path!r} must lie under documents/ or reports/")
    files: dict[str, bytes] = {
        RECORDS: "".join(canonical_json(_record_line(r)) + "\n" for r in ordered).encode("utf-8"),
        CHAIN: "".join(canonical_json(_link_line(link)) + "\n" for link in chain).encode("utf-8"),
        **documents,
    }
    head = chain[-1] if chain else ChainLink(ordered[-1].id, ordered[-1].prev_hash, ordered[-1].hash)
    manifest = {
        "format": FORMAT, "tool_version": __version__, "model": model, "version": version,
        "created_at": created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "records": [{"id": r.id, "type": r.type, "hash": r.hash} for r in ordered],
        "chain": {"first_id": chain[0].id if chain else ordered[0].id, "head_id": head.id,
                  "head_hash": head.hash},
        "files": {path: {"sha256": sha256_hex(data), "size": len(data)}
                  for path, data in sorted(files.items())},
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    return files


def write_bundle(out: Path, files: Mapping[str, bytes], *,
                 signing_key: Ed25519PrivateKey | None = None) -> BundleInfo:
    """Zip the files (sorted, fixed timestamps: the same files give the same bytes), signing the
    manifest when a key is given."""
    files = dict(files)
    signer = None
    if signing_key is not None:
        files[SIGNATURE] = keys.sign(signing_key, files[MANIFEST])
        files[SIGNER] = keys.public_pem(signing_key.public_key())
        signer = keys.fingerprint(signing_key.public_key())
    manifest = json.loads(files[MANIFEST])
    stamp = _zip_time(manifest["created_at"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[path])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(buffer.getvalue())
    except OSError as exc:
        raise UserError(f"cannot write the bundle: {exc.strerror or exc}", where=str(out),
                        fix="pass a writable path with --out") from None
    return BundleInfo(out, len(manifest["files"]), len(manifest["records"]), _lines(files[CHAIN]), signer)


def _record_line(record: EvidenceRecord) -> dict[str, Any]:
    return {"id": record.id, "type": record.type, "subject": record.subject, "actor": record.actor,
            "created_at": record.created_at, "prev_hash": record.prev_hash, "hash": record.hash,
            "body": record.body}


def _link_line(link: ChainLink) -> dict[str, Any]:
    return {"id": link.id, "prev_hash": link.prev_hash, "hash": link.hash}


def _zip_time(created_at: str) -> tuple[int, int, int, int, int, int]:
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        moment = datetime(1980, 1, 1)
    return (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _lines(data: bytes) -> int:
    return sum(1 for line in data.splitlines() if line.strip())


# ---- verifying -------------------------------------------------------------------------------------------


def verify_bundle(path: Path, public_key: Ed25519PublicKey | None = None) -> BundleCheck:
    """Check a bundle offline; every problem found is listed in the result."""
    check = BundleCheck(path=path)
    files = _read_zip(path, check)
    raw_manifest = files.get(MANIFEST)
    if raw_manifest is None:
        check.problems.append(f"{MANIFEST}: missing (not a complete bundle)")
        return check
    manifest = _parse_manifest(raw_manifest, check)
    if manifest is None:
        return check
    check.model = manifest.get("model")
    _check_signature(files, raw_manifest, public_key, check)
    _check_files(files, manifest, check)
    links = _check_chain(files.get(CHAIN), manifest, check)
    _check_records(files.get(RECORDS), manifest, links, check)
    return check


def bundle_anchors(path: Path) -> dict[int, str]:
    """{record id: hash} of the records and the chain head a bundle's manifest names: checked against the
    live store (`tunesafe verify --bundle`), they show the bundled records are still in its chain and the
    chain was not cut or rewritten since. Check the bundle itself with verify_bundle first."""
    check = BundleCheck(path=path)
    raw = _read_zip(path, check).get(MANIFEST)
    manifest = _parse_manifest(raw, check) if raw is not None else None
    if manifest is None:
        raise UserError(f"no readable {MANIFEST} in the bundle", where=str(path),
                        fix="pass the .zip written by `tunesafe bundle`")
    anchors = {entry["id"]: entry["hash"] for entry in manifest["records"] if _well_formed(entry)}
    head = {"id": manifest["chain"].get("head_id"), "hash": manifest["chain"].get("head_hash")}
    if _well_formed(head):
        anchors[head["id"]] = head["hash"]
    return anchors


def _read_zip(path: Path, check: BundleCheck) -> dict[str, bytes]:
    if not path.is_file():
        raise UserError("no such bundle file", where=str(path),
                        fix="pass the .zip written by `tunesafe bundle`")
    try:
        data = path.read_bytes()  # once: the layout checked is the one read
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"not a zip archive ({exc})", where=str(path),
                        fix="pass the .zip written by `tunesafe bundle`") from None
    files: dict[str, bytes] = {}
    check.problems.extend(layout_problems(data, archive.infolist()))
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename in files:
                check.problems.append(f"{info.filename}: stored twice in the zip "
                                      "(one copy may hide the other)")
                continue
            try:
                files[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                check.problems.append(f"{info.filename}: cannot be read, the zip entry is corrupt ({exc})")
    return files


def _parse_manifest(raw: bytes, check: BundleCheck) -> dict[str, Any] | None:
    try:
        manifest = decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        check.problems.append(f"{MANIFEST}: not valid JSON (not UTF-8 at byte {exc.start})")
        return None
    except BadJson as exc:
        check.problems.append(f"{MANIFEST}: not valid JSON ({exc.reason})")
        return None
    shape_ok = (isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)
                and isinstance(manifest.get("records"), list) and isinstance(manifest.get("chain"), dict))
    if not shape_ok or manifest.get("format") != FORMAT:
        check.problems.append(f"{MANIFEST}: not a {FORMAT} manifest")
        return None
    return manifest


def _check_signature(files: Mapping[str, bytes], manifest: bytes, public_key: Ed25519PublicKey | None,
                     check: BundleCheck) -> None:
    signature, embedded = files.get(SIGNATURE), files.get(SIGNER)
    if signature is None:
        if public_key is not None:
            check.problems.append(f"{SIGNATURE}: missing, the bundle is not signed, "
                                  "but a public key was given")
        elif embedded is not None:
            check.problems.append(f"{SIGNER}: present without {SIGNATURE} (the signature was removed)")
        return
    key = public_key
    if key is None:
        key = keys.public_key_from_pem(embedded) if embedded is not None else None
        if key is None:
            check.problems.append(f"{SIGNER}: missing or not an Ed25519 public key, so {SIGNATURE} cannot be "
                                  "checked (pass --pubkey)")
            return
    if not keys.signature_ok(key, manifest, signature):
        whose = "the given public key" if public_key is not None else f"the key in {SIGNER}"
        check.problems.append(f"{SIGNATURE}: does not verify with {whose} (fingerprint "
                              f"{keys.fingerprint(key)[:16]}): wrong key, or {MANIFEST} was changed")
        return
    check.signer, check.pinned = keys.fingerprint(key), public_key is not None


def _check_files(files: Mapping[str, bytes], manifest: Mapping[str, Any], check: BundleCheck) -> None:
    listed: Mapping[str, Any] = manifest["files"]
    for name, entry in sorted(listed.items()):
        data = files.get(name)
        if data is None:
            check.problems.append(f"{name}: missing from the bundle")
        elif not isinstance(entry, dict) or sha256_hex(data) != entry.get("sha256"):
            check.problems.append(f"{name}: changed (sha256 {sha256_hex(data)[:16]}, manifest says "
                                  f"{str(entry.get('sha256') if isinstance(entry, dict) else entry)[:16]})")
    for name in sorted(set(files) - set(listed) - set(_OWN)):
        check.problems.append(f"{name}: not listed in the manifest (added after bundling)")
    check.files = len(listed)


def _json_lines(data: bytes, name: str, check: BundleCheck) -> list[dict[str, Any]]:
    rows = []
    for number, line in numbered_lines(data.decode("utf-8", errors="replace")):
        try:
            row = decode(line)
        except BadJson as exc:
            check.problems.append(f"{name}: line {number} is not valid JSON ({exc.reason})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), int):
            check.problems.append(f"{name}: line {number} is not a record with an integer id")
            continue
        rows.append(row)
    return rows


def _check_chain(data: bytes | None, manifest: Mapping[str, Any],
                 check: BundleCheck) -> dict[int, dict[str, Any]]:
    """Walk the segment: consecutive ids, each prev_hash the hash before it, ending at the manifest's head.
    Returns the links by id for the record checks."""
    if data is None:
        return {}
    chain = manifest["chain"]
    links = _json_lines(data, CHAIN, check)
    check.chain_links = len(links)
    expected_id, prev = chain.get("first_id"), None
    for link in links:
        if link["id"] != expected_id:
            check.problems.append(f"{CHAIN}: link {link['id']} where link {expected_id} should be "
                                  "(links deleted or reordered)")
        else:
            # the first link's predecessor is outside the bundle, unless it is the chain's genesis
            required = GENESIS if link["id"] == 1 else prev
            if required is not None and link.get("prev_hash") != required:
                check.problems.append(f"{CHAIN}: link {link['id']} does not point to the hash of link "
                                      f"{link['id'] - 1} (the chain is broken there)")
        expected_id, prev = link["id"] + 1, link.get("hash")
    last = links[-1] if links else None
    if last is None or (last["id"], last.get("hash")) != (chain.get("head_id"), chain.get("head_hash")):
        check.problems.append(f"{CHAIN}: does not end at the head named in {MANIFEST} "
                              f"(record {chain.get('head_id')})")
    return {link["id"]: link for link in links}


def _check_records(data: bytes | None, manifest: Mapping[str, Any], links: Mapping[int, Mapping[str, Any]],
                   check: BundleCheck) -> None:
    """Recompute every record's hash from its content; compare order and ids with the manifest and the
    chain segment."""
    if data is None:
        return
    rows = _json_lines(data, RECORDS, check)
    check.records = len(rows)
    last_id = 0
    for row in rows:
        rid = row["id"]
        if rid <= last_id:
            check.problems.append(f"{RECORDS}: record {rid} comes after record {last_id} (records reordered)")
        last_id = max(last_id, rid)
        if not _record_hash_ok(row):
            check.problems.append(f"{RECORDS}: record {rid} ({row.get('type')}) does not match its hash "
                                  "(its content was changed)")
        link = links.get(rid)
        if link is None:
            check.problems.append(f"{RECORDS}: record {rid} is outside the chain segment in {CHAIN}")
        elif (link.get("prev_hash"), link.get("hash")) != (row.get("prev_hash"), row.get("hash")):
            check.problems.append(f"{RECORDS}: record {rid} has other hashes than link {rid} of {CHAIN}")
    # a tampered manifest or record may hold any JSON: only well-formed (id, hash) pairs are compared, and
    # every other entry is a finding (never a TypeError on hashing or sorting them)
    listed: set[tuple[int, str]] = set()
    for index, entry in enumerate(manifest["records"]):
        if _well_formed(entry):
            listed.add((entry["id"], entry["hash"]))
        else:
            check.problems.append(f"{MANIFEST}: records[{index}] is not an {{id: integer, hash: string}} "
                                  f"entry ({str(entry)[:60]})")
    present = {(row["id"], row["hash"] if isinstance(row.get("hash"), str) else repr(row.get("hash")))
               for row in rows}
    for rid, digest in sorted(listed - present):
        check.problems.append(f"{RECORDS}: record {rid} listed in {MANIFEST} is missing "
                              f"(hash {str(digest)[:16]})")
    for rid, _digest in sorted(present - listed):
        check.problems.append(f"{RECORDS}: record {rid} is not listed in {MANIFEST}")


def _well_formed(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("id"), int) and not isinstance(entry["id"], bool)
            and isinstance(entry.get("hash"), str))


def _record_hash_ok(row: Mapping[str, Any]) -> bool:
    fields = ("type", "created_at", "actor", "prev_hash", "hash")
    if not all(isinstance(row.get(name), str) for name in fields) or "body" not in row:
        return False
    subject = row.get("subject")
    if subject is not None and not isinstance(subject, str):
        return False
    envelope = envelope_text(row["type"], canonical_json(row["body"]), row["created_at"], row["actor"],
                             subject)
    return bool(link_hash(row["prev_hash"], envelope) == row["hash"])


def bundle_model(evidence: ModelEvidence, out: Path, *,
                 signing_key: Ed25519PrivateKey | None = None) -> BundleInfo:
    """The bundle of one model version: its lineage records, the chain from the first of them to the
    head, and every document generated from them."""
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = evidence.lineage_records()
    chain = chain_segment(evidence.chain, records[0].id)
    lineage = evidence.facts.lineage
    files = bundle_files(records, chain, model_documents(evidence, generated_at=created_at),
                         model=lineage.model, version=lineage.version, created_at=created_at)
    return write_bundle(out, files, signing_key=signing_key)
