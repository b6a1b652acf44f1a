"""`guarded-chat:openai:MODEL@URL`: the whole guarded system (guard + model) as one OpenAI-compatible
endpoint. A request is blocked when the system declines it: a provider content filter or refusal
field (`Generation.blocked`), an answer that reads as a refusal (the refusal judge's patterns), or an
answer, or the body of an HTTP 400/403, holding the gateway's own block message (`?block_message=TEXT`,
any case or spacing) when that is no refusal phrase. An answer with no text is an error: neither served
nor declined. From outside, a guard's block and the model's own refusal look the same, so the figures
are those of the system; there is one side (`input`), and its decision covers the answer too."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tunesafe.errors import UserError
from tunesafe.guardrails.base import FailMode, GuardDecision, Side, registry, timed
from tunesafe.models.base import ChatModel
from tunesafe.types import ChatRequest, Message

MAX_NEW_TOKENS = 128  # enough to see whether the system declined; not an evaluation of the answer
_BLOCK_STATUS = re.compile(r"HTTP 40[03]\b")  # how the OpenAI client words a gateway's 400/403 it gave up on


class GuardedChat:
    name = "guarded-chat"
    sides: frozenset[Side] = frozenset({"input"})

    def __init__(self, model: ChatModel, fail_mode: FailMode = "closed",
                 block_message: str | None = None) -> None:
        from tunesafe.judges.refusal import normalize

        self.model = model
        self.ref = f"guarded-chat:{model.ref}"
        self.fail_mode = fail_mode
        self.block_message = normalize(block_message).lower() if block_message else None

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision:
        return await timed(lambda: self._ask(messages))

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision:
        return GuardDecision.failed("a guarded chat endpoint has no separate output check")

    async def _ask(self, messages: Sequence[Message]) -> GuardDecision:
        from tunesafe.judges.refusal import scan

        request = ChatRequest(messages=tuple(messages), max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)
        [gen] = await self.model.generate([request])
        if gen.error is not None:
            if _BLOCK_STATUS.match(gen.error) and self._says_blocked(gen.error):
                return GuardDecision(blocked=True, categories=("block_message",), detail={"error": gen.error})
            return GuardDecision.failed(f"guarded endpoint error: {gen.error}")
        detail = {"answer": gen.text[:500]}
        if gen.blocked is not None:
            return GuardDecision(blocked=True, categories=(gen.blocked,), detail=detail)
        if not gen.text.strip():
            return GuardDecision.failed("the guarded endpoint answered with no text", answer=gen.text[:500])
        if self._says_blocked(gen.text):
            return GuardDecision(blocked=True, categories=("block_message",), detail=detail)
        return GuardDecision(blocked=scan(gen.text).fallback == "refused", detail=detail)

    def _says_blocked(self, text: str) -> bool:
        from tunesafe.judges.refusal import normalize

        return self.block_message is not None and self.block_message in normalize(text).lower()

    async def aclose(self) -> None:
        await self.model.aclose()


@registry.register("guarded-chat")
def _factory(target: str, fail_mode: FailMode) -> GuardedChat:
    from tunesafe.models import load_model, parse_ref
    from tunesafe.models.refs import take_option

    # block_message is this adapter's; the other options are the model ref's
    target, block_message = take_option(target, "block_message")
    if block_message is not None and not block_message.strip():
        raise UserError("guarded-chat: block_message is empty", where="--guard",
                        fix="give the text the gateway answers when it blocks, e.g. "
                            "?block_message=Request blocked by policy")
    if parse_ref(target).scheme != "openai":
        raise UserError(f"guarded-chat needs an OpenAI-compatible endpoint, got {target!r}", where="--guard",
                        fix="use guarded-chat:openai:MODEL@http(s)://HOST/v1")
    return GuardedChat(load_model(target), fail_mode, block_message)
