"""A gate of two local llama.cpp refs evaluates base and candidate at once, on half the cores each, with
the same pairing as the sequential gate; a failure on one side stops the other, resumably."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesafe.cli.app import app
from tunesafe.engine import results as run_store
from tunesafe.engine.config import EvalConfig
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.gating import side_by_side_threads

MODEL = "embedded:smollm2-135m?backend=llamacpp"


@pytest.mark.parametrize(("base", "candidate", "config", "wanted"), [
    (MODEL, MODEL, EvalConfig(), 4),
    (MODEL, "embedded:smollm2-135m+aoa-demo?backend=llamacpp", EvalConfig(), 4),
    (MODEL, MODEL, EvalConfig(attacker_ref="openai:a@http://127.0.0.1:9/v1"), None),  # replays the base's
    (MODEL, MODEL, EvalConfig(replay_from="abc"), None),
    (MODEL, MODEL, EvalConfig(executor="ray"), None),
    (MODEL, MODEL, EvalConfig(threads=2), None),
    (MODEL, f"{MODEL}&threads=8", EvalConfig(), None),  # the ref chose its threads
    ("embedded:smollm2-135m", "embedded:smollm2-135m", EvalConfig(), None),  # transformers, in-process
    ("openai:m@http://127.0.0.1:9/v1", "openai:n@http://127.0.0.1:9/v1", EvalConfig(), None),
])
def test_which_gates_run_side_by_side(monkeypatch: pytest.MonkeyPatch, base: str, candidate: str,
                                      config: EvalConfig, wanted: int | None) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert side_by_side_threads(base, candidate, config) == wanted


def test_one_core_runs_the_sides_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert side_by_side_threads(MODEL, MODEL, EvalConfig()) is None


def _args(tmp_path: Path, candidate: str) -> list[str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_items_per_family: 1\nmin_items_per_category: 1\n")
    return ["--db", f"sqlite:///{tmp_path / 'store.db'}", "gate", "--base", MODEL, "--candidate", candidate,
            "--suite", "smoke", "--attacks", "direct_request,refusal_suppression", "--limit", "4",
            "--max-new-tokens", "8", "--judge", "refusal", "--policy", str(policy), "--no-progress",
            "--concurrency", "4", "--out", str(tmp_path / "report"), "--json"]


@pytest.mark.slow
def test_both_sides_are_evaluated_at_once_and_pair_up(tmp_path: Path, llama_server: list[str]) -> None:
    done = CliRunner().invoke(app, _args(tmp_path, MODEL))
    assert done.exit_code in (0, 3), done.output
    decision = json.loads(done.stdout)
    info = decision["comparison"]["info"]
    assert info["n_paired"] > 0 and info["n_only_base"] == info["n_only_candidate"] == 0
    store = Store.open(str(tmp_path / "store.db"))
    base = run_store.load_run(store, decision["base"]["run_id"])
    candidate = run_store.load_run(store, decision["candidate"]["run_id"])
    assert base.status == candidate.status == "complete"
    assert base.finished_at is not None and candidate.created_at < base.finished_at  # overlapped
    assert candidate.config["eval"]["replay_from"] == base.id  # the sequential gate's pairing
    # half the cores each; a runtime knob, so the runs hash as a sequential gate's would
    assert base.config["eval"]["threads"] == candidate.config["eval"]["threads"] == (os.cpu_count() or 2) // 2


@pytest.mark.slow
def test_a_failing_side_stops_the_other_resumably(tmp_path: Path, llama_server: list[str]) -> None:
    missing = tmp_path / "no-such-adapter"
    done = CliRunner().invoke(app, _args(tmp_path, f"embedded:smollm2-135m+{missing}?backend=llamacpp"))
    assert isinstance(done.exception, UserError), done.output  # one error, not an exception group
    assert "no-such-adapter" in str(done.exception)
    runs = run_store.list_runs(Store.open(str(tmp_path / "store.db")))
    assert [r.status for r in runs] == ["interrupted"]  # the base, stopped: `eval --resume` finishes it
