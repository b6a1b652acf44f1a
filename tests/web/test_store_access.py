"""How the dashboard and the reading commands use the store file: a database failing under the running
dashboard, a store on a read-only mount, a store written by an older tunesafe."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.testing.read_only_mount import read_only_mount_prefix
from tunesafe.web.app import create_app
from tunesafe.web.auth import Access

LOOPBACK = "http://127.0.0.1"
PAGES = ("/", "/runs", "/models/bot", "/evidence", "/evidence/1", "/incidents/1")


def _store_with_a_model(path: Path) -> Store:
    store = Store.open(str(path))
    add_model(store, ModelSpec(name="bot", ref="openai:bot@http://127.0.0.1:9/v1"))
    return store


@pytest.mark.parametrize("failure", ["deleted", "corrupted"])
def test_a_database_failing_under_the_running_dashboard_is_a_503_naming_it(tmp_path: Path,
                                                                           failure: str) -> None:
    """The store's file deleted or overwritten while the dashboard runs answered 400 (as if the request
    were wrong), and a record or incident looked up then was "not in this store" (404): it is 503, one
    line naming the file and the failure, no traceback."""
    db = tmp_path / "store.db"
    with _store_with_a_model(db) as store:
        client = TestClient(create_app(store, Access(None)), base_url=LOOPBACK, raise_server_exceptions=False)
        assert client.get("/").status_code == 200
        store.engine.dispose()  # the pooled connections would go on reading what they had open
        if failure == "deleted":
            db.unlink()
        else:
            db.write_bytes(b"not a database " * 512)
        for url in (*PAGES, "/api/v1/runs", "/api/v1/models/bot", "/api/v1/evidence"):
            response = client.get(url)
            assert response.status_code == 503, (url, response.status_code, response.text[-300:])
            assert str(db) in response.text and "cannot use the SQLite database" in response.text
            assert "Traceback" not in response.text


def test_a_database_failing_under_a_dashboard_with_a_token_is_a_503_for_a_signed_in_caller(
        tmp_path: Path) -> None:
    """With a token every request looks its session up among the stored sign-outs before anything else: the
    store failing there was a bare 500 "Internal Server Error", for a page and for a form posted alike. It is
    the same 503 naming the file as every other page's."""
    db = tmp_path / "store.db"
    with _store_with_a_model(db) as store:
        app = create_app(store, Access(TOKEN))
        client = TestClient(app, base_url=LOOPBACK, raise_server_exceptions=False)
        assert client.post("/login", data={"token": TOKEN, "name": "ann"}).status_code == 200
        csrf = client.get("/api/v1/session").json()["csrf_token"]
        store.engine.dispose()
        db.write_bytes(b"not a database " * 512)
        for response in (client.get("/"), client.get("/api/v1/runs"),
                         client.post("/incidents/1/update", data={"note": "triaged", "csrf_token": csrf})):
            assert response.status_code == 503, (response.request.url, response.status_code, response.text)
            assert str(db) in response.text and "cannot use the SQLite database" in response.text


TOKEN = "a-dashboard-token-0123456789"


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


def _read_only_mount_prefix(folder: Path) -> list[str]:
    prefix = read_only_mount_prefix(folder)
    if prefix is None:
        pytest.skip("no read-only bind mount here (unshare with user namespaces)")
    return prefix


@contextlib.contextmanager
def _modes_read_only(folder: Path) -> Iterator[list[str]]:
    """No write permission: files 0444, the folder 0555 (put back afterwards so tmp_path can be removed)."""
    for file in folder.iterdir():
        file.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield []
    finally:
        folder.chmod(0o755)
        for file in folder.iterdir():
            file.chmod(0o644)


@contextlib.contextmanager
def _serving(prefix: Sequence[str], db: Path, token_file: Path) -> Iterator[tuple[str, list[str]]]:
    """`tunesafe serve` with a token, run for real; yields its base URL and, once it stopped, its stderr."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("TUNESAFE_DB", "TUNESAFE_TOKEN")}
    argv = [*prefix, sys.executable, "-m", "tunesafe.cli.app", "--db", str(db), "serve", "--port", str(port),
            "--token-file", str(token_file)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr: list[str] = []
    try:
        while server.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        if server.poll() is not None:
            pytest.fail(f"serve stopped at start (exit {server.returncode}): {server.communicate()[1]}")
        yield f"http://127.0.0.1:{port}", stderr
    finally:
        server.terminate()
        stderr.extend(server.communicate(timeout=60)[1].splitlines())


@pytest.mark.parametrize("how", ["read-only mount", "no write permission"])
def test_serve_with_a_token_on_a_store_it_cannot_write_serves_it_read_only(tmp_path: Path, how: str) -> None:
    """`serve` with a token opened the store to write, so on a read-only mount it stopped at start with
    "cannot use the SQLite database" and nobody could read the store (and, as root, a copy without write
    permission was written to). It serves every page read-only, says once on stderr that writing is off
    and why, and each write (a form, the API, a sign-out) is a 409 naming the read-only store."""
    folder = tmp_path / "copy"
    folder.mkdir()
    _store_with_a_model(folder / "store.db").close()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    before = _fingerprint(folder)
    if how == "read-only mount":
        setting: contextlib.AbstractContextManager[list[str]] = contextlib.nullcontext(
            _read_only_mount_prefix(folder))
    else:
        setting = _modes_read_only(folder)
    with setting as prefix, _serving(prefix, folder / "store.db", token_file) as (url, stderr), \
            httpx.Client(base_url=url) as client:
        assert client.post("/login", data={"token": TOKEN, "name": "ann"}).status_code == 303
        for page in ("/", "/models/bot", "/runs", "/evidence", "/evidence/verify", "/incidents"):
            assert client.get(page).status_code == 200, page
        csrf = client.get("/api/v1/session").json()["csrf_token"]
        refused = [
            client.post("/models/bot/attest", data={"csrf_token": csrf, "control": "PRE-04", "note": "ok"}),
            client.post("/logout", data={"csrf_token": csrf}),
            client.post("/api/v1/incidents/1/updates", json={"note": "triaged"},
                        headers={"Authorization": f"Bearer {TOKEN}"}),
        ]
        for response in refused:
            assert response.status_code == 409, (response.request.url, response.status_code, response.text)
            assert "this store is read-only" in response.text
        assert client.get("/").status_code == 200  # the refused sign-out left the session as it was
    off = [line for line in stderr if "writing is off" in line]
    assert len(off) == 1 and str(folder / "store.db") in off[0], stderr
    assert _fingerprint(folder) == before
