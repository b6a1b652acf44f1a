"""How the dashboard and the reading commands use the store file: a database failing under the running
dashboard, a store on a read-only mount, a store written by an older tunesafe."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
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
