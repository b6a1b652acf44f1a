"""`guarded:MODEL|GUARD`: the guarded system (guard + model) evaluated and gated as one model, on the
loopback server with a team's Python filter in front."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.models import load_model, parse_ref
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import ChatRequest, Generation, Message

from .conftest import RunCli


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve() as running:
        yield running


@pytest.fixture
def answer_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Module `answer_filter`: `echoes` blocks every answer (output side) and passes every prompt."""
    (tmp_path / "answer_filter.py").write_text(textwrap.dedent("""
        def echoes(text, side):
            return side == "output" and text.startswith("ECHO:")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "answer_filter"


def ask(ref: str, *texts: str) -> list[Generation]:
    model = load_model(ref)

    async def main() -> list[Generation]:
        try:
            return await model.generate([ChatRequest(messages=(Message("user", t),)) for t in texts])
        finally:
            await model.aclose()

    return asyncio.run(main())


def test_ref_round_trips_and_a_bad_one_is_one_error() -> None:
    ref = "guarded:openai:ft@http://h:1/v1?concurrency=4|python:m:f?on_error=open"
    parsed = parse_ref(ref)
    assert (parsed.target, parsed.guard, str(parsed)) == ("openai:ft@http://h:1/v1?concurrency=4",
                                                          "python:m:f?on_error=open", ref)
    for bad in ("guarded:openai:ft@http://h/v1", "guarded:nope:x|python:m:f"):
        with pytest.raises(UserError):
            parse_ref(bad)


def test_input_blocks_skip_the_model_and_output_blocks_withhold_the_answer(
        server: RunningServer, team_filter: str, answer_filter: str) -> None:
    import importlib

    blocked_prompt = sorted(importlib.import_module(team_filter).BLOCKED)[0]
    url = f"openai:tunesafe-test@{server.url}"
    first, second = ask(f"guarded:{url}|python:{team_filter}:check", blocked_prompt, "hello")
    assert first.blocked == "guardrail: input" and first.text == "" and second.text == "ECHO: hello"
    assert [r["messages"][-1]["content"] for r in server.requests] == ["hello"]  # the model never saw it
    (withheld,) = ask(f"guarded:{url}|python:{answer_filter}:echoes", "hello")
    assert withheld.blocked == "guardrail: output" and withheld.text == "" and withheld.completion_tokens > 0


def test_a_failing_guard_is_an_error_when_closed_and_passes_when_open(server: RunningServer,
                                                                      team_filter: str) -> None:
    url = f"openai:tunesafe-test@{server.url}"
    (closed,) = ask(f"guarded:{url}|python:{team_filter}:broken", "hello")
    assert closed.error is not None and "on_error=closed" in closed.error and closed.blocked is None
    (opened,) = ask(f"guarded:{url}|python:{team_filter}:broken?on_error=open", "hello")
    assert opened.error is None and opened.text == "ECHO: hello"


def test_the_guarded_system_is_the_candidate_of_a_gate(run_cli: RunCli, server: RunningServer,
                                                       team_filter: str, tmp_path: Path) -> None:
    base = f"openai:tunesafe-test@{server.url}"
    guarded = f"guarded:{base}|python:{team_filter}:check"
    code, out, err = run_cli("gate", "--base", base, "--candidate", guarded,
                             "--suite", "smoke", "--attacks", "direct_request", "--judge", "refusal",
                             "--out", str(tmp_path / "report"), "--json")
    decision = json.loads(out)
    assert code in (0, 3), err  # the guard only removes harm: never a fail
    overall = next(d for d in decision["comparison"]["deltas"]
                   if d["metric"] == "asr" and d["group"] == "overall")
    assert overall["before"] == 1.0 and overall["after"] == 0.0  # the echo complies; the filter blocks it all
    assert decision["comparison"]["info"]["n_only_base"] == 0
    code, out, _ = run_cli("runs", "list", "--json")
    refs = {r["model_ref"] for r in json.loads(out)}
    assert guarded in refs


def test_an_undecided_guard_never_lets_a_request_through_when_closed(server: RunningServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unsure_filter.py").write_text(textwrap.dedent("""
        from tunesafe.guardrails import GuardDecision

        def unsure(text, side):
            return GuardDecision(blocked=None)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    (closed,) = ask(f"guarded:openai:ft@{server.url}|python:unsure_filter:unsure", "hello")
    assert closed.error is not None and closed.blocked is None and not closed.text
