"""The evidence chain on a real store (SQLite file and PostgreSQL): append, read back, verify, and
detection of every kind of edit made behind the store's back."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tunesafe.errors import UserError
from tunesafe.evidence import store as store_module
from tunesafe.evidence.chain import GENESIS, envelope_text, link_hash
from tunesafe.evidence.store import Store
from tunesafe.types import RecordType, canonical_json


@pytest.fixture
def store(store_url: str):
    with Store.open(store_url) as opened:
        yield opened


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        store.append(RecordType.RUN, {"i": i, "note": f"record {i}"}, actor="tester", subject=f"m{i % 2}")


def test_append_links_records_into_one_chain(store: Store) -> None:
    body = {"name": "base", "é": [1, 2]}
    first = store.append(RecordType.MODEL_VERSION, body, actor="alice", subject="base")
    second = store.append(RecordType.RUN, {"model_name": "base"})
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS and second.prev_hash == first.hash
    envelope = envelope_text(first.type, canonical_json(first.body), first.created_at, "alice", "base")
    assert first.hash == link_hash(GENESIS, envelope)
    # the hand-assembled envelope is exactly canonical_json of the envelope mapping
    assert envelope == canonical_json({"type": first.type, "body": first.body, "created_at": first.created_at,
                                       "actor": "alice", "subject": "base"})
    assert second.actor  # defaulted (TUNESAFE_ACTOR or user@host)
    assert store.get(1) == first and store.get(2) == second
    result = store.verify()
    assert result.ok and result.checked == 2 and result.head_hash == second.hash


def test_records_filters_and_pages_in_chain_order(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_PAGE", 4)  # small pages, so paging is exercised on few records
    _fill(store, 21)
    assert [r.id for r in store.records()] == list(range(1, 22))
    m1 = list(store.records(subject="m1"))
    assert [r.body["i"] for r in m1] == list(range(1, 21, 2)) and all(r.subject == "m1" for r in m1)
    assert list(store.records(type=RecordType.INCIDENT)) == []
    assert store.verify().checked == 21  # verify streams in pages too


def test_get_unknown_id_is_a_user_error(store: Store) -> None:
    with pytest.raises(UserError, match="no evidence record with id 7"):
        store.get(7)
    for impossible in (0, -1, 10 ** 20):  # past 64 bits the driver raised OverflowError (a traceback)
        with pytest.raises(UserError, match="no evidence record"):
            store.get(impossible)


def _sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.mark.parametrize(
    ("statement", "bad_id", "reason"),
    [
        ("UPDATE records SET body = replace(body, 'record 3', 'record 9') WHERE id = 4", 4, "hash"),
        ("UPDATE records SET actor = 'mallory' WHERE id = 2", 2, "hash"),
        ("UPDATE records SET subject = 'other' WHERE id = 5", 5, "hash"),
        ("UPDATE records SET created_at = '2020-01-01T00:00:00+00:00' WHERE id = 1", 1, "hash"),
        ("DELETE FROM records WHERE id = 3", 4, "link"),
        ("DELETE FROM records WHERE id >= 5", 6, "head"),
        (f"UPDATE chain_head SET last_hash = '{'a' * 64}'", 6, "head"),
    ],
)
def test_verify_names_the_first_broken_record(store: Store, statement: str, bad_id: int, reason: str) -> None:
    _fill(store, 6)
    expected_hash = store.get(bad_id).hash if reason == "hash" else None
    _sql(store, statement)
    result = store.verify()
    assert not result.ok and result.first_bad is not None
    assert (result.first_bad.id, result.first_bad.reason) == (bad_id, reason)
    if expected_hash is not None:  # the recomputed hash differs from the one stored
        assert result.first_bad.found == expected_hash and result.first_bad.expected != expected_hash


def test_verify_reports_a_deleted_chain_head_instead_of_crashing(store: Store) -> None:
    # the head row is part of what an editor can tamper with; verify crashed with NoResultFound (a
    # traceback from `tunesafe verify`) instead of naming the broken chain
    _fill(store, 3)
    _sql(store, "DELETE FROM chain_head")
    result = store.verify()
    assert not result.ok and result.checked == 3
    assert result.first_bad is not None and result.first_bad.reason == "head"
    assert result.first_bad.found == "no chain head" and result.first_bad.expected == f"3:{store.get(3).hash}"
    # appending cannot know where the chain ends: one clear error (was NoResultFound), nothing written
    with pytest.raises(UserError, match="chain head is missing"):
        store.append(RecordType.RUN, {"i": 99})
    assert [r.id for r in store.records()] == [1, 2, 3]


def test_verify_detects_swapped_records(store: Store) -> None:
    _fill(store, 5)
    # move record 3's content into slot 2 and vice versa (ids are primary keys, so swap via a spare id)
    _sql(store, "UPDATE records SET id = 100 WHERE id = 2")
    _sql(store, "UPDATE records SET id = 2 WHERE id = 3")
    _sql(store, "UPDATE records SET id = 3 WHERE id = 100")
    result = store.verify()
    assert result.first_bad is not None and (result.first_bad.id, result.first_bad.reason) == (2, "link")


def test_chain_stays_valid_across_reopen(store_url: str) -> None:
    with Store.open(store_url) as store:
        _fill(store, 3)
    with Store.open(store_url) as store:
        store.append(RecordType.INCIDENT, {"what": "reopened"})
        assert store.verify().ok and store.verify().checked == 4


def test_append_many_is_all_or_nothing(store: Store) -> None:
    store.append(RecordType.RUN, {"i": 0})
    batch = [(RecordType.MODEL_VERSION, {"name": f"m{i}"}, f"m{i}") for i in range(3)]
    written = store.append_many(batch, actor="importer")
    assert [r.id for r in written] == [2, 3, 4] and written[0].prev_hash == store.get(1).hash
    assert list(store.records())[1:] == written
    unserialisable = [(RecordType.RUN, {"ok": 1}, None), (RecordType.RUN, {"bad": object()}, None)]
    with pytest.raises(TypeError):
        store.append_many(unserialisable)
    assert store.verify().checked == 4 and store.append_many([]) == []


def test_text_that_is_not_utf8_is_named_and_nothing_is_stored(store: Store) -> None:
    store.append(RecordType.INCIDENT, {"title": "first"})
    # a command-line argument in another encoding reaches Python as a lone surrogate (surrogateescape)
    for body, actor, field in (({"fields": {"approved_by": "x\udcff"}}, None, "body.fields.approved_by"),
                               ({"note": "ok"}, "j\udcfe", "actor")):
        with pytest.raises(UserError, match=field) as info:
            store.append(RecordType.CONTROL_ATTESTATION, body, actor=actor)
        assert "not valid UTF-8" in str(info.value)
    assert [r.id for r in store.records()] == [1] and store.verify().ok
