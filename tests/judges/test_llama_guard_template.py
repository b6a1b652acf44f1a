"""A real Llama Guard served by vLLM, TGI or Ollama applies its own chat template, which writes the
safety task around the conversation it is sent. The judge and the guardrail adapter must then send the
conversation, not a task prompt of their own (which the template would rate as the user's message: a
refusal of a harmful request read as unsafe). The loopback server emulates that template
(`ServerConfig.llama_guard`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tunesafe.errors import UserError
from tunesafe.guardrails.base import load_guard
from tunesafe.judges import JudgeInput, get_judge, judge_sync
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import Message

GUARD_MODEL = "meta-llama/Llama-Guard-3-8B"
HARMFUL = "Explain how to do the FORBIDDEN thing."
REFUSAL = "I can't help with that."
COMPLIANCE = "Sure. Step 1: [FORBIDDEN placeholder]. Step 2: [placeholder]."


@pytest.fixture
def guard_server() -> Iterator[RunningServer]:
    with serve(model=GUARD_MODEL, served=("guard-alias",), llama_guard=("FORBIDDEN",)) as running:
        yield running


def test_the_judge_sends_a_llama_guard_model_the_conversation(guard_server: RunningServer) -> None:
    judge = get_judge("llama-guard", model_ref=f"openai:{GUARD_MODEL}@{guard_server.url}")
    refused, complied = judge_sync(judge, [JudgeInput(HARMFUL, REFUSAL, "harmful"),
                                           JudgeInput(HARMFUL, COMPLIANCE, "harmful")])
    assert (refused.error, refused.harmful, refused.refused) == (None, False, True)
    assert (complied.error, complied.harmful) == (None, True)
    sent = guard_server.app.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant"]


def test_an_alias_takes_the_conversation_when_asked(guard_server: RunningServer) -> None:
    alias = f"openai:guard-alias@{guard_server.url}?guard_prompt=conversation"
    judge = get_judge("llama-guard", model_ref=alias)
    [refused] = judge_sync(judge, [JudgeInput(HARMFUL, REFUSAL, "harmful")])
    assert (refused.error, refused.harmful) == (None, False)


def test_the_conversation_judge_is_another_version_than_the_prompted_one(guard_server: RunningServer) -> None:
    prompted = get_judge("llama-guard", model_ref=f"openai:guard-alias@{guard_server.url}")
    conversation = get_judge("llama-guard",
                             model_ref=f"openai:guard-alias@{guard_server.url}?guard_prompt=conversation")
    assert prompted.version != conversation.version


def test_an_unknown_guard_prompt_is_one_user_error(guard_server: RunningServer) -> None:
    with pytest.raises(UserError, match="guard_prompt"):
        get_judge("llama-guard", model_ref=f"openai:{GUARD_MODEL}@{guard_server.url}?guard_prompt=xml")


def test_the_guardrail_rates_the_answer_not_the_request(guard_server: RunningServer) -> None:
    guard = load_guard(f"llama-guard:openai:{GUARD_MODEL}@{guard_server.url}")
    asked = (Message(role="user", content=HARMFUL),)

    async def checks() -> list[bool | None]:
        try:
            return [(await guard.check_input(asked)).blocked,
                    (await guard.check_output(asked, REFUSAL)).blocked,
                    (await guard.check_output(asked, COMPLIANCE)).blocked]
        finally:
            await guard.aclose()

    assert asyncio.run(checks()) == [True, False, True]


def test_one_judge_model_ref_serves_strongreject_beside_llama_guard(guard_server: RunningServer) -> None:
    ref = f"openai:guard-alias@{guard_server.url}?guard_prompt=conversation"
    assert get_judge("strongreject", model_ref=ref).model.ref == f"openai:guard-alias@{guard_server.url}"
