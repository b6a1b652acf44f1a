"""`--judge-model REF` is the model behind LLM judges; given without any judge that uses it, it would be
ignored silently (the user believes strongreject-style judging happened). It is one error line instead,
before anything runs or is stored, naming the judges that take it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

JUDGE_MODEL = ("--judge-model", "openai:judge@http://127.0.0.1:9/v1")


Run = Callable[..., tuple[int, str]]


@pytest.fixture
def run(tunesafe_cli: Callable[..., tuple[int, str, str]]) -> Run:
    """`tunesafe ARGS`: (exit code, all it printed)."""
    def said(*args: str) -> tuple[int, str]:
        code, out, err = tunesafe_cli(*args)
        return code, out + err

    return said


def assert_refused(code: int, said: str) -> None:
    assert code == 2, said
    assert "--judge-model" in said and "strongreject" in said and "llama-guard" in said, said
    assert "ensemble" in said and len(said.strip().splitlines()) == 1, said


NO_LLM_JUDGE = [(), ("--judge", "default"), ("--judge", "refusal", "--judge", "classifier")]


@pytest.mark.parametrize("judges", NO_LLM_JUDGE)
def test_eval_without_an_llm_judge_refuses_a_judge_model(
        judges: tuple[str, ...], tmp_path: Path, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "store.db"
    for dry in ((), ("--dry-run",)):
        code, said = run("--db", str(db), "eval", "openai:m@http://127.0.0.1:9/v1",
                         "--suite", "smoke", "--attacks", "direct_request", *judges, *JUDGE_MODEL, *dry)
        assert_refused(code, said)
    assert not db.exists()


def test_judge_pairs_and_rejudge_without_an_llm_judge_refuse_it(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"request": "hello", "response": "Hi there!", "kind": "benign"}) + "\n")
    assert_refused(*run("judge", str(pairs), "--judge", "refusal", *JUDGE_MODEL))
    db = tmp_path / "store.db"
    assert_refused(*run("--db", str(db), "runs", "rejudge", "run-1", "--judge",
                        "default", *JUDGE_MODEL))
    assert not db.exists()


@pytest.mark.parametrize("judge", ["strongreject", "llama-guard", "ensemble"])
def test_a_judge_model_with_an_llm_judge_is_taken(
        judge: str, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, said = run("--db", str(tmp_path / "store.db"), "eval",
                     "openai:m@http://127.0.0.1:9/v1", "--suite", "smoke", "--attacks", "direct_request",
                     "--judge", "default", "--judge", judge, *JUDGE_MODEL, "--dry-run")
    assert code == 0, said
    assert "--judge-model" not in said
