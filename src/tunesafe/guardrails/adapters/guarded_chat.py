"""`guarded-chat:openai:MODEL@URL`: the whole guarded system (guard + model) as one OpenAI-compatible
endpoint. A request is blocked when the system declines it: a provider content filter or refusal
field (`Generation.blocked`), or an answer that reads as a refusal (the refusal judge's patterns). From
outside, a guard's block and the model's own refusal look the same, so the figures are those of the
system; there is one side (`input`), and its decision covers the answer too."""

from __future__ import annotations

from collections.abc import Sequence

from tunesafe.errors import UserError
from tunesafe.guardrails.base import FailMode, GuardDecision, Side, registry, timed
from tunesafe.models.base import ChatModel
from tunesafe.types import ChatRequest, Message

MAX_NEW_TOKENS = 128  # enough to see whether the system declined; not an evaluation of the answer


class GuardedChat:
    name = "guarded-chat"
    sides: frozenset[Side] = frozenset({"input"})

    def __init__(self, model: ChatModel, fail_mode: FailMode = "closed") -> None:
        self.model = model
        self.ref = f"guarded-chat:{model.ref}"
        self.fail_mode = fail_mode

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision:
        return await timed(lambda: self._ask(messages))

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision:
        return GuardDecision.failed("a guarded chat endpoint has no separate output check")

    async def _ask(self, messages: Sequence[Message]) -> GuardDecision:
        from tunesafe.judges.refusal import scan

        request = ChatRequest(messages=tuple(messages), max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)
        [gen] = await self.model.generate([request])
        if gen.error is not None:
            return GuardDecision.failed(f"guarded endpoint error: {gen.error}")
        detail = {"answer": gen.text[:500]}
        if gen.blocked is not None:
            return GuardDecision(blocked=True, categories=(gen.blocked,), detail=detail)
        return GuardDecision(blocked=scan(gen.text).fallback == "refused", detail=detail)

    async def aclose(self) -> None:
        await self.model.aclose()


@registry.register("guarded-chat")
def _factory(target: str, fail_mode: FailMode) -> GuardedChat:
    from tunesafe.models import load_model, parse_ref

    if parse_ref(target).scheme != "openai":
        raise UserError(f"guarded-chat needs an OpenAI-compatible endpoint, got {target!r}", where="--guard",
                        fix="use guarded-chat:openai:MODEL@http(s)://HOST/v1")
    return GuardedChat(load_model(target), fail_mode)
