"""`tunesafe keys generate`, `tunesafe bundle` and `tunesafe verify-bundle` on a store built by real runs:
a signed bundle of the documented model verifies offline (with the store gone); tampering with it (a changed
byte in a record, a deleted file, two records swapped, a wrong key) is named and exits 1; bad input
exits 2."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunesafe.evidence.store import Store
from tunesafe.governance.bundle import RECORDS


@pytest.fixture(scope="module")
def signed(documented: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("bundle")
    made = documented.cli("keys", "generate", "--out", str(root / "auditor"))
    assert made.exit_code == 0, made.output
    done = documented.cli("bundle", "ft", "--out", str(root / "b.zip"),
                     "--sign", str(root / "auditor.key"))
    assert done.exit_code == 0, done.output
    return SimpleNamespace(path=root / "b.zip", key=root / "auditor.key", pub=root / "auditor.pub", root=root,
                           written=done.output)


def edit(src: Path, dst: Path, name: str, data: bytes | None) -> Path:
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            if info.filename != name:
                new.writestr(info, old.read(info))
            elif data is not None:
                new.writestr(info, data)
    return dst


def test_the_bundle_holds_the_lineage_records_documents_and_reports(documented: SimpleNamespace,
                                                                    signed: SimpleNamespace) -> None:
    with zipfile.ZipFile(signed.path) as archive:
        names = set(archive.namelist())
        records = [json.loads(line) for line in archive.read(RECORDS).decode().splitlines()]
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "manifest.sig", "signer.pub", "evidence/chain.jsonl", "documents/annex-iv.html",
            "documents/README.md", "documents/cyclonedx.json", "documents/lineage.json"} <= names
    gate_id = next(r["id"] for r in records if r["type"] == "gate_decision")
    assert f"reports/gate-{gate_id}/report.html" in names
    with Store.open(documented.db) as store:
        stored = {r.id: r.hash for r in store.records()}
        head = max(stored)
    kinds = {r["type"] for r in records}
    assert {"model_version", "data_scan", "training_run", "run", "gate_decision"} <= kinds
    assert all(stored[r["id"]] == r["hash"] for r in records)
    assert "bare" not in {r["body"].get("name") for r in records}  # another model's records stay out
    assert (manifest["chain"]["head_id"], manifest["chain"]["head_hash"]) == (head, stored[head])


def test_a_signed_bundle_verifies_offline_with_the_pinned_key(tunesafe: Callable[..., SimpleNamespace],
                                                              signed: SimpleNamespace,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESAFE_DB", "sqlite:////nonexistent/store.db")  # the store is not consulted
    done = tunesafe("verify-bundle", str(signed.path), "--pubkey", str(signed.pub), "--json")
    assert done.exit_code == 0, done.stderr
    check = json.loads(done.stdout)
    assert check["ok"] and check["pinned"] and check["problems"] == []
    counts = f"{check['records']} records, {check['chain_links']} chain links, {check['files']} files"
    assert counts in signed.written  # what `bundle` reported is what the auditor finds
    text = tunesafe("verify-bundle", str(signed.path))
    assert "bundle intact" in text.stdout and "pass --pubkey to pin it" in text.stdout


@pytest.mark.parametrize("tamper", ["record byte", "deleted file", "swapped records", "wrong key"])
def test_tampering_is_named_and_exits_1(tunesafe: Callable[..., SimpleNamespace], signed: SimpleNamespace,
                                        tmp_path: Path, tamper: str) -> None:
    with zipfile.ZipFile(signed.path) as archive:
        lines = archive.read(RECORDS).decode().splitlines(keepends=True)
    pubkey, expected = signed.pub, ""
    bundle = tmp_path / "t.zip"
    if tamper == "record byte":
        changed = lines[-1].replace('"verdict":"pass"', '"verdict":"fail"')
        assert changed != lines[-1]
        edit(signed.path, bundle, RECORDS, "".join(lines[:-1] + [changed]).encode())
        expected = "(gate_decision) does not match its hash"
    elif tamper == "deleted file":
        edit(signed.path, bundle, "documents/annex-iv.md", None)
        expected = "documents/annex-iv.md: missing from the bundle"
    elif tamper == "swapped records":
        edit(signed.path, bundle, RECORDS, "".join([lines[1], lines[0], *lines[2:]]).encode())
        expected = "(records reordered)"
    else:
        bundle = signed.path
        other = tunesafe("keys", "generate", "--out", str(tmp_path / "other"))
        assert other.exit_code == 0
        pubkey, expected = tmp_path / "other.pub", "does not verify with the given public key"
    done = tunesafe("verify-bundle", str(bundle), "--pubkey", str(pubkey))
    assert done.exit_code == 1, done.stdout
    assert "TAMPERED" in done.stderr and expected in done.stderr


def test_bad_input_is_a_one_line_error(tunesafe: Callable[..., SimpleNamespace], signed: SimpleNamespace,
                                       tmp_path: Path) -> None:
    cases = [("bundle", "nope", "--out", str(tmp_path / "x.zip")),
             ("bundle", "ft", "--out", str(tmp_path / "x.zip"), "--sign", str(signed.pub)),
             ("verify-bundle", str(signed.path), "--pubkey", str(signed.key)),
             ("verify-bundle", str(signed.pub)),
             ("keys", "generate", "--out", str(signed.root / "auditor"))]
    for args in cases:
        done = tunesafe(*args)
        assert done.exit_code == 2, (args, done.stderr)
        assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.zip").exists()
