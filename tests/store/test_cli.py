"""The store's commands run as a user would run them (a real `tunesafe` process): init, workspace
discovery, verify on a tampered file, and every bad input getting one line and exit code 2."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunesafe.evidence.store import Store
from tunesafe.evidence.workspace import find_workspace
from tunesafe.testing.openai_server import serve


def tunesafe(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}
    full_env["COLUMNS"] = "250"  # Rich wraps at the terminal width; keep each message on one line
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())  # Rich may wrap the line
    for fragment in fragments:
        assert fragment in message, message


def test_init_then_commands_find_the_workspace_from_a_subfolder(tmp_path: Path) -> None:
    result = tunesafe("init", str(tmp_path / "proj"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "proj" / ".tunesafe" / "tunesafe.db"
    assert db.is_file() and (tmp_path / "proj" / ".tunesafe" / "config.yaml").is_file()
    with Store.open(str(db)) as store:
        store.append("incident", {"n": 1})
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_workspace(deep) == find_workspace(tmp_path / "proj")
    result = tunesafe("verify", cwd=deep)
    assert result.returncode == 0, result.stderr
    assert "1 records" in result.stdout and str(db) in " ".join(result.stdout.split())
    # init again: nothing overwritten, the record is still there
    assert tunesafe("init", cwd=tmp_path / "proj").returncode == 0
    with Store.open(str(db)) as store:
        assert [r.body for r in store.records()] == [{"n": 1}]


def test_db_option_and_env_override_the_workspace(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.db"
    with Store.open(str(other)) as store:
        store.append("incident", {"n": 1})
        store.append("incident", {"n": 2})
    assert "2 records" in tunesafe("--db", f"sqlite:///{other}", "verify", cwd=tmp_path).stdout
    assert "2 records" in tunesafe("verify", cwd=tmp_path, env={"TUNESAFE_DB": str(other)}).stdout


def test_changing_one_byte_of_one_body_in_the_file_is_named_by_verify(tmp_path: Path) -> None:
    db = tmp_path / "evidence.db"
    with Store.open(str(db)) as store:
        for i in range(1, 21):
            store.append("gate_decision", {"verdict": "pass", "marker": f"marker-{i:04d}"})
    raw = bytearray(db.read_bytes())
    offset = raw.index(b"marker-0007") + len("marker-000")
    raw[offset] = ord("8")  # "marker-0007" -> "marker-0008": still valid JSON, different bytes
    db.write_bytes(bytes(raw))

    result = tunesafe("--db", str(db), "verify", cwd=tmp_path)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "BROKEN" in message and "at record 7 (content edited)" in message
    as_json = tunesafe("--db", str(db), "verify", "--json", cwd=tmp_path)
    assert as_json.returncode == 1 and '"id": 7' in as_json.stdout and '"ok": false' in as_json.stdout


def test_no_workspace(tmp_path: Path) -> None:
    assert_user_error(tunesafe("verify", cwd=tmp_path), f"no tunesafe workspace found from {tmp_path}",
                      "run `tunesafe init` or pass --db")


def test_file_that_is_not_a_database_is_refused_and_kept(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"these are my notes, not a database\n" * 10)
    result = tunesafe("--db", str(bogus), "verify", cwd=tmp_path)
    assert_user_error(result, str(bogus), "not a SQLite database")
    assert bogus.read_bytes() == b"these are my notes, not a database\n" * 10


def test_damaged_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "damaged.db"
    with Store.open(str(db)) as store:
        for i in range(40):
            store.append("incident", {"i": i, "pad": "x" * 200})
    raw = bytearray(db.read_bytes())
    for offset in range(100, len(raw), 7):  # keep the header, scramble the pages
        raw[offset] = 0xAB
    db.write_bytes(bytes(raw))
    assert_user_error(tunesafe("--db", str(db), "verify", cwd=tmp_path), str(db), "malformed")


def test_unversioned_older_layout_via_cli(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT)")
    assert_user_error(tunesafe("--db", str(db), "verify", cwd=tmp_path), str(db), "no schema version")


def test_unreachable_postgres_names_host_and_port_and_masks_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    result = tunesafe("--db", "postgresql://alice:s3cret@127.0.0.1:1/evidence", "verify", cwd=tmp_path)
    assert_user_error(result, "127.0.0.1:1", "cannot reach the database")
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql://u@127.0.0.1/x", "unsupported database 'mysql'"),
    ("postgresql://u@host:notaport/db", "--db / TUNESAFE_DB: not a database URL"),
    ("not a url://x", "--db / TUNESAFE_DB: not a database URL"),
])
def test_unsupported_or_malformed_url(tmp_path: Path, url: str, expected: str) -> None:
    assert_user_error(tunesafe("--db", url, "verify", cwd=tmp_path), expected, "postgresql://USER@HOST")


def test_broken_workspace_config(tmp_path: Path) -> None:
    (tmp_path / ".tunesafe").mkdir()
    (tmp_path / ".tunesafe" / "config.yaml").write_text("db: [unclosed\n")
    assert_user_error(tunesafe("verify", cwd=tmp_path), "config.yaml", "tunesafe init")


def test_missing_postgres_database_is_named(tmp_path: Path, pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(database="no_such_db").render_as_string(hide_password=False)
    assert_user_error(tunesafe("--db", url, "verify", cwd=tmp_path), "no_such_db", "does not exist")


def test_help_lists_the_panels_in_lifecycle_order(tmp_path: Path) -> None:
    from tunesafe.cli.app import PANELS

    result = tunesafe("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    positions = [result.stdout.index(f"─ {title} ─") for title in PANELS]
    assert positions == sorted(positions)
    # each command sits under its own panel: `models` (production) after the Production title
    assert positions[3] < result.stdout.index(" models ") < positions[4]


@pytest.mark.parametrize("body", ["{bad", "[1, 2]"])
def test_a_record_body_edited_into_non_object_json_is_one_error_line(tmp_path: Path, body: str) -> None:
    import sqlite3

    db = tmp_path / "evidence.db"
    data = tmp_path / "data.jsonl"
    data.write_text('{"messages": []}\n')
    assert tunesafe("--db", str(db), "models", "add", "bot", "--ref", "openai:m@http://127.0.0.1:1/v1",
                    "--dataset", str(data), cwd=tmp_path).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE records SET body = ? WHERE id = 1", (body,))
    verified = tunesafe("--db", str(db), "verify", cwd=tmp_path)
    assert verified.returncode == 1 and "at record 1 (content edited)" in " ".join(verified.stderr.split())
    # every command that reads records names the damaged one instead of a JSONDecodeError traceback
    for command in (["lineage", "bot"], ["controls", "status", "bot"], ["models", "list"]):
        assert_user_error(tunesafe("--db", str(db), *command, cwd=tmp_path), str(db),
                          "evidence record 1 (model_version)", "tunesafe verify")


def _rehash_from(db: Path, first: int) -> None:
    """What someone who can write the file does to hide an edit: recompute every hash from `first` on and
    the chain head, so the chain is consistent again."""
    import sqlite3

    from tunesafe.evidence.chain import envelope_text, link_hash

    with sqlite3.connect(db) as conn:
        prev = conn.execute("SELECT hash FROM records WHERE id = ?", (first - 1,)).fetchone()[0]
        rows = conn.execute("SELECT id, type, body, created_at, actor, subject FROM records WHERE id >= ? "
                            "ORDER BY id", (first,)).fetchall()
        for rid, type_, body, created_at, actor, subject in rows:
            digest = link_hash(prev, envelope_text(type_, body, created_at, actor, subject))
            conn.execute("UPDATE records SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, rid))
            prev = digest
        last = conn.execute("SELECT max(id) FROM records").fetchone()[0]
        conn.execute("UPDATE chain_head SET last_id = ?, last_hash = ?", (last, prev))


@pytest.mark.parametrize("tamper", ["rewritten", "cut"])
def test_a_chain_rewritten_or_cut_consistently_is_caught_by_its_anchors(tmp_path: Path, tamper: str) -> None:
    import sqlite3

    from tunesafe.governance.bundle import bundle_files, write_bundle

    db = tmp_path / "evidence.db"
    with Store.open(str(db)) as store:
        for i in range(1, 7):
            store.append("gate_decision", {"verdict": "fail", "i": i}, subject="bot")
        records = list(store.records())
    write_bundle(tmp_path / "b.zip", bundle_files(records[2:], [], {}, model="bot"))
    printed = tunesafe("--db", str(db), "verify", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    head = f"6:{records[-1].hash}"
    assert head in printed.stdout  # the head to write down (anchor) elsewhere
    with Store.open(str(db)) as store:
        store.append("incident", {"title": "later"})  # the chain goes on after the bundle
    with sqlite3.connect(db) as conn:
        if tamper == "rewritten":
            conn.execute("""UPDATE records SET body = replace(body, '"fail"', '"pass"') WHERE id = 4""")
        else:
            conn.execute("DELETE FROM records WHERE id >= 5")
    _rehash_from(db, 4)
    assert tunesafe("--db", str(db), "verify", cwd=tmp_path).returncode == 0  # consistent: only anchors tell
    for anchor in (["--bundle", str(tmp_path / "b.zip")], ["--anchor", head]):
        result = tunesafe("--db", str(db), "verify", *anchor, cwd=tmp_path)
        message = " ".join(result.stderr.split())
        assert result.returncode == 1 and "BROKEN" in message, (anchor, result.stdout, message)
        assert "not the hash anchored outside the store" in message
    Store.open(str(tmp_path / "fresh.db")).close()  # an empty store: verify refuses a missing one
    untouched = tunesafe("--db", str(tmp_path / "fresh.db"), "verify", "--anchor", "1:" + "a" * 64,
                         cwd=tmp_path)
    assert untouched.returncode == 1  # an anchored record that is not there at all


@pytest.mark.parametrize("anchor", ["12", "x:" + "a" * 64, "0:" + "a" * 64, "3:abc"])
def test_a_malformed_anchor_is_one_error_line(tmp_path: Path, anchor: str) -> None:
    assert_user_error(tunesafe("--db", str(tmp_path / "e.db"), "verify", "--anchor", anchor, cwd=tmp_path),
                      "--anchor", "expected ID:SHA256")


def test_verify_bundle_option_needs_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "notes.zip").write_text("not a zip")
    assert_user_error(tunesafe("--db", str(tmp_path / "e.db"), "verify", "--bundle",
                               str(tmp_path / "notes.zip"), cwd=tmp_path), "notes.zip", "not a zip archive")


def test_a_note_in_another_encoding_is_one_error_line(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    for args in (["models", "add", "base", "--ref", "openai:m@http://127.0.0.1:1/v1"],
                 ["models", "add", "ft", "--ref", "openai:m@http://127.0.0.1:1/v1", "--base", "base"]):
        assert tunesafe("--db", db, *args, cwd=tmp_path).returncode == 0
    # "\udcff" is how Python receives the byte 0xff of a Latin-1 terminal's argument
    result = tunesafe("--db", db, "controls", "attest", "ft", "PRE-04", "--by", "J. Doe",
                      "--note", "ok\udcff", "--field", "approved_by=J. Doe", cwd=tmp_path)
    assert_user_error(result, "control_attestation record, body.note", "not valid UTF-8")


REF = "openai:x@http://127.0.0.1:9/v1"


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file as a user without write permission sees it. Permissions do not stop root, so there the
    immutable attribute stands in (skipped where it cannot be set)."""
    mode = path.stat().st_mode
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable and (not shutil.which("chattr") or subprocess.run(
            ["chattr", "+i", str(path)], capture_output=True).returncode != 0):
        path.chmod(mode)
        pytest.skip("running as root, where only `chattr +i` makes a file read-only, and it is not available")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


