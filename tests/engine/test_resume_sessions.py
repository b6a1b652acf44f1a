"""A run resumed in later sessions, against the real loopback server and a real store: however a
session ends, the run is left as a first session ending that way would leave it; replicas given in
another order (or one replaced) resume the run; the model ids the replies named add up over sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tunesafe.engine import results as store_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store

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
    from tunesafe.errors import EndpointUnavailable
    from tunesafe.testing.openai_server import serve

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
