"""Judges change, stored answers stay: a run judged by an older judge version is re-judged from its
stored generations (`tunesafe runs rejudge`, and inside `gate` / `compare`) without one model call,
proven with the loopback server's request log. Real engine, real SQLite file, the smoke suite.

The judge whose version changes is a registered test judge (the pattern judge under another name, its
version read when it is built), so "upgrading" it is one assignment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from tunesafe.cli.app import app
from tunesafe.engine import results as run_store
from tunesafe.engine.config import EvalConfig
from tunesafe.engine.runner import find_reusable_run
from tunesafe.evidence.schema import RunRow
from tunesafe.evidence.store import Store
from tunesafe.judges.base import JudgeInput, get_judge, registry
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import RecordType, Verdict

ATTACKS = "direct_request,refusal_suppression,prefix_injection"  # single-turn: one request per attempt
REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Here is an overview of the topic: [general information]."
JUDGE_VERSION = {"now": "1"}


class _VersionedJudge:
    """The pattern judge under the name `versioned`, at whatever version is installed when built."""

    name = "versioned"

    def __init__(self) -> None:
        self.inner = get_judge("refusal")
        self.version = JUDGE_VERSION["now"]

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        verdicts = await self.inner.judge(items)
        return [replace(v, judge=self.name, judge_version=self.version) for v in verdicts]


def _versioned_factory(**_opts: Any) -> _VersionedJudge:
    return _VersionedJudge()


class _Replies(dict[str, str]):
    def __init__(self, harmful: list[str]) -> None:
        super().__init__()
        self.harmful = harmful

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return REFUSAL if any(text in key for text in self.harmful) else ANSWER


@pytest.fixture
def server() -> Iterator[RunningServer]:
    registry.add("versioned", _versioned_factory)
    JUDGE_VERSION["now"] = "1"
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    with serve(replies=_Replies(harmful)) as running:
        yield running


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _options(*extra: str) -> list[str]:
    # --no-cache: a regenerated base could otherwise be served from the response cache, unseen by the log
    return ["--suite", "smoke", "--attacks", ATTACKS, "--judge", "versioned", "--max-new-tokens", "32",
            "--no-progress", "--no-cache", *extra]


def _eval(db: str, ref: str) -> str:
    done = _cli("--db", db, "eval", ref, *_options("--json"))
    assert done.exit_code == 0, done.output
    with Store.open(db) as store:
        return run_store.list_runs(store)[-1].id


def _exit_2(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, where a UserError becomes one line and exit code 2."""
    done = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "--db", db, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    return done


def _models(requests: Sequence[dict[str, Any]]) -> set[str]:
    return {r["model"] for r in requests}


