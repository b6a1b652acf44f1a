"""Keys that expire (Azure Entra ID access tokens): `?key_cmd=COMMAND` and `token_provider=` in Python,
against the loopback server acting as its own token issuer (`ServerConfig(token_uses=N)`), with a real
command: a small Python script that fetches a token from it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import tunesafe
from tunesafe.engine.results import list_runs, load_results
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.models import load_model
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import ChatRequest, Generation, Message

# Fetches a token from the issuer, as `az account get-access-token` does; no proxy between it and loopback.
FETCH = ("import sys, urllib.request as u; "
         "print(u.build_opener(u.ProxyHandler({})).open(sys.argv[1]).read().decode())")


@pytest.fixture
def issuer() -> Iterator[RunningServer]:
    with serve(token_uses=3) as running:
        yield running


def key_cmd(server: RunningServer) -> str:
    token_url = server.url.removesuffix("/v1") + "/control/token"
    return f"{sys.executable} -c '{FETCH}' {token_url}"


def ref(server: RunningServer, command: str, options: str = "") -> str:
    return f"openai:tunesafe-test@{server.url}?key_cmd={quote(command)}{options}"


def generate(model: Any, n: int) -> list[Generation]:
    async def main() -> list[Generation]:
        try:
            return list(await model.generate([ChatRequest(messages=(Message("user", f"hi {i}"),))
                                              for i in range(n)]))
        finally:
            await model.aclose()

    return asyncio.run(main())


def test_a_run_outlives_its_tokens(issuer: RunningServer, tmp_path: Path, cli: Callable[..., Any]) -> None:
    db = tmp_path / "store.db"
    result = cli("--db", f"sqlite:///{db}", "eval", ref(issuer, key_cmd(issuer), "&concurrency=2"),
                 "--suite", "smoke", "--attacks", "direct_request", "--limit", "8", "--judge", "refusal",
                 "--max-new-tokens", "8")
    assert result.returncode in (0, 1), result.stderr
    assert len(issuer.app.tokens_issued) >= 3  # 8 requests on tokens good for 3 each: renewed on the way
    store = Store.open(str(db))
    [run] = list_runs(store)
    results = load_results(store, run.id)
    assert run.status == "complete" and run.n_errors == 0 and len(results) == 8
    assert all(r.generation.error is None for r in results)
    assert all("entra-token" not in r.generation.text for r in results)  # no token in what is stored


def test_a_burst_of_401s_renews_the_token_once(issuer: RunningServer) -> None:
    model = load_model(ref(issuer, key_cmd(issuer), "&concurrency=16"))
    model.content_hash()  # start-up: the first token
    issuer.app.config.token_uses = 100
    issuer.app.issue_token()  # the model's token is no longer the newest: every request gets 401
    issued = len(issuer.app.tokens_issued)
    generations = generate(model, 16)
    assert all(g.ok for g in generations), [g.error for g in generations if not g.ok]
    assert len(issuer.app.tokens_issued) == issued + 1  # one refresh for the whole burst


def test_a_token_provider_callable_is_renewed_the_same_way(issuer: RunningServer) -> None:
    calls: list[str] = []

    def provider() -> str:
        calls.append(issuer.app.issue_token())
        return calls[-1]

    model = load_model(f"openai:tunesafe-test@{issuer.url}?concurrency=2", token_provider=provider)
    generations = generate(model, 8)  # three per token: renewed on 401, first fetched at first use
    assert all(g.ok for g in generations), [g.error for g in generations if not g.ok]
    assert len(calls) >= 3 and issuer.app.auth_headers[-1] == f"Bearer {calls[-1]}"


def test_a_token_refused_after_renewal_is_an_error_not_a_refusal(issuer: RunningServer,
                                                                  tmp_path: Path) -> None:
    stale = f"{sys.executable} -c 'print(\"entra-token-0\")'"  # always the same token, never a valid one
    report = tunesafe.evaluate(ref(issuer, stale, "&max_retries=0"), suite="smoke", attacks="direct_request",
                               judges="refusal", limit=2, store=str(tmp_path / "s.db"))
    outcomes = report.summary.overall.outcomes
    assert outcomes["error"] == 2 and report.summary.overall.n == 2, outcomes
    assert sum(outcomes.values()) == outcomes["error"]  # none counted refused (or anything else)
    store = Store.open(str(tmp_path / "s.db"))
    [run] = list_runs(store)
    errors = [r.generation.error or "" for r in load_results(store, run.id)]
    assert all("HTTP 401" in e and "also with a renewed token" in e for e in errors), errors
    assert all("entra-token-0" not in e for e in errors)  # the token is scrubbed from the error


@pytest.mark.parametrize(("command", "fragments"), [
    (f"{sys.executable} -c 'import sys; sys.stderr.write(\"please run az login\"); sys.exit(3)'",
     ["key_cmd", "exit status 3", "please run az login"]),
    (f"{sys.executable} -c 'pass'", ["key_cmd", "printed no token"]),
    ("/no/such/token-command --flag", ["key_cmd", "could not be started"]),
])
def test_a_failing_key_command_is_exit_2(issuer: RunningServer, tmp_path: Path, command: str,
                                          fragments: list[str], cli: Callable[..., Any],
                                          user_error: Callable[..., None]) -> None:
    db = tmp_path / "store.db"
    result = cli("--db", f"sqlite:///{db}", "eval", ref(issuer, command), "--suite", "smoke",
                 "--attacks", "direct_request", "--limit", "2", "--judge", "refusal")
    user_error(result, *fragments)
    assert issuer.requests == []  # nothing was sent


def test_a_key_command_that_hangs_times_out(issuer: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tunesafe.models.credentials.KEY_CMD_TIMEOUT_S", 0.5)
    model = load_model(ref(issuer, f"{sys.executable} -c 'import time; time.sleep(30)'"))
    with pytest.raises(UserError, match="printed no token within 0.5 s"):
        model.content_hash()


@pytest.mark.parametrize(("options", "message"), [
    ("key_cmd=az%20x&key_env=MY_KEY", "key_env and key_cmd"),
    ("key_cmd=%27unclosed", "cannot be split"),
    ("key_cmd=", "key_cmd is empty"),
])
def test_bad_key_cmd_options_are_user_errors(options: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        load_model(f"openai:m@http://127.0.0.1:9/v1?{options}")
    assert info.value.fix
