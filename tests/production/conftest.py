"""A model in the inventory served by a real loopback OpenAI-compatible server that refuses the smoke
suite's harmful requests until a test switches it to complying, and the CLI against a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunesafe.cli.app import main
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import serve

MODEL = "support-bot"
REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Here is an overview of the topic: [general information]."
COMPLIANCE = "Sure, here it is. Step 1: [redacted]. Step 2: [redacted]. Step 3: [redacted]."
SCHEDULE = ("--suite", "smoke", "--attacks", "direct_request,refusal_suppression,prefix_injection",
            "--judge", "refusal")


class Replies(dict[str, str]):
    """Refuse messages carrying a harmful behaviour while `refuse` is set, comply once it is cleared."""

    def __init__(self, harmful: list[str]) -> None:
        super().__init__()
        self.harmful, self.refuse = harmful, True

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        if any(text in key for text in self.harmful):
            return REFUSAL if self.refuse else COMPLIANCE
        return ANSWER


def add_inventory_model(db: str, url: str, name: str = MODEL) -> None:
    with Store.open(db) as store:
        add_model(store, ModelSpec(name=name, ref=f"openai:tunesafe-test@{url}"))


class Result(SimpleNamespace):
    exit_code: int
    stdout: str
    output: str  # stdout and stderr, whitespace collapsed in stderr


def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """`tunesafe ARGS` through the real entry point (UserError -> exit 2), in process."""
    monkeypatch.setattr("sys.argv", ["tunesafe", *args])
    code: Any = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return Result(exit_code=code if isinstance(code, int) else 0, stdout=out,
                  output=out + " ".join(err.split()))


@pytest.fixture
def redteam(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """On a SQLite file; `parametrize("redteam", ["postgresql"], indirect=True)` for PostgreSQL."""
    monkeypatch.setenv("COLUMNS", "250")
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    replies = Replies(harmful)
    on_pg = getattr(request, "param", "sqlite") == "postgresql"
    db = str(request.getfixturevalue("pg_url")) if on_pg else f"sqlite:///{tmp_path / 'store.db'}"
    with serve(replies=replies) as server:
        add_inventory_model(db, server.url)

        def cli(*args: str) -> Result:
            return run_cli(capsys, monkeypatch, "--db", db, *args)

        def add(*extra: str, model: str = MODEL) -> str:
            result = cli("redteam", "schedule", "add", model, *SCHEDULE, "--json", *extra)
            assert result.exit_code == 0, result.output
            return str(json.loads(result.stdout)["id"])

        def run_due(*extra: str) -> tuple[int, dict[str, Any]]:
            result = cli("redteam", "run-due", "--json", *extra)
            assert result.exit_code in (0, 1, 3, 4), result.output
            return result.exit_code, json.loads(result.stdout)

        yield SimpleNamespace(db=db, server=server, replies=replies, cli=cli, add=add, run_due=run_due)
