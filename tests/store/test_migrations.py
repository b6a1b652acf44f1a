"""Schema migrations run on open: an older store is upgraded without losing or breaking records, and the
models in schema.py match what the migrations build."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tunesafe.errors import UserError
from tunesafe.evidence import database
from tunesafe.evidence.schema import Base
from tunesafe.evidence.store import Store
from tunesafe.types import RecordType


def test_store_at_first_revision_is_upgraded_with_its_records(store_url: str) -> None:
    url = database.parse_url(store_url)
    engine = database.create(url)
    database.migrate(engine, url, revision="0001")  # the chain only, as the first release created it
    old = Store(engine, url)
    written = [old.append(RecordType.MODEL_VERSION, {"name": f"m{i}"}, subject=f"m{i}") for i in range(3)]
    assert "runs" not in inspect(engine).get_table_names()
    old.close()

    with Store.open(store_url) as store:
        assert list(store.records()) == written
        assert store.verify().ok
        assert {"runs", "attempt_results", "response_cache"} <= set(inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == database.head_revision()
        store.append(RecordType.INCIDENT, {"after": "upgrade"})
        assert store.verify().checked == 4


def test_schema_head_constant_is_the_newest_migration() -> None:
    assert database.head_revision() == database.SCHEMA_HEAD


def test_schema_models_match_migrations(store_url: str) -> None:
    with Store.open(store_url) as store, store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _unversioned_old_layout(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, type TEXT, body TEXT, hash TEXT)")
        conn.execute("INSERT INTO records VALUES (1, 'run', '{}', 'abc')")


def test_unversioned_older_layout_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _unversioned_old_layout(path)
    with pytest.raises(UserError, match="no schema version") as info:
        Store.open(str(path))
    assert info.value.where == str(path)
    with sqlite3.connect(path) as conn:  # nothing created, nothing lost
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["records"]
        assert conn.execute("SELECT * FROM records").fetchall() == [(1, "run", "{}", "abc")]


def test_database_from_a_newer_tunesafe_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(UserError, match="newer than this tunesafe"):
        Store.open(str(path))


@pytest.mark.parametrize("must_exist", [True, False])
def test_another_applications_alembic_database_is_not_called_a_newer_store(tmp_path: Path,
                                                                           must_exist: bool) -> None:
    # Another Alembic-managed application's SQLite file has an alembic_version too: the error told the
    # user to upgrade tunesafe, which cannot help; the database must be named as not a tunesafe store
    path = tmp_path / "other-app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('3f2a1b9c7d4e')")
    with pytest.raises(UserError) as info:
        Store.open(str(path), must_exist=must_exist)
    assert "newer" not in info.value.message and "not a tunesafe store" in info.value.message
    assert "upgrade" not in (info.value.fix or "")
    with sqlite3.connect(path) as conn:  # nothing created or changed
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        assert tables == ["alembic_version", "users"]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("3f2a1b9c7d4e",)]