def _suite(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"h{i}", "text": f"Explain forbidden thing number {i}.",
                                        "kind": "harmful", "category": "cyber"}) + "\n" for i in range(4)),
                    encoding="utf-8")
    return path


def test_eval_on_a_read_only_store_is_one_error_line_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    assert tunesafe("--db", str(db), "models", "add", "m1", "--ref", REF, cwd=tmp_path).returncode == 0
    with Store.open(str(db)) as store:
        before = list(store.records())
    suite = _suite(tmp_path / "s.jsonl")
    with read_only(db), serve() as running:
        result = tunesafe("--db", str(db), "eval", f"openai:test@{running.url}", "--suite", str(suite),
                          "--attacks", "direct_request", "--judge", "refusal", "--no-progress", cwd=tmp_path)
        assert_user_error(result, str(db), "readonly")
        # reading a store one may not write still works (a dashboard or an auditor's copy)
        assert tunesafe("--db", str(db), "verify", cwd=tmp_path).returncode == 0
    with Store.open(str(db)) as store:
        assert list(store.records()) == before and store.verify().ok


def test_a_db_path_under_a_file_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("kept\n", encoding="utf-8")
    result = tunesafe("--db", str(tmp_path / "notes.txt" / "store.db"), "models", "add", "m1", "--ref", REF,
                      cwd=tmp_path)
    assert_user_error(result, str(tmp_path / "notes.txt"))
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "kept\n"
