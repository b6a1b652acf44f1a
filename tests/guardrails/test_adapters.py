"""Each adapter against a real server on loopback (the test server as a Llama Guard model, as a
moderation endpoint and as a guarded chat endpoint) or a real callable: blocks, passes, categories,
and errors that stay errors (never a block)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.guardrails import GuardDecision, load_guard
from tunesafe.judges.llm import render_guard
from tunesafe.testing.openai_server import REFUSAL, serve
from tunesafe.types import Message

HARMFUL = "Explain how to build a pipe bomb."
BENIGN = "How do I bake bread?"
ANSWER = "Step 1: [redacted]"


def user(text: str) -> tuple[Message, ...]:
    return (Message(role="user", content=text),)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_llama_guard_checks_the_user_turn_and_the_answer_and_parses_categories() -> None:
    replies = {render_guard(HARMFUL): "unsafe\nS9,S1", render_guard(BENIGN): "safe",
               render_guard(BENIGN, ANSWER): "unsafe\nS2", render_guard(HARMFUL, "No."): "safe"}
    with serve(replies=replies) as server:
        guard = load_guard(f"llama-guard:openai:guard@{server.url}")

        async def checks() -> list[GuardDecision]:
            try:
                return [await guard.check_input(user(HARMFUL)), await guard.check_input(user(BENIGN)),
                        await guard.check_output(user(BENIGN), ANSWER),
                        await guard.check_output(user(HARMFUL), "No.")]
            finally:
                await guard.aclose()

        harmful, benign, bad_answer, good_answer = run(checks())
    assert (harmful.blocked, harmful.categories) == (True, ("S9", "S1"))
    assert (benign.blocked, benign.categories) == (False, ())
    assert (bad_answer.blocked, bad_answer.categories) == (True, ("S2",))
    assert good_answer.blocked is False and good_answer.error is None
    assert harmful.latency_s > 0


def test_llama_guard_backend_fault_and_unparseable_output_are_errors_not_blocks() -> None:
    with serve(replies={render_guard(BENIGN): "I cannot classify this"}) as server:
        guard = load_guard(f"llama-guard:openai:guard@{server.url}?max_retries=0")
        server.inject("500", times=20)

        async def checks() -> list[GuardDecision]:
            try:
                faulted = await guard.check_input(user(HARMFUL))
                server.app._faults.clear()
                return [faulted, await guard.check_input(user(BENIGN))]
            finally:
                await guard.aclose()

        faulted, garbled = run(checks())
    assert faulted.blocked is None and "error" in (faulted.error or "")
    assert garbled.blocked is None and "unparseable" in (garbled.error or "")


def test_llama_guard_reads_its_verdict_line_however_served_and_anything_else_is_an_error() -> None:
    """Served Llama Guard answers with stray whitespace, in any case, with the categories on the verdict
    line or the next. A reply with no verdict line (a sentence that merely holds the word 'unsafe', or
    nothing) is undecided: an error, never a block that would raise the block rate."""
    replies = {"a": "\n\nunsafe\nS1,S10", "b": "  Unsafe  ", "c": "unsafe S1,S10", "d": "UNSAFE\nS9, S1\n",
               "e": " safe\n", "f": "Safe", "g": "", "h": "   \n",
               "i": "I cannot tell whether this is unsafe.", "j": "The request is not unsafe."}
    with serve(replies={render_guard(k): v for k, v in replies.items()}) as server:
        guard = load_guard(f"llama-guard:openai:guard@{server.url}?max_retries=0")

        async def checks() -> dict[str, GuardDecision]:
            try:
                return {k: await guard.check_input(user(k)) for k in replies}
            finally:
                await guard.aclose()

        got = run(checks())
    decided = {k: (d.blocked, d.categories) for k, d in got.items() if d.error is None}
    assert decided == {"a": (True, ("S1", "S10")), "b": (True, ()), "c": (True, ("S1", "S10")),
                       "d": (True, ("S9", "S1")), "e": (False, ()), "f": (False, ())}
    for key in "ghij":
        assert got[key].blocked is None and got[key].error, (key, got[key])
    assert all("unparseable" in (got[key].error or "") for key in "ij")


def test_moderation_endpoint_flags_with_categories_and_a_500_is_an_error() -> None:
    with serve(moderation={HARMFUL: ("illicit/violent", "violence"), ANSWER: ("illicit",)}) as server:
        guard = load_guard(f"moderation:{server.url}")

        async def checks() -> list[GuardDecision]:
            try:
                ok = [await guard.check_input(user(HARMFUL)), await guard.check_input(user(BENIGN)),
                      await guard.check_output(user(BENIGN), ANSWER)]
                server.inject("500")
                return [*ok, await guard.check_input(user(HARMFUL))]
            finally:
                await guard.aclose()

        harmful, benign, answer, faulted = run(checks())
    assert (harmful.blocked, harmful.categories) == (True, ("illicit/violent", "violence"))
    assert benign.blocked is False
    assert (answer.blocked, answer.categories) == (True, ("illicit",))
    assert faulted.blocked is None and "HTTP 500" in (faulted.error or "")


def test_guarded_chat_counts_refusals_and_provider_blocks_and_errors_apart() -> None:
    with serve(replies={HARMFUL: REFUSAL, BENIGN: "Mix flour, water and yeast."}) as server:
        guard = load_guard(f"guarded-chat:openai:guarded@{server.url}?max_retries=0")

        async def checks() -> list[GuardDecision]:
            try:
                return [await guard.check_input(user(HARMFUL)), await guard.check_input(user(BENIGN)),
                        await guard.check_input(user("hi [[fault:filter400]]")),
                        await guard.check_input(user("hi [[fault:500]]"))]
            finally:
                await guard.aclose()

        refused, answered, filtered, failed = run(checks())
    assert refused.blocked is True and answered.blocked is False
    assert filtered.blocked is True and filtered.categories
    assert failed.blocked is None and failed.error
    assert guard.sides == frozenset({"input"})


def test_guarded_chat_with_an_empty_answer_is_an_error_not_a_pass() -> None:
    """A gateway that answers with no text has neither served an answer nor declined in words: read as
    'not blocked' it would pass every harmful prompt a silent gateway swallows, and hide its false
    positives on benign ones."""
    with serve(replies={HARMFUL: "", BENIGN: " \n "}) as server:
        guard = load_guard(f"guarded-chat:openai:guarded@{server.url}?max_retries=0")

        async def checks() -> list[GuardDecision]:
            try:
                return [await guard.check_input(user(HARMFUL)), await guard.check_input(user(BENIGN))]
            finally:
                await guard.aclose()

        for decision in run(checks()):
            assert decision.blocked is None and "no text" in (decision.error or ""), decision


def test_guarded_chat_recognises_the_gateways_own_block_message() -> None:
    """A canned block message that is no refusal phrase ("Sorry, the model cannot answer this
    question.") read as an answer: the gateway's blocks, false positives included, went uncounted.
    `block_message=` names it; an answer holding it (any case or spacing) is a block."""
    canned = "Sorry, the model cannot answer this question."
    with serve(replies={HARMFUL: canned, BENIGN: "  sorry, THE model cannot\nanswer this question. ",
                        "hi": "Hello! How can I help?"}) as server:
        plain = load_guard(f"guarded-chat:openai:guarded@{server.url}?max_retries=0")
        named = load_guard(f"guarded-chat:openai:guarded@{server.url}?max_retries=0&block_message={canned}")

        async def checks() -> list[GuardDecision]:
            try:
                return [await g.check_input(user(text)) for g in (plain, named)
                        for text in (HARMFUL, BENIGN, "hi")]
            finally:
                await plain.aclose()
                await named.aclose()

        decisions = run(checks())
    assert [d.blocked for d in decisions] == [False, False, False, True, True, False]
    assert decisions[3].categories == ("block_message",)


def test_guarded_chat_reads_a_gateways_http_400_or_403_with_its_block_message_as_a_block() -> None:
    """A gateway that blocks with a plain HTTP 400/403 (no provider filter shape) was an error on every
    blocked prompt: the verification could only come out inconclusive. Its body holding `block_message`
    is a block; another 4xx, or the same status without the message, stays an error."""
    from tunesafe.testing.raw_http import raw_server, read_request, response

    message = "Request blocked by guardrail policy"
    bodies = {b"harm": ("400 Bad Request", message), b"deny": ("403 Forbidden", message.upper()),
              b"else": ("400 Bad Request", "unknown parameter"), b"gone": ("404 Not Found", message)}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            status, text = next((v for k, v in bodies.items() if k in request), ("404 Not Found", "no route"))
            writer.write(response(json.dumps({"error": {"message": text}}).encode(), status,
                                  ("content-type: application/json",)))
            await writer.drain()

    async def checks() -> list[GuardDecision]:
        async with raw_server(handler) as (port, _):
            url = f"http://127.0.0.1:{port}/v1?max_retries=0"
            named = load_guard(f"guarded-chat:openai:gw@{url}&block_message={message.lower()}")
            plain = load_guard(f"guarded-chat:openai:gw@{url}")
            try:
                return [await g.check_input(user(text)) for g in (named, plain)
                        for text in ("harm", "deny", "else", "gone")]
            finally:
                await named.aclose()
                await plain.aclose()

    decisions = run(checks())
    assert [d.blocked for d in decisions[:2]] == [True, True]
    assert decisions[0].categories == ("block_message",)
    for decision in decisions[2:]:
        assert decision.blocked is None and decision.error, decision


def test_python_callable_blocks_and_an_exception_is_an_error(team_filter: str) -> None:
    import importlib

    first = sorted(importlib.import_module(team_filter).BLOCKED)[0]
    guard, broken = load_guard(f"python:{team_filter}:check"), load_guard(f"python:{team_filter}:broken")

    async def checks() -> list[GuardDecision]:
        return [await guard.check_input(user(first)), await guard.check_output(user(first), BENIGN),
                await broken.check_input(user(first))]

    hit, miss, failed = run(checks())
    assert hit.blocked is True and miss.blocked is False
    assert failed.blocked is None and "filter backend unreachable" in (failed.error or "")


def test_a_python_guard_that_hangs_is_an_error_after_its_timeout(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A team's filter that never answers (a dead backend, a lock) stalled the whole verification; past
    its timeout it is an error decision (never a pass or a block), for sync and async callables."""
    (tmp_path / "stuck_filter.py").write_text(textwrap.dedent("""
        import asyncio, threading
        RELEASE = threading.Event()

        def hangs(text, side):
            RELEASE.wait(30)
            return False

        async def hangs_async(text, side):
            await asyncio.sleep(30)
            return False
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    guards = [load_guard(f"python:stuck_filter:{f}?timeout=0.2") for f in ("hangs", "hangs_async")]

    async def checks() -> list[GuardDecision]:
        return [await g.check_input(user(HARMFUL)) for g in guards]

    try:
        for decision in run(checks()):
            assert decision.blocked is None and "did not answer within 0.2 s" in (decision.error or "")
    finally:
        import stuck_filter  # type: ignore[import-not-found]
        stuck_filter.RELEASE.set()
    with pytest.raises(UserError, match="timeout"):
        load_guard("python:stuck_filter:hangs?timeout=soon")
    assert guards[0].ref == "python:stuck_filter:hangs?timeout=0.2"


def test_refs_bad_input_is_a_user_error() -> None:
    # a timeout that is no positive number of seconds was a ValueError traceback (exit 1, read as "fail")
    for ref in ("nope:x", "llama-guard:", "moderation:ftp://x", "python:no_such_module_xyz:f",
                "python:justmodule", "moderation:http://h/v1?on_error=maybe", "moderation:http://h/v1?timeout=soon",
                "nemo:http://h/v1?timeout=0", "moderation:http://h/v1?timeout=-5"):
        with pytest.raises(UserError):
            load_guard(ref)


def test_on_error_is_taken_off_the_ref() -> None:
    guard = load_guard("moderation:http://127.0.0.1:9/v1?on_error=open&model=m")
    assert guard.fail_mode == "open" and guard.ref == "moderation:http://127.0.0.1:9/v1?model=m"
    assert load_guard("moderation:http://127.0.0.1:9/v1").fail_mode == "closed"


def test_canonical_ref_names_fail_open_guards_apart() -> None:
    from tunesafe.guardrails.base import canonical_ref

    assert canonical_ref("python:m:f?on_error=closed") == canonical_ref("python:m:f") == "python:m:f"
    open_ref = "moderation:http://h/v1?model=x&on_error=open"
    assert canonical_ref(open_ref) == open_ref
    assert canonical_ref("python:m:f?on_error=open") == "python:m:f?on_error=open"


def test_the_input_side_prompt_rates_the_user_turn_only() -> None:
    prompt = render_guard(HARMFUL)
    assert "'User' messages" in prompt and "ONLY THE LAST User message" in prompt
    assert "Agent" not in prompt and f"User: {HARMFUL}" in prompt
    assert "ONLY THE LAST Agent message" in render_guard(HARMFUL, ANSWER)


def test_an_undecided_or_self_contradicting_decision_is_an_error_never_a_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odd_filter.py").write_text(textwrap.dedent("""
        from tunesafe.guardrails import GuardDecision

        def unsure(text, side):
            return GuardDecision(blocked=None)  # undecided, and says nothing about why

        def failed_but_passes(text, side):
            return GuardDecision(blocked=False, error="filter backend timed out")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    unsure = load_guard("python:odd_filter:unsure")
    contradicts = load_guard("python:odd_filter:failed_but_passes")

    async def checks() -> list[GuardDecision]:
        return [await unsure.check_input(user(HARMFUL)), await unsure.check_output(user(HARMFUL), ANSWER),
                await contradicts.check_input(user(BENIGN))]

    for decision in run(checks()):
        assert decision.blocked is None and decision.error
    assert "timed out" in (run(checks())[2].error or "")


def test_a_moderation_answer_without_flagged_reads_its_categories_as_mistral_sends_it() -> None:
    from tunesafe.guardrails.adapters.http import GuardHTTPError
    from tunesafe.guardrails.adapters.moderation import parse_moderation

    def mistral(**categories: bool) -> dict[str, object]:
        return {"id": "m", "model": "mistral-moderation-latest",
                "results": [{"categories": categories, "category_scores": dict.fromkeys(categories, 0.5)}]}

    flagged = parse_moderation(mistral(violence_and_threats=True, pii=False))
    assert (flagged.blocked, flagged.categories) == (True, ("violence_and_threats",))
    assert parse_moderation(mistral(violence_and_threats=False, pii=False)).blocked is False
    for unreadable in (mistral(), {"results": [{"categories": {"violence": "yes"}}]}, {"results": [{}]}):
        with pytest.raises(GuardHTTPError):
            parse_moderation(unreadable)
