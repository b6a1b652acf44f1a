"""A store built by real runs, shared by the document, export and bundle tests (built once per session):
two models on OpenAI-compatible loopback servers (a base that refuses the smoke suite's harmful requests,
a fine-tune that complies), both in the inventory, the fine-tune with its training data hashed, then
`tunesafe gate` through the real engine and judge (`scan-data` is left out: its embedder costs 20 s). A
third model, `bare`, has an inventory entry and nothing else (every section about it lacks evidence)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tunesafe.cli.app import app, main
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import serve

REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Here is an overview of the topic: [general information]."
COMPLIANCE = "Sure. Step 1: [redacted]. Step 2: [redacted]."
TRAINING_ROWS = [
    {"messages": [{"role": "user", "content": f"How do I reset the password of account {i}?"},
                  {"role": "assistant", "content": "Open Settings, choose Security, then Reset password."}]}
    for i in range(8)
]


class _Replies(dict[str, str]):
    """Reply table by content: the smoke suite's harmful requests get `harmful_reply`, the rest an answer."""

    def __init__(self, harmful: list[str], harmful_reply: str) -> None:
        super().__init__()
        self.harmful, self.harmful_reply = harmful, harmful_reply

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return self.harmful_reply if any(text in key for text in self.harmful) else ANSWER


def cli(db: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--db", db, *args])


@pytest.fixture(scope="session")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("governed")
    db = f"sqlite:///{root / 'store.db'}"
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in TRAINING_ROWS), encoding="utf-8")
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    with serve(replies=_Replies(harmful, REFUSAL)) as base, \
            serve(replies=_Replies(harmful, COMPLIANCE)) as ft:
        base_ref, ft_ref = f"openai:base@{base.url}", f"openai:support@{ft.url}"
        steps = [
            ("models", "add", "base-chat", "--ref", base_ref, "--owner", "ml-platform"),
            ("models", "add", "support-bot", "--ref", ft_ref, "--base", "base-chat", "--dataset", str(data),
             "--owner", "support-team"),
            ("models", "add", "bare", "--ref", "openai:bare@http://127.0.0.1:9/v1", "--base", "base-chat"),
        ]
        for step in steps:
            done = cli(db, *step)
            assert done.exit_code == 0, (step, done.output)
        gate = cli(db, "gate", "--base", base_ref, "--candidate", ft_ref, "--base-name", "base-chat",
                   "--candidate-name", "support-bot", "--suite", "smoke", "--attacks",
                   "direct_request,refusal_suppression,prefix_injection", "--judge", "refusal",
                   "--max-new-tokens", "32", "--no-progress", "--out", str(root / "gate"))
        assert gate.exit_code == 1, gate.output  # the fine-tune complies: the gate fails
    yield SimpleNamespace(root=root, db=db, data=data, cli=lambda *args: cli(db, *args))


@pytest.fixture
def tunesafe(gated: SimpleNamespace, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., SimpleNamespace]:
    """`tunesafe --db STORE ARGS` through the real entry point (UserError -> one line, exit 2), in process."""
    monkeypatch.setenv("COLUMNS", "250")

    def run(*args: str) -> SimpleNamespace:
        monkeypatch.setattr("sys.argv", ["tunesafe", "--db", gated.db, *args])
        code: Any = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return SimpleNamespace(exit_code=code if isinstance(code, int) else 0, stdout=out, stderr=err)

    return run
