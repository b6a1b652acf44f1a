"""The bundle format and its offline check on a real store file: a clean bundle verifies; each kind of
tampering (a changed byte in a record, a missing file, two records swapped, a wrong or removed signature,
an added file) is named and fails."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.governance import keys
from tunesafe.governance.bundle import (
    CHAIN,
    MANIFEST,
    RECORDS,
    SIGNATURE,
    bundle_files,
    chain_segment,
    verify_bundle,
    write_bundle,
)


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    """A bundle of three of a store's six records (the others are another model's), signed."""
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.append("note", {"about": "other"}, subject="other")
        mine = [store.append("model_version", {"name": "m", "ref": "embedded:x"}, subject="m")]
        store.append("note", {"about": "other", "n": 2}, subject="other")
        mine.append(store.append("run", {"model_name": "m", "asr": 0.25, "text": "ünïcode"}, subject="m"))
        mine.append(store.append("gate_decision", {"verdict": "pass", "candidate_model": "m"}, subject="m"))
        store.append("note", {"about": "other", "n": 3}, subject="other")
        chain = chain_segment(store.records(), mine[0].id)
    files = bundle_files(mine, chain, {"documents/card.md": b"# card\n"}, model="m")
    key = keys.generate_keypair(tmp_path / "signer")
    write_bundle(tmp_path / "b.zip", files, signing_key=keys.load_private_key(key.private))
    return tmp_path / "b.zip"


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """Copy a zip, replacing (bytes) or dropping (None) the named members."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            if info.filename not in change:
                new.writestr(info, old.read(info))
            elif change[info.filename] is not None:
                new.writestr(info, change[info.filename])  # type: ignore[arg-type]
        for name, data in change.items():
            if data is not None and name not in old.namelist():
                new.writestr(name, data)
    return dst


def member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


def test_a_clean_bundle_verifies_with_its_own_and_with_the_pinned_key(bundled: Path) -> None:
    check = verify_bundle(bundled)
    assert check.ok, check.problems
    assert (check.records, check.chain_links, check.pinned) == (3, 5, False)
    pinned = verify_bundle(bundled, keys.load_public_key(bundled.parent / "signer.pub"))
    assert pinned.ok and pinned.pinned and pinned.signer == check.signer
    lines = member(bundled, RECORDS).decode().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["model_version", "run", "gate_decision"]


def test_a_changed_byte_in_a_record_is_named(bundled: Path, tmp_path: Path) -> None:
    records = member(bundled, RECORDS)
    flipped = records.replace(b'"asr":0.25', b'"asr":0.15')
    assert flipped != records
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {RECORDS: flipped}))
    assert not check.ok
    assert any(p.startswith(f"{RECORDS}: changed") for p in check.problems)
    assert any("record 4 (run) does not match its hash" in p for p in check.problems)


def test_a_byte_flipped_in_the_zip_itself_is_named(bundled: Path, tmp_path: Path) -> None:
    data = bytearray(bundled.read_bytes())
    with zipfile.ZipFile(bundled) as archive:
        info = archive.getinfo(RECORDS)
    data[info.header_offset + 30 + len(RECORDS) + 5] ^= 0x01  # inside the compressed records
    broken = tmp_path / "flipped.zip"
    broken.write_bytes(bytes(data))
    check = verify_bundle(broken)
    assert any(p.startswith(RECORDS) for p in check.problems), check.problems


def test_a_missing_file_is_named(bundled: Path, tmp_path: Path) -> None:
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {"documents/card.md": None}))
    assert check.problems == ["documents/card.md: missing from the bundle"]


def test_two_records_swapped_are_named(bundled: Path, tmp_path: Path) -> None:
    first, second, third = member(bundled, RECORDS).decode().splitlines(keepends=True)
    swapped = (first + third + second).encode()
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {RECORDS: swapped}))
    assert "evidence/records.jsonl: record 4 comes after record 5 (records reordered)" in check.problems


def test_a_record_dropped_from_the_lineage_and_the_manifest_is_still_caught_by_the_signature(
        bundled: Path, tmp_path: Path) -> None:
    first, second, third = member(bundled, RECORDS).decode().splitlines(keepends=True)
    manifest = json.loads(member(bundled, MANIFEST))
    manifest["records"] = [r for r in manifest["records"] if r["id"] != 4]
    manifest["files"][RECORDS]["sha256"] = hashlib.sha256((first + third).encode()).hexdigest()
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {
        RECORDS: (first + third).encode(), MANIFEST: json.dumps(manifest).encode()}))
    assert [p for p in check.problems if p.startswith(SIGNATURE)], check.problems


