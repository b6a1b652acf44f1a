"""The engine end to end against the real loopback OpenAI-compatible server and a real SQLite store:
results, evidence, reuse, the concurrency bound, fail-closed errors, resume checks and replay."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tunesafe.analysis.outcome import outcome
from tunesafe.attacks import library as attack_library
from tunesafe.attacks.base import AttackImpl, ExecContext, Execution, make_meta
from tunesafe.engine.results import list_runs, load_results, load_run, results_digest
from tunesafe.engine.runner import (
    EvalConfig,
    config_hash,
    evaluate,
    find_reusable_run,
    plan_evaluation,
    run_evaluation,
)
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.judges.base import registry as judge_registry
from tunesafe.production.inventory import ModelSpec, add_model, missing_post_eval
from tunesafe.types import Attempt, RecordType, Verdict

from .conftest import Server, write_suite


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(str(tmp_path / "store.db"))


@pytest.fixture
def any_store(store_url: str) -> Store:
    """A fresh store on SQLite and (when TUNESAFE_TEST_PG_URL is set) on PostgreSQL."""
    return Store.open(store_url)


def _run(store: Store, ref: str, config: EvalConfig, **kw: Any) -> str:
    return asyncio.run(run_evaluation(store, ref, config, progress=False, **kw))


def test_run_stores_every_planned_attempt_and_closes_with_evidence(tmp_path: Path, any_store: Store,
                                                                   server: Server) -> None:
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl")),
                        attacks="direct_request,prefix_injection", judges=("refusal",), concurrency=4)
    add_model(any_store, ModelSpec("my-base", server.ref("base")))
    add_model(any_store, ModelSpec("my-ft", server.ref(), base="my-base"))
    assert [m.name for m in missing_post_eval(any_store)] == ["my-ft"]
    report = asyncio.run(evaluate(any_store, server.ref(), config, model_name="my-ft", progress=False))
    planned = plan_evaluation(config)
    results = load_results(any_store, report.run_id)
    assert sorted(r.attempt.id for r in results) == sorted(planned.plan.ids)
    info = load_run(any_store, report.run_id)
    assert (info.status, info.n_done, info.n_planned) == ("complete", len(results), len(results))
    assert info.n_errors == 0
    # the echo server repeats the request: complied, never refused
    assert {outcome(r) for r in results} == {"success", "complied"}
    assert report.summary is not None and report.summary.overall.asr.rate == 1.0
    [run_record] = list(any_store.records(type=RecordType.RUN))
    body = run_record.body
    assert body["run_id"] == report.run_id and run_record.subject == "my-ft"
    assert body["results_digest"] == results_digest(results)  # the chain covers the stored rows
    assert body["config"]["suite"]["content_hash"] and body["config"]["judges"][0]["name"] == "refusal"
    assert body["summary"]["groups"]["overall"]["asr"]["k"] == report.summary.overall.asr.k
    [safety] = list(any_store.records(type=RecordType.SAFETY_EVAL, subject="my-ft"))
    assert safety.body["run_id"] == report.run_id and safety.body["details"]["run_record"] == run_record.id
    assert [m.name for m in missing_post_eval(any_store)] == []  # the inventory sees the evaluation
    assert any_store.verify().ok
    # a complete run with the same model hash and config is found for reuse; another seed is not
    assert find_reusable_run(any_store, server.ref(), config) == report.run_id
    assert find_reusable_run(any_store, server.ref(), replace(config, seed=1)) is None


def test_at_most_concurrency_requests_are_in_flight(tmp_path: Path, store: Store, server: Server) -> None:
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=20)), attacks="template",
                        judges=("refusal",), concurrency=3, use_cache=False)
    run_id = _run(store, server.ref(), config)
    assert load_run(store, run_id).n_done > 50
    assert server.app.max_in_flight == 3  # reached (the plan is long) and never exceeded


@pytest.mark.parametrize("fault", ["500", "malformed", "garbage", "drop"])
def test_backend_errors_are_stored_as_errors_never_as_refusals(tmp_path: Path, any_store: Store,
                                                               server: Server, fault: str) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=4, n_benign=0, faulty=2, fault=fault)
    config = EvalConfig(suite=str(suite), attacks="direct_request", judges=("refusal",))
    run_id = _run(any_store, server.ref(max_retries="0"), config)
    results = {r.attempt.behavior_id: r for r in load_results(any_store, run_id)}
    for faulty in ("h0", "h1"):
        assert results[faulty].generation.error and outcome(results[faulty]) == "error"
        assert results[faulty].verdicts == ()  # never judged, so never "refused"
    info = load_run(any_store, run_id)
    assert (info.status, info.n_errors) == ("complete", 2)
    [record] = list(any_store.records(type=RecordType.RUN))
    overall = record.body["summary"]["groups"]["overall"]
    assert overall["error"]["k"] == 2 and overall["refusal"]["n"] == 2  # errors left out of the rates


class _BrokenJudge:
    name = "broken"
    version = "1"

    async def judge(self, items: Sequence[Any]) -> list[Verdict]:
        raise RuntimeError("judge backend unavailable")


class _BoomAttack(AttackImpl):
    meta = make_meta("style_injection", "boom", "1", "Raises on execute (tests fail-closed handling).")

    def build(self, behavior: Any, params: Any, seed: int) -> Any:
        return attack_library.get("direct_request").build(behavior, params, seed)

    async def execute(self, attempt: Attempt, target: Any, ctx: ExecContext) -> Execution:
        raise ValueError("attack bug")


def test_judge_and_attack_failures_are_errors(tmp_path: Path, store: Store, server: Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(judge_registry._items, "broken", lambda **_: _BrokenJudge())
    monkeypatch.setitem(attack_library.registry._items, "boom", _BoomAttack())
    suite = str(write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=0))
    run_id = _run(store, server.ref(), EvalConfig(suite=suite, attacks="direct_request", judges=("broken",)))
    judged = load_results(store, run_id)
    assert all(r.verdicts[0].error and outcome(r) == "error" for r in judged)
    run_id = _run(store, server.ref(), EvalConfig(suite=suite, attacks="boom", judges=("refusal",)))
    crashed = load_results(store, run_id)
    assert len(crashed) == 2
    assert all("attack boom failed: ValueError: attack bug" in (r.generation.error or "") for r in crashed)
    assert load_run(store, run_id).n_errors == 2


def test_resume_refuses_a_changed_suite(tmp_path: Path, any_store: Store, server: Server) -> None:
    path = write_suite(tmp_path / "s.jsonl", n_harmful=3)
    config = EvalConfig(suite=str(path), attacks="direct_request", judges=("refusal",))
    run_id = _run(any_store, server.ref(), config)
    # a complete run resumes to itself without calling the model
    assert _run(any_store, None, config, resume=run_id) == run_id  # type: ignore[arg-type]
    write_suite(path, n_harmful=4)  # the file changes: new version and content hash
    with pytest.raises(UserError, match="suite"):
        from tunesafe.engine.results import set_status

        set_status(any_store, run_id, "interrupted")
        _run(any_store, None, config, resume=run_id)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="evaluated"):
        _run(any_store, server.ref(model="other"), config, resume=run_id)


def test_cache_answers_a_repeated_greedy_run(tmp_path: Path, store: Store, server: Server) -> None:
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=3)), attacks="direct_request",
                        judges=("refusal",))
    first = asyncio.run(evaluate(store, server.ref(), config, progress=False))
    second = asyncio.run(evaluate(store, server.ref(), config, progress=False))
    assert first.stats["cache_hits"] == 0 and second.stats["cache_hits"] == second.stats["attempts"] > 0
    assert all(r.generation.cached for r in load_results(store, second.run_id))
    no_cache = asyncio.run(evaluate(store, server.ref(), replace(config, use_cache=False), progress=False))
    assert no_cache.stats["cache_hits"] == 0


def test_replay_sends_the_frozen_attacker_prompts_to_a_second_model(tmp_path: Path, store: Store,
                                                                    server: Server) -> None:
    suite = str(write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=0))
    searched = EvalConfig(suite=suite, attacks="crescendo_5", judges=("refusal",),
                          attacker_ref=server.ref("atk"), max_new_tokens=32)
    base = _run(store, server.ref("base"), searched)
    replayed = _run(store, server.ref("candidate"), EvalConfig(suite=suite, attacks="crescendo_5",
                                                              judges=("refusal",), replay_from=base,
                                                              max_new_tokens=32))
    before = {r.attempt.id: r for r in load_results(store, base)}
    after = {r.attempt.id: r for r in load_results(store, replayed)}
    assert before.keys() == after.keys()
    for attempt_id, result in before.items():
        assert result.frozen, "the attacker-driven run stores what to replay"
        sent = [m.content for m in result.conversation if m.role == "user"]
        assert [m.content for m in after[attempt_id].conversation if m.role == "user"] == sent


def test_llm_judge_over_http_that_cannot_be_parsed_is_an_error(tmp_path: Path, store: Store,
                                                               server: Server) -> None:
    suite = str(write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=0))
    with pytest.raises(UserError, match="needs a judge model"):
        _run(store, server.ref(), EvalConfig(suite=suite, attacks="direct_request", judges=("strongreject",)))
    # the echo server answers the rubric with an echo, not a rubric: undecided, so an error, never safe
    config = EvalConfig(suite=suite, attacks="direct_request", judges=("strongreject", "refusal"),
                        judge_model_ref=server.ref("judge"))
    results = load_results(store, _run(store, server.ref(), config))
    assert len(results) == 2
    assert all(outcome(r) == "error" and outcome(r, judge="refusal") != "error" for r in results)


def test_config_hash_ignores_runtime_knobs_and_options_left_at_none() -> None:
    base = {"eval": {"suite": "smoke", "seed": 0, "concurrency": 8, "use_cache": True}, "model_name": "a",
            "suite": {"name": "smoke", "version": "1"}}
    same = {**base, "model_name": "b", "eval": {**base["eval"], "concurrency": 64, "new_option": None,
                                                 "max_pause": 5.0}}
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash({**base, "eval": {**base["eval"], "seed": 1}})
    assert config_hash(base) != config_hash({**base, "suite": {"name": "smoke", "version": "2"}})


class _UnstorableJudge:
    """A plugin judge whose evidence cannot be stored: the run must fail loudly, not hang."""

    name = "unstorable"
    version = "1"

    async def judge(self, items: Sequence[Any]) -> list[Verdict]:
        return [Verdict(judge=self.name, judge_version=self.version, refused=False, harmful=True,
                        evidence={"blob": object()}) for _ in items]


def test_a_failing_store_write_fails_the_run_instead_of_hanging(tmp_path: Path, store: Store, server: Server,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(judge_registry._items, "unstorable", lambda **_: _UnstorableJudge())
    # long enough to fill the judge queue, so workers would block forever if the failure were not raised
    suite = str(write_suite(tmp_path / "s.jsonl", n_harmful=20, n_benign=0))
    config = EvalConfig(suite=suite, attacks="template", judges=("unstorable",), concurrency=8)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        asyncio.run(asyncio.wait_for(run_evaluation(store, server.ref(), config, progress=False), 120))
    [run] = list_runs(store)
    assert run.status == "failed"


def test_a_resumed_run_shows_running_until_it_completes(tmp_path: Path, store: Store, server: Server) -> None:
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=2)), attacks="direct_request",
                        judges=("refusal",))
    run_id = _run(store, server.ref(), config)
    from tunesafe.engine.results import set_status

    set_status(store, run_id, "interrupted")
    seen: list[str] = []
    report = asyncio.run(evaluate(store, None, config, resume=run_id, progress=False,  # type: ignore[arg-type]
                                  on_start=lambda *_: seen.append(load_run(store, run_id).status)))
    assert seen == ["running"] and report.status == "complete"
    assert load_run(store, run_id).status == "complete"


def test_an_unreachable_ray_address_is_one_error_not_a_hang(tmp_path: Path, server: Server) -> None:
    import socket
    import subprocess
    import sys

    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    cmd = [sys.executable, "-m", "tunesafe.cli.app", "--db", str(tmp_path / "store.db"), "eval", server.ref(),
           "--suite", str(suite), "--attacks", "direct_request", "--judge", "refusal", "--no-progress",
           "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"]
    # Ray itself retries an absent head for minutes on end
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Ray cluster" in done.stderr and "Traceback" not in done.stderr, done.stderr
    [run] = list_runs(Store.open(str(tmp_path / "store.db")))
    assert run.status != "complete" and run.n_done == 0  # resumable once the cluster is up


class _Died(BaseException):
    """The process dying at this point (kill -9 between two commits)."""


def test_a_run_killed_before_its_evidence_record_gets_it_on_resume(
        tmp_path: Path, store: Store, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    config = EvalConfig(suite=str(suite), attacks="direct_request", judges=("refusal",))
    real_append = Store.append

    def dying(self: Store, type: str, body: Any, *args: Any, **kw: Any) -> Any:
        if type == RecordType.RUN:
            raise _Died
        return real_append(self, type, body, *args, **kw)

    monkeypatch.setattr(Store, "append", dying)
    with pytest.raises(_Died):
        _run(store, server.ref(), config)
    monkeypatch.setattr(Store, "append", real_append)
    [run] = list_runs(store)
    # never "complete" without the evidence record that closes it, or a resume would have nothing to do
    assert run.status != "complete"
    assert _run(store, None, config, resume=run.id) == run.id  # type: ignore[arg-type]
    assert load_run(store, run.id).status == "complete"
    assert [r.body["run_id"] for r in store.records(type=RecordType.RUN)] == [run.id]
    _run(store, None, config, resume=run.id)  # type: ignore[arg-type]
    assert [r.body["run_id"] for r in store.records(type=RecordType.RUN)] == [run.id]
