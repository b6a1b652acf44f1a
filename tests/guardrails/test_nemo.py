"""A real NeMo Guardrails server (`nemoguardrails server`, 0.24.1, from `make nemo`'s venv) on loopback
with the config the project ships, its self-check rails answered by the loopback test server: the
adapter's blocks and passes on both sides, verify end to end, and a fault injected behind the rails
reported as errors (NeMo answers HTTP 500), never as blocks.

Skips when the binary is absent; TUNESAFE_REQUIRE_NEMO=1 (CI) turns the skip into a failure."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
import yaml

from tunesafe.guardrails import load_guard
from tunesafe.guardrails.base import last_user
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import Attempt, Message

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path(str(files("tunesafe.guardrails").joinpath("nemo_config")))
RunCli = Callable[..., tuple[int, str, str]]


def nemo_binary() -> str:
    found = (os.environ.get("TUNESAFE_NEMO_BIN")
             or shutil.which("nemoguardrails", path=str(REPO / ".venv-nemo/bin")))
    if found:
        return found
    reason = "nemoguardrails is not installed: run `make nemo` (a separate venv, .venv-nemo)"
    if os.environ.get("TUNESAFE_REQUIRE_NEMO"):
        pytest.fail(reason + " (TUNESAFE_REQUIRE_NEMO is set)")
    pytest.skip(reason)


def rail_prompt(task: str, text: str) -> str:
    """The self-check prompt NeMo sends for `text`, from the shipped prompts.yml."""
    prompts = yaml.safe_load((CONFIG / "tunesafe" / "prompts.yml").read_text())["prompts"]
    content = next(p["content"] for p in prompts if p["task"] == task)
    field = "{{ user_input }}" if task == "self_check_input" else "{{ bot_response }}"
    return str(content.replace(field, text).strip())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def attempts_module() -> list[Attempt]:
    from tunesafe.engine.config import EvalConfig
    from tunesafe.engine.targets import plan_evaluation

    return list(plan_evaluation(EvalConfig(suite="smoke", attacks="direct_request")).plan.attempts)


@pytest.fixture(scope="module")
def nemo(attempts_module: list[Attempt], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[str, RunningServer]]:
    """(NeMo base URL, the loopback server behind its rails): harmful prompts and the echoed answers to
    them get "Yes" (block), everything else "No"."""
    binary = nemo_binary()
    replies = {}
    for attempt in attempts_module:
        text = last_user(attempt.messages)
        verdict = "Yes" if attempt.kind == "harmful" else "No"
        replies[rail_prompt("self_check_input", text)] = verdict
        replies[rail_prompt("self_check_output", f"ECHO: {text}")] = verdict
    with serve(replies=replies) as backend:
        port = free_port()
        env = {**os.environ, "MAIN_MODEL_BASE_URL": backend.url, "OPENAI_API_KEY": "unused",
               "NEMO_GUARDRAILS_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
        # Its log goes to a file: NeMo logs every rail call, and an unread pipe would fill and stall it.
        log = tmp_path_factory.mktemp("nemo") / "server.log"
        proc = subprocess.Popen([binary, "server", "--config", str(CONFIG), "--port", str(port),
                                 "--disable-chat-ui"], env=env, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/rails/configs", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"nemoguardrails server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url, backend
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_nemo_checks_both_sides_offline(nemo: tuple[str, RunningServer],
                                       attempts_module: list[Attempt]) -> None:
    url, _ = nemo
    harmful = next(last_user(a.messages) for a in attempts_module if a.kind == "harmful")
    benign = next(last_user(a.messages) for a in attempts_module if a.kind == "benign")
    guard = load_guard(f"nemo:{url}?config_id=tunesafe")

    async def checks() -> list:  # type: ignore[type-arg]
        try:
            return [await guard.check_input((Message("user", harmful),)),
                    await guard.check_input((Message("user", benign),)),
                    await guard.check_output((Message("user", harmful),), f"ECHO: {harmful}"),
                    await guard.check_output((Message("user", benign),), f"ECHO: {benign}")]
        finally:
            await guard.aclose()

    blocked_in, passed_in, blocked_out, passed_out = asyncio.run(checks())
    assert (blocked_in.blocked, blocked_in.categories) == (True, ("self check input",))
    assert (blocked_out.blocked, blocked_out.categories) == (True, ("self check output",))
    assert passed_in.blocked is False and passed_out.blocked is False


def test_nemo_verify_end_to_end_and_a_fault_behind_the_rails_is_an_error(
        nemo: tuple[str, RunningServer], run_cli: RunCli) -> None:
    url, backend = nemo
    args = ("guardrails", "verify", "--guard", f"nemo:{url}?config_id=tunesafe", "--suite", "smoke",
            "--attacks", "direct_request", "--json")
    code, out, err = run_cli(*args, "--model", f"openai:tunesafe-test@{backend.url}")
    assert code == 0, err
    overall = json.loads(out)["figures"]["block_rate"]["overall"]
    assert (overall["input"]["k"], overall["output"]["k"], overall["input"]["n"]) == (28, 28, 28)

    backend.app.go_down()  # the rails' LLM fails: NeMo answers 500 and every check is an error
    try:
        code, out, err = run_cli(*args, "--limit", "5")
    finally:
        backend.app.come_back()
    figs = json.loads(out)["figures"]
    assert code == 3, err
    assert figs["errors"]["input"] == figs["attempts"] and figs["block_rate"]["overall"]["input"]["k"] == 0
    assert any("HTTP 500" in e for e in figs["errors"]["examples"])
