"""A run resumed in later sessions, against the real loopback server and a real store: however a
session ends, the run is left as a first session ending that way would leave it; replicas given in
another order (or one replaced) resume the run; the model ids the replies named add up over sessions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tunesafe.engine import results as store_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.errors import EndpointUnavailable, UserError
from tunesafe.evidence.schema import RunRow
from tunesafe.evidence.store import Store
from tunesafe.models import load_model
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import RecordType, canonical_json, sha256_hex

from .conftest import Server, write_suite


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(str(tmp_path / "store.db"))


@pytest.fixture
def config(tmp_path: Path) -> EvalConfig:
    return EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=6, n_benign=2)),
                      attacks="direct_request,prefix_injection", judges=("refusal",), concurrency=2)


def _evaluate(store: Store, ref: str | None, config: EvalConfig, **kw: Any) -> Any:
    return asyncio.run(evaluate(store, ref, config, progress=False, **kw))


def _stops_at_start(error: BaseException) -> Any:
    def on_start(*_: object) -> None:  # Ctrl-C (or a failure) once the run is marked running
        raise error
    return on_start


def _stopped_run(store: Store, ref: str, config: EvalConfig) -> str:
    """A run created and stopped before its first attempt (Ctrl-C at its start)."""
    with pytest.raises(KeyboardInterrupt):
        _evaluate(store, ref, config, on_start=_stops_at_start(KeyboardInterrupt()))
    return store_results.list_runs(store)[-1].id


@pytest.mark.parametrize(("error", "status"), [(KeyboardInterrupt(), "interrupted"),
                                               (UserError("stop", where="test", fix="none"), "failed")])
def test_a_session_stopped_after_marking_the_run_running_never_leaves_it_running(
        store: Store, config: EvalConfig, server: Server, error: BaseException, status: str) -> None:
    with pytest.raises(type(error)):
        _evaluate(store, server.ref(), config, on_start=_stops_at_start(error))
    [run] = store_results.list_runs(store)
    assert run.status == status  # a first session
    with pytest.raises(type(error)):
        _evaluate(store, None, config, resume=run.id, on_start=_stops_at_start(error))
    assert store_results.load_run(store, run.id).status == status  # a resumed one, the same
    assert _evaluate(store, None, config, resume=run.id).status == "complete"


def test_ctrl_c_while_the_run_is_closed_leaves_it_interrupted_and_resumable(
        store: Store, config: EvalConfig, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _stopped_run(store, server.ref(), config)

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt
    # every attempt done, Ctrl-C while the run's evidence record is being written
    monkeypatch.setattr("tunesafe.engine.runner.summarize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(store, None, config, resume=run_id)
    monkeypatch.undo()
    info = store_results.load_run(store, run_id)
    assert (info.status, info.n_done) == ("interrupted", info.n_planned)
    assert _evaluate(store, None, config, resume=run_id).status == "complete"


def test_a_resume_against_a_failing_or_stopped_server_leaves_the_run_interrupted(
        store: Store, config: EvalConfig) -> None:
    with serve() as server:
        ref = f"openai:test@{server.url}?breaker=1&cooldown=0.05&max_retries=0&max_pause=0"
        run_id = _stopped_run(store, ref, config)
        server.app.go_down()  # every chat request fails: the resume stops past max_pause
        with pytest.raises(EndpointUnavailable):
            _evaluate(store, None, config, resume=run_id)
        assert store_results.load_run(store, run_id).status == "interrupted"
    with pytest.raises(UserError, match="cannot reach"):  # the server is gone
        _evaluate(store, None, config, resume=run_id)
    assert store_results.load_run(store, run_id).status == "interrupted"


@pytest.fixture
def replicas() -> Iterator[list[RunningServer]]:
    with serve(latency_s=0.01) as a, serve(latency_s=0.01) as b, serve(latency_s=0.01) as c:
        yield sorted([a, b, c], key=lambda s: s.url)


def _over(*servers: RunningServer, model: str = "tunesafe-test") -> str:
    return f"openai:{model}@" + ",".join(s.url for s in servers)


def test_a_replica_run_resumes_with_its_replicas_in_another_order_or_one_replaced(
        store: Store, config: EvalConfig, replicas: list[RunningServer]) -> None:
    a, b, c = replicas
    assert load_model(_over(a, b)).content_hash() == load_model(_over(b, a)).content_hash()
    reordered = _stopped_run(store, _over(a, b), config)
    assert _evaluate(store, _over(b, a), config, resume=reordered).status == "complete"
    replaced = _stopped_run(store, _over(a, b), config)
    report = _evaluate(store, _over(a, c), config, resume=replaced)
    assert report.status == "complete"
    assert [r["url"] for r in report.stats["replicas"]] == [a.url, c.url]  # where the answers came from
    started = {"model_ref": _over(a, b), "model_hash": load_model(_over(a, b)).content_hash()}
    for run_id, now in ((reordered, _over(b, a)), (replaced, _over(a, c))):  # where it last ran
        info = store_results.load_run(store, run_id)
        assert (info.model_ref, info.model_hash) == (now, load_model(now).content_hash())
        assert info.config["moved_from"] == [started]  # and where it was started


def test_a_replica_run_is_not_resumed_on_another_model(store: Store, config: EvalConfig,
                                                       replicas: list[RunningServer]) -> None:
    a, b, c = replicas
    run_id = _stopped_run(store, _over(a, b), config)
    with pytest.raises(UserError, match="evaluated"):  # another model name
        _evaluate(store, _over(b, a, model="other"), config, resume=run_id)
    with pytest.raises(UserError, match="evaluated"):  # other options
        _evaluate(store, _over(b, a) + "?prefill=1", config, resume=run_id)
    with serve(model="other-weights") as d, serve(model="other-weights") as e, \
            pytest.raises(UserError, match="changed since run"):  # servers that do not serve it
        _evaluate(store, _over(d, e), config, resume=run_id)
    single = _stopped_run(store, f"openai:tunesafe-test@{a.url}", config)
    with pytest.raises(UserError, match="evaluated"):  # one server's run stays with its URL
        _evaluate(store, f"openai:tunesafe-test@{b.url}", config, resume=single)
    assert store_results.load_run(store, run_id).n_done == 0


def test_a_misrouted_replica_fails_the_run_instead_of_mixing_two_models_in_it(
        store: Store, config: EvalConfig, replicas: list[RunningServer]) -> None:
    a, b, _ = replicas
    b.app.config.reported_model = "other-weights"  # same /v1/models entry, other weights behind it
    with pytest.raises(UserError, match="other-weights"):
        _evaluate(store, _over(a, b), config)
    (run,) = store_results.list_runs(store)
    assert run.status == "failed"  # its answers may mix two models: not a run to resume or gate
    assert not list(store.records(type=RecordType.RUN))


def test_runs_stored_before_replica_order_stopped_counting_still_resume(
        store: Store, config: EvalConfig, replicas: list[RunningServer]) -> None:
    a, b, _ = replicas
    single = load_model(f"openai:tunesafe-test@{a.url}")
    info = single.model_info()
    # one URL: the same identity as ever
    assert single.content_hash() == sha256_hex(canonical_json({"ref": single.ref, "model_info": info}))
    run_id = _stopped_run(store, _over(b, a), config)
    legacy = sha256_hex(canonical_json({"ref": _over(b, a), "model_info": info}))  # the URLs as given
    with store.engine.begin() as conn:
        conn.execute(update(RunRow).where(RunRow.id == run_id).values(model_hash=legacy))
    assert _evaluate(store, _over(b, a), config, resume=run_id).status == "complete"
    assert store_results.load_run(store, run_id).model_hash == legacy


def test_the_model_ids_the_replies_named_add_up_over_the_sessions_of_a_run(tmp_path: Path, store: Store,
                                                                           config: EvalConfig) -> None:
    with serve(latency_s=0.02, reported_model="snapshot-1") as server:
        ref = f"openai:tunesafe-test@{server.url}?breaker=1&cooldown=0.05&max_retries=0&max_pause=0"

        def down_part_way() -> None:  # once some attempts are done (not after a fixed time)
            deadline = time.monotonic() + 60
            while len(server.app.requests) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            server.app.go_down()

        timer = threading.Thread(target=down_part_way)
        timer.start()
        with pytest.raises(EndpointUnavailable):
            _evaluate(store, ref, config)
        timer.join()
        [run] = store_results.list_runs(store)
        assert 0 < run.n_done < run.n_planned
        first = _answered(store, run.id)  # one request each: direct_request and prefix_injection are one turn
        server.app.come_back()
        server.app.config.reported_model = "snapshot-2"  # the provider moved its alias in between
        report = _evaluate(store, None, config, resume=run.id)
    second = _answered(store, run.id) - first
    assert first > 0 and second > 0
    assert report.stats["reported_models"] == {"snapshot-2": second}  # this session
    served = {"snapshot-1": first, "snapshot-2": second}
    assert store_results.reported_models(store, run.id) == served  # what the gate reports
    [record] = store.records(type=RecordType.RUN)
    assert record.body["reported_models"] == served


def _answered(store: Store, run_id: str) -> int:
    return sum(r.generation.error is None for r in store_results.load_results(store, run_id))


def test_a_run_moved_to_other_replicas_resumes_there_and_keeps_where_it_was(
        store: Store, config: EvalConfig, replicas: list[RunningServer]) -> None:
    # Resumed on a, c and stopped again: a later resume without MODEL must go on where it last ran, not
    # back to the replica list it was started with (b may be gone); the old list stays on record.
    a, b, c = replicas
    run_id = _stopped_run(store, _over(b, a), config)
    started_hash = store_results.load_run(store, run_id).model_hash
    with pytest.raises(KeyboardInterrupt):
        _evaluate(store, _over(a, c), config, resume=run_id, on_start=_stops_at_start(KeyboardInterrupt()))
    info = store_results.load_run(store, run_id)
    assert (info.model_ref, info.model_hash) == (_over(a, c), load_model(_over(a, c)).content_hash())
    report = _evaluate(store, None, config, resume=run_id)
    assert report.status == "complete"
    assert [r["url"] for r in report.stats["replicas"]] == [a.url, c.url]
    assert not b.requests
    [record] = [r for r in store.records(type=RecordType.RUN) if r.body["run_id"] == run_id]
    assert record.body["model_ref"] == _over(a, c)
    assert record.body["moved_from"] == [{"model_ref": _over(b, a), "model_hash": started_hash}]
