"""A real NeMo Guardrails server (`nemoguardrails server`, 0.24.1, from `make nemo`'s venv) on loopback
with the config the project ships, its self-check rails answered by the loopback test server: the
adapter's blocks and passes on both sides, verify end to end, and a fault injected behind the rails
reported as errors (NeMo answers HTTP 500), never as blocks.

Skips when the binary is absent; TUNESAFE_REQUIRE_NEMO=1 (CI) turns the skip into a failure."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tunesafe.guardrails import load_guard
from tunesafe.guardrails.base import last_user
from tunesafe.guardrails.nemo_server import nemo_binary, rail_prompt, serve_nemo
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import Attempt, Message

RunCli = Callable[..., tuple[int, str, str]]


def require_nemo() -> str:
    found = nemo_binary()
    if found:
        return found
    reason = "nemoguardrails is not installed: run `make nemo` (a separate venv, .venv-nemo)"
    if os.environ.get("TUNESAFE_REQUIRE_NEMO"):
        pytest.fail(reason + " (TUNESAFE_REQUIRE_NEMO is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def attempts_module() -> list[Attempt]:
    from tunesafe.engine.config import EvalConfig
    from tunesafe.engine.targets import plan_evaluation

    return list(plan_evaluation(EvalConfig(suite="smoke", attacks="direct_request")).plan.attempts)


@pytest.fixture(scope="module")
def nemo(attempts_module: list[Attempt]) -> Iterator[tuple[str, RunningServer]]:
    """(NeMo base URL, the loopback server behind its rails): harmful prompts and the echoed answers to
    them get "Yes" (block), everything else "No"."""
    binary = require_nemo()
    replies = {}
    for attempt in attempts_module:
        text = last_user(attempt.messages)
        verdict = "Yes" if attempt.kind == "harmful" else "No"
        replies[rail_prompt("self_check_input", text)] = verdict
        replies[rail_prompt("self_check_output", f"ECHO: {text}")] = verdict
    with serve(replies=replies) as backend, serve_nemo(backend.url, binary) as url:
        yield url, backend


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


def test_nemo_chat_completions_as_a_guarded_chat_endpoint(nemo: tuple[str, RunningServer],
                                                          attempts_module: list[Attempt]) -> None:
    """The whole guarded system through its OpenAI-compatible chat API (what a gate's --candidate
    would call): NeMo's block message reads as a refusal, the model's answer passes both rails."""
    url, _ = nemo
    harmful = next(last_user(a.messages) for a in attempts_module if a.kind == "harmful")
    benign = next(last_user(a.messages) for a in attempts_module if a.kind == "benign")
    guard = load_guard(f"guarded-chat:openai:tunesafe-test@{url}")

    async def checks() -> list:  # type: ignore[type-arg]
        try:
            return [await guard.check_input((Message("user", harmful),)),
                    await guard.check_input((Message("user", benign),))]
        finally:
            await guard.aclose()

    blocked, answered = asyncio.run(checks())
    assert blocked.blocked is True and "can't respond" in blocked.detail["answer"]
    assert answered.blocked is False and answered.detail["answer"] == f"ECHO: {benign}"


def test_missing_binary_skips_or_fails_when_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tunesafe.guardrails.nemo_server as nemo_server

    monkeypatch.delenv("TUNESAFE_NEMO_BIN", raising=False)
    monkeypatch.setattr(nemo_server, "VENV_BIN", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TUNESAFE_REQUIRE_NEMO", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make nemo"):
        require_nemo()
    monkeypatch.setenv("TUNESAFE_REQUIRE_NEMO", "1")
    with pytest.raises(pytest.fail.Exception, match="TUNESAFE_REQUIRE_NEMO"):
        require_nemo()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_nemo_listens_on_loopback_only(nemo: tuple[str, RunningServer]) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the listening sockets from /proc/net/tcp (Linux)")
    url, _ = nemo
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and not 0.0.0.0 (00000000)