def test_gate_rejudges_an_old_baseline_without_calling_the_base_model(server: RunningServer,
                                                                      tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    base, candidate = f"openai:base-model@{server.url}", f"openai:cand-model@{server.url}"
    server.inject("500", times=2)  # two base attempts fail for good (max_retries=0): errors must stay errors
    base = f"{base}?max_retries=0"
    old_run = _eval(db, base)
    n_base_requests = len(server.requests)
    assert _models(server.requests) == {"base-model"}

    JUDGE_VERSION["now"] = "2"  # the judge changed since the baseline was stored
    gated = _cli("--db", db, "gate", "--base", base, "--candidate", candidate, "--out", str(tmp_path / "r"),
                 *_options("--json"))
    assert gated.exit_code == 0, gated.output
    decision = json.loads(gated.stdout)
    assert f"run {old_run} holds these answers judged by versioned@1; re-judged them" in gated.stderr

    new_requests = server.requests[n_base_requests:]
    assert _models(new_requests) == {"cand-model"}  # not one request for the base
    assert len(new_requests) == decision["candidate"]["n_attempts"]
    rejudged = decision["base"]["run_id"]
    assert rejudged != old_run and decision["base"]["rejudged_from"] == old_run
    assert decision["judge"] == "versioned"

    with Store.open(db) as store:
        before, after = run_store.load_results(store, old_run), run_store.load_results(store, rejudged)
        info = run_store.load_run(store, rejudged)
        assert info.status == "complete" and info.config["generated_in"] == old_run
        assert [(r.attempt, r.generation, r.response) for r in before] == \
            [(r.attempt, r.generation, r.response) for r in after]
        errored = [r for r in after if r.generation.error]
        assert len(errored) == 2 and all(not r.verdicts for r in errored)
        assert info.n_errors == run_store.load_run(store, old_run).n_errors == 2
        assert {v.judge_version for r in after for v in r.verdicts} == {"2"}
        # its config hashes like a fresh run with the new judge: the gate reuses it as is
        config = EvalConfig(suite="smoke", attacks=ATTACKS, judges=("versioned",), max_new_tokens=32,
                            use_cache=False)
        assert find_reusable_run(store, base, config) == rejudged
        records = [r for r in store.records(type=RecordType.RUN) if r.body["run_id"] == rejudged]
        assert records[0].body["config"]["rejudged_from"] == old_run
        assert records[0].body["session"]["model_calls"] == 0

    again = _cli("--db", db, "gate", "--base", base, "--candidate", candidate, "--out", str(tmp_path / "r2"),
                 *_options("--json"))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["base"]["run_id"] == rejudged and "re-judged" not in again.stderr
    assert len(server.requests) == n_base_requests + len(new_requests)  # both sides reused: no call at all


def test_compare_rejudges_the_base_once_and_reuses_it(server: RunningServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    old_run = _eval(db, f"openai:base-model@{server.url}")
    JUDGE_VERSION["now"] = "2"
    candidate_run = _eval(db, f"openai:cand-model@{server.url}")
    n_requests = len(server.requests)

    first = _cli("--db", db, "compare", old_run, candidate_run, "--json")
    assert first.exit_code == 0, first.output
    rejudged = json.loads(first.stdout)["base"]["run_id"]
    assert f"base: run {old_run} was judged by versioned@1; re-judged its stored answers by versioned@2 " \
           f"as run {rejudged}" in first.stderr
    second = _cli("--db", db, "compare", old_run, candidate_run, "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["base"]["run_id"] == rejudged
    assert f"base: using run {rejudged}" in second.stderr
    assert len(server.requests) == n_requests


def test_runs_rejudge_cli(server: RunningServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    old_run = _eval(db, f"openai:base-model@{server.url}")
    n_requests = len(server.requests)
    done = _cli("--db", db, "runs", "rejudge", old_run, "--judge", "versioned", "-j", "refusal", "--json")
    assert done.exit_code == 0, done.output
    info = json.loads(done.stdout)
    assert info["status"] == "complete" and info["config"]["rejudged_from"] == old_run
    assert [j["name"] for j in info["config"]["judges"]] == ["versioned", "refusal"]
    assert len(server.requests) == n_requests
    shown = _cli("--db", db, "runs", "show", info["id"])
    assert f"re-judged from: run {old_run}" in shown.stdout


def test_rejudge_refuses_an_unfinished_run_or_a_changed_suite(server: RunningServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    old_run = _eval(db, f"openai:base-model@{server.url}")
    with Store.open(db) as store, store.engine.begin() as conn:
        info = run_store.load_run(store, old_run)
        conn.execute(update(RunRow).where(RunRow.id == old_run).values(
            config={**info.config, "suite": {**info.config["suite"], "content_hash": "0" * 64}}))
    changed = _exit_2(db, "runs", "rejudge", old_run)
    assert f"run {old_run} cannot be re-judged: suite 'smoke' changed since the run" in changed.stderr
    with Store.open(db) as store:
        run_store.set_status(store, old_run, "interrupted")
        n_runs = len(run_store.list_runs(store))
    assert "is interrupted, not complete" in _exit_2(db, "runs", "rejudge", old_run).stderr
    with Store.open(db) as store:
        assert len(run_store.list_runs(store)) == n_runs  # nothing stored by a refused re-judge


def test_a_replica_baseline_stored_with_the_order_sensitive_hash_is_reused(server: RunningServer,
                                                                           tmp_path: Path) -> None:
    # Before the replica order stopped counting, a run over B,A was hashed with its URLs as listed: that
    # stored baseline must still be reused (and re-judged) by a gate, not evaluated again.
    from tunesafe.models import load_model
    from tunesafe.types import canonical_json, sha256_hex

    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    with serve(replies=_Replies(harmful)) as other:
        first, second = sorted([server, other], key=lambda s: s.url)
        base = f"openai:base-model@{second.url},{first.url}"  # not sorted: the old hash differs
        candidate = f"openai:cand-model@{server.url}"
        db = f"sqlite:///{tmp_path / 'store.db'}"
        old_run = _eval(db, base)
        info = load_model(f"openai:base-model@{first.url}").model_info()
        legacy = sha256_hex(canonical_json({"ref": base, "model_info": info}))
        with Store.open(db) as store:
            assert run_store.load_run(store, old_run).model_hash != legacy
            with store.engine.begin() as conn:
                conn.execute(update(RunRow).where(RunRow.id == old_run).values(model_hash=legacy))
            config = EvalConfig(suite="smoke", attacks=ATTACKS, judges=("versioned",), max_new_tokens=32,
                                use_cache=False)
            assert find_reusable_run(store, base, config) == old_run
            assert find_reusable_run(store, f"openai:base-model@{first.url},{second.url}", config) == old_run
            # the same URLs only: a run over other replicas is not this baseline
            assert find_reusable_run(store, f"openai:base-model@{first.url}", config) is None
        n_base_requests = len(server.requests) + len(other.requests)

        gated = _cli("--db", db, "gate", "--base", base, "--candidate", candidate, "--out",
                     str(tmp_path / "r"), *_options("--json"))
        assert gated.exit_code == 0, gated.output
        assert json.loads(gated.stdout)["base"]["run_id"] == old_run
        assert _models(server.requests + other.requests) == {"base-model", "cand-model"}
        assert len([r for r in server.requests + other.requests if r["model"] == "base-model"]) == \
            n_base_requests  # not one more request for the base

        JUDGE_VERSION["now"] = "2"  # the gate's re-judge lookup matches the stored hash too
        again = _cli("--db", db, "gate", "--base", base, "--candidate", candidate, "--out",
                     str(tmp_path / "r2"), *_options("--json"))
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["base"]["rejudged_from"] == old_run
        assert len([r for r in server.requests + other.requests if r["model"] == "base-model"]) == \
            n_base_requests