def test_a_wrong_key_a_removed_signature_and_an_added_file_are_named(bundled: Path, tmp_path: Path) -> None:
    other = keys.generate_keypair(tmp_path / "other")
    wrong = verify_bundle(bundled, keys.load_public_key(other.public))
    assert len(wrong.problems) == 1 and "does not verify with the given public key" in wrong.problems[0]
    unsigned = rewrite(bundled, tmp_path / "u.zip", {SIGNATURE: None})
    assert any("signature was removed" in p for p in verify_bundle(unsigned).problems)
    pinned = verify_bundle(unsigned, keys.load_public_key(other.public))
    assert any("not signed" in p for p in pinned.problems)
    added = verify_bundle(rewrite(bundled, tmp_path / "a.zip", {"documents/extra.md": b"x"}))
    assert added.problems == ["documents/extra.md: not listed in the manifest (added after bundling)"]


def test_a_cut_chain_segment_is_named(bundled: Path, tmp_path: Path) -> None:
    links = member(bundled, CHAIN).decode().splitlines(keepends=True)
    cut = "".join(links[:2] + links[3:]).encode()
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {CHAIN: cut}))
    assert any("where link 4 should be" in p for p in check.problems), check.problems


def test_what_is_not_a_bundle_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_text("not a zip")
    with pytest.raises(UserError, match="not a zip"):
        verify_bundle(tmp_path / "x.zip")
    with pytest.raises(UserError, match="no such bundle"):
        verify_bundle(tmp_path / "missing.zip")


def test_keys_are_never_overwritten_and_bad_keys_are_user_errors(tmp_path: Path) -> None:
    made = keys.generate_keypair(tmp_path / "k")
    assert made.private.stat().st_mode & 0o077 == 0
    with pytest.raises(UserError, match="already exists"):
        keys.generate_keypair(tmp_path / "k")
    with pytest.raises(UserError, match="not an unencrypted PEM private key"):
        keys.load_private_key(made.public)
    with pytest.raises(UserError, match="not an unencrypted PEM public key"):
        keys.load_public_key(made.private)
    with pytest.raises(UserError, match="cannot read"):
        keys.load_public_key(tmp_path / "none.pub")


def test_malformed_record_entries_are_findings_never_a_crash(bundled: Path, tmp_path: Path) -> None:
    manifest = json.loads(member(bundled, MANIFEST))
    manifest["records"] += [{"id": 4, "hash": ["not", "a", "hash"]}, {"id": "x", "hash": "h"}, {"id": 99}]
    first, *rest = member(bundled, RECORDS).decode().splitlines(keepends=True)
    row = json.loads(first)
    row["hash"] = {"a": 1}
    records = (json.dumps(row) + "\n" + "".join(rest)).encode()
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {MANIFEST: json.dumps(manifest).encode(),
                                                                  RECORDS: records}))
    assert any(p.startswith(SIGNATURE) for p in check.problems), check.problems
    assert any("record 2 (model_version) does not match its hash" in p for p in check.problems)
    malformed = [p for p in check.problems if "not an {id: integer, hash: string} entry" in p]
    assert len(malformed) == 3, check.problems


DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b'{"id": ' + b"9" * 5_000 + b"}"


@pytest.mark.parametrize("name", [MANIFEST, RECORDS, CHAIN])
@pytest.mark.parametrize("data", [DEEP, HUGE_INT], ids=["deep", "huge-int"])
def test_json_that_json_cannot_decode_is_a_finding_never_a_crash(bundled: Path, tmp_path: Path, name: str,
                                                                 data: bytes) -> None:
    # json raises RecursionError / a plain ValueError here, not JSONDecodeError: a tampered bundle made
    # verify-bundle stop with a traceback instead of naming the file
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {name: data + b"\n"}))
    assert any(p.startswith(f"{name}:") and "JSON" in p for p in check.problems), check.problems


def test_a_manifest_key_given_twice_is_a_finding(bundled: Path, tmp_path: Path) -> None:
    # json.loads keeps the last value: a second "files" could stand in for the one a reader would check
    raw = member(bundled, MANIFEST).rstrip()
    assert raw.endswith(b"}")
    doubled = raw[:-1] + b', "format": "tunesafe.bundle/v1"}'
    check = verify_bundle(rewrite(bundled, tmp_path / "t.zip", {MANIFEST: doubled}))
    assert any(p.startswith(MANIFEST) and "appears twice" in p for p in check.problems), check.problems


def test_a_record_holding_a_line_separator_verifies(tmp_path: Path) -> None:
    # records.jsonl keeps UTF-8 as is, so U+2028 / U+0085 in a record (a model's answer, a title) are raw
    # in its line; str.splitlines() broke the line there and an intact bundle was reported tampered
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        mine = [store.append("model_version", {"name": "m", "ref": "embedded:x"}, subject="m"),
                store.append("note", {"text": "one\u2028two\x85three"}, subject="m")]
        chain = chain_segment(store.records(), mine[0].id)
    files = bundle_files(mine, chain, {"documents/card.md": b"# card\n"}, model="m")
    write_bundle(tmp_path / "b.zip", files)
    check = verify_bundle(tmp_path / "b.zip")
    assert not [p for p in check.problems if "JSON" in p], check.problems
