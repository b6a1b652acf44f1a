"""Commands that only read, and the dashboard without a token, never write to the store: a store on a
read-only mount (an auditor's copy) is served and verified as it is, and a store with an older schema is
left at it with one line naming the command that migrates it.

Tests may run as root, whom a file's mode does not stop: so beyond "it works", each test checks that
nothing was written (no -wal/-shm/-journal file appeared beside the store, its bytes and mtime unchanged).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence import database
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model, inventory
from tunesafe.testing.read_only_mount import read_only_mount_prefix
from tunesafe.types import RecordType

Cli = Callable[..., tuple[int, str, str]]


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in the folder: its content hash and mtime."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


@contextlib.contextmanager
def _modes_read_only(folder: Path) -> Iterator[None]:
    """An auditor's copy: files 0444, the folder 0555 (put back afterwards so tmp_path can be removed)."""
    for file in folder.iterdir():
        file.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)
        for file in folder.iterdir():
            file.chmod(0o644)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run(folder, *argv)`: argv run with `folder` mounted read-only over itself."""
    if read_only_mount_prefix(tmp_path) is None:
        pytest.skip("no read-only bind mount here (unshare with user namespaces)")
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("TUNESAFE_DB", None)

    def run(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = read_only_mount_prefix(folder)
        assert prefix is not None
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120, env=env)

    return run


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A port already bound: `serve` opens the store, then stops when uvicorn cannot bind it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _store_with_a_model(folder: Path) -> Path:
    folder.mkdir()
    db = folder / "store.db"
    with Store.open(str(db)) as store:
        add_model(store, ModelSpec(name="bot", ref="openai:bot@http://127.0.0.1:9/v1"))
    assert sorted(p.name for p in folder.iterdir()) == ["store.db"]  # closing checkpointed the WAL
    return db


DASHBOARD = """
import sys
from fastapi.testclient import TestClient
from tunesafe.evidence.store import Store
from tunesafe.web.app import create_app
from tunesafe.web.auth import Access
with Store.open(sys.argv[1], read_only=True) as store:
    client = TestClient(create_app(store, Access(None)), base_url="http://127.0.0.1")
    urls = ("/", "/models/bot", "/runs", "/evidence", "/evidence/verify")
    print(*(client.get(url).status_code for url in urls))
"""


def test_a_store_on_a_read_only_mount_is_served_and_verified(
    tmp_path: Path, read_only_mount: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """SQLite makes -wal/-shm files beside the database even to read it: a store on a read-only mount (an
    auditor's copy) could not be verified, listed or served ("attempt to write a readonly database").
    Readers open it read-only, as immutable since nothing can write there."""
    pytest.importorskip("fastapi")
    folder = tmp_path / "copy"
    db = _store_with_a_model(folder)
    before = _fingerprint(folder)
    cli = (sys.executable, "-m", "tunesafe.cli.app", "--db", str(db))

    verified = read_only_mount(folder, *cli, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "evidence chain intact: 1 records" in " ".join(verified.stdout.split())
    listed = read_only_mount(folder, *cli, "models", "list")
    assert listed.returncode == 0 and "bot" in listed.stdout, listed.stderr
    with _taken_port() as port:
        served = read_only_mount(folder, *cli, "serve", "--port", str(port))
    assert "address already in use" in served.stderr, served.stderr  # it got past opening the store
    pages = read_only_mount(folder, sys.executable, "-c", DASHBOARD, str(db))
    assert pages.stdout.split() == ["200"] * 5, pages.stderr
    assert _fingerprint(folder) == before


def test_a_store_whose_modes_forbid_writing_is_opened_immutable(tmp_path: Path) -> None:
    """A copy whose file and folder carry no write permission is opened read-only and immutable (no
    -shm/-wal needed; checked on the connection's URI where root is not stopped by modes); a writable
    store opened by a reader is not immutable, since a writer may append while it is read, and its
    connections refuse writes."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tunesafe.web.app import create_app
    from tunesafe.web.auth import Access

    folder = tmp_path / "copy"
    db = _store_with_a_model(folder)
    before = _fingerprint(folder)
    with _modes_read_only(folder), Store.open(str(db), read_only=True) as store:
        assert store.engine.url.query.get("mode") == "ro" and store.engine.url.query.get("immutable") == "1"
        client = TestClient(create_app(store, Access(None)), base_url="http://127.0.0.1")
        for url in ("/", "/models/bot", "/evidence/verify"):
            assert client.get(url).status_code == 200, url
    assert _fingerprint(folder) == before
    with Store.open(str(db), read_only=True) as store:
        assert "immutable" not in store.engine.url.query
        assert [m.name for m in inventory(store).values()] == ["bot"]
        with pytest.raises(UserError, match="readonly database"), store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM records")
    assert _fingerprint(folder) == before


def _old_store(folder: Path, revision: str = "0005") -> Path:
    """A store as an older tunesafe left it: its schema at `revision`, a record in its chain."""
    folder.mkdir()
    db = folder / "store.db"
    url = database.parse_url(str(db))
    engine = database.create(url)
    database.migrate(engine, url, revision=revision)
    Store(engine, url).append(RecordType.MODEL_VERSION, {"name": "bot"}, subject="bot")
    engine.dispose()
    return db


def _revision(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_reading_commands_leave_an_older_schema_store_as_it_is(tmp_path: Path, tunesafe_cli: Cli) -> None:
    """`verify`, `models list` and the dashboard migrated a store written by an older tunesafe when they
    opened it (a write, and one the older version cannot undo). They leave it as it is and say, in one
    line, which command migrates it; `tunesafe migrate` does, and then they read it."""
    folder = tmp_path / "old"
    db = _old_store(folder)
    before = _fingerprint(folder)
    for args in (("verify",), ("models", "list"), ("serve", "--port", "{port}")):
        with _taken_port() as port:
            code, _, err = tunesafe_cli("--db", str(db), *(a.format(port=port) for a in args))
        assert code == 2, (args, err)
        assert "schema revision 0005" in err and "`tunesafe migrate`" in err, (args, err)
        assert _fingerprint(folder) == before, args
    with pytest.raises(UserError, match="tunesafe migrate"):
        Store.open(str(db), read_only=True)
    assert _fingerprint(folder) == before and _revision(db) == "0005"

    code, out, err = tunesafe_cli("--db", str(db), "migrate")
    assert code == 0 and f"from revision 0005 to {database.SCHEMA_HEAD}" in " ".join(out.split()), err
    assert _revision(db) == database.SCHEMA_HEAD
    code, out, err = tunesafe_cli("--db", str(db), "verify")
    assert code == 0, err


def test_a_reader_refuses_a_store_newer_than_it_knows_without_writing(tmp_path: Path) -> None:
    """The writer's refusals (a newer schema, tunesafe tables without a version) hold for a reader too,
    and the reader leaves the file as it is."""
    folder = tmp_path / "newer"
    db = _old_store(folder, revision=database.SCHEMA_HEAD)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    before = _fingerprint(folder)
    with pytest.raises(UserError, match="revision 9999 is newer than this tunesafe knows"):
        Store.open(str(db), read_only=True)
    assert _fingerprint(folder) == before
