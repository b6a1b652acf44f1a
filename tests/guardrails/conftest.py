"""Fixtures for the guardrail tests: the smoke suite's direct attempts, a workspace, the CLI in-process,
and a team filter module (a plain Python callable) on sys.path."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.targets import plan_evaluation
from tunesafe.guardrails.base import last_user
from tunesafe.types import Attempt

RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="session")
def attempts() -> list[Attempt]:
    return list(plan_evaluation(EvalConfig(suite="smoke", attacks="direct_request")).plan.attempts)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunCli:
    """`tunesafe ARGS` through the real entry point in a fresh workspace: (exit code, stdout, stderr)."""
    from tunesafe.cli.app import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("TUNESAFE_DB", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["tunesafe", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        out, err = capsys.readouterr()
        return code, out, " ".join(err.split())

    assert run("init")[0] == 0
    return run


@pytest.fixture
def team_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attempts: list[Attempt]) -> str:
    """Module `team_filter`: `check` blocks the listed texts (every harmful prompt and one borderline
    one), `broken` raises, `swallow` hides its failures by returning False (a silent fail-open)."""
    blocked = [last_user(a.messages) for a in attempts if a.kind == "harmful"]
    blocked.append(next(last_user(a.messages) for a in attempts if a.kind == "borderline"))
    folder = tmp_path / "filters"
    folder.mkdir()
    (folder / "blocked.json").write_text(json.dumps(blocked))
    (folder / "team_filter.py").write_text(textwrap.dedent(f"""
        import json
        BLOCKED = set(json.load(open({str(folder / "blocked.json")!r})))

        def check(text, side):
            return text in BLOCKED

        def broken(text, side):
            raise RuntimeError("filter backend unreachable")
    """))
    monkeypatch.syspath_prepend(str(folder))
    return "team_filter"
