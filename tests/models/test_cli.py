"""`tunesafe chat` and `tunesafe models probe` through the real entry point, against the loopback server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tunesafe.testing.openai_server import RunningServer, serve

SECRET = "sk-tunesafe-test-" + "7" * 20


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(replies={"knock knock": "who is there"}) as running:
        yield running


def test_chat_prints_the_answer(server: RunningServer, cli: Callable[..., Any]) -> None:
    result = cli("chat", f"openai:tunesafe-test@{server.url}", "knock knock")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "who is there"
    data = json.loads(cli("chat", f"openai:tunesafe-test@{server.url}", "hi", "--json").stdout)
    assert data["text"] == "ECHO: hi" and data["error"] is None and data["finish_reason"] == "stop"


def test_probe_reports_backend_hash_and_generation(server: RunningServer, cli: Callable[..., Any]) -> None:
    result = cli("models", "probe", f"openai:tunesafe-test@{server.url}", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == "openai" and len(data["content_hash"]) == 64
    assert data["generation"]["text"].startswith("ECHO: ") and data["capabilities"]["white_box"] is False


@pytest.mark.parametrize(("args", "fragments"), [
    (["chat", "ollama:llama3", "hi"], ["unknown model ref 'ollama:llama3'", "openai:MODEL@"]),
    (["chat", "gguf:/no/such/model.gguf", "hi"], ["/no/such/model.gguf", "does not exist"]),
    (["models", "probe", "openai:m@http://127.0.0.1:9/v1"], ["cannot reach http://127.0.0.1:9/v1"]),
    (["chat", "embedded:llama-70b", "hi"], ["unknown embedded model 'llama-70b'"]),
    (["chat", "openai:m@http://127.0.0.1:1/v1?concurrency=many", "hi"], ["bad option value"]),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragments: list[str], cli: Callable[..., Any],
                                          user_error: Callable[..., None]) -> None:
    user_error(cli(*args), *fragments)


def test_a_server_returning_garbage_is_exit_2(server: RunningServer, cli: Callable[..., Any],
                                              user_error: Callable[..., None]) -> None:
    ref = f"openai:tunesafe-test@{server.url}?max_retries=1"
    user_error(cli("chat", ref, "x [[fault:garbage]]"), "malformed response", "after 2 attempts")


def test_api_key_never_reaches_output_or_store(tmp_path: Path, cli: Callable[..., Any],
                                               user_error: Callable[..., None]) -> None:
    with serve(api_key=SECRET) as server:
        ref = f"openai:tunesafe-test@{server.url}?key_env=TS_TEST_KEY"
        bad = cli("chat", ref, "hi", env={"TS_TEST_KEY": SECRET + "x"})
        user_error(bad, "credentials refused", "TS_TEST_KEY")
        assert SECRET not in bad.stderr + bad.stdout
        db = tmp_path / "store.db"
        run = cli("--db", f"sqlite:///{db}", "eval", ref, "--suite", "smoke", "--attacks", "direct_request",
                  "--limit", "2", "--max-new-tokens", "8", env={"TS_TEST_KEY": SECRET})
        assert run.returncode in (0, 1), run.stderr
        sent = server.app.auth_headers[1:]  # after the refused one
        assert sent and all(h == f"Bearer {SECRET}" for h in sent)
    assert SECRET not in run.stdout + run.stderr
    with sqlite3.connect(db) as conn:
        dumped = "\n".join(conn.iterdump())
    assert "tunesafe-test" in dumped  # the run was stored...
    assert SECRET not in dumped  # ...without the key
