"""`llama-guard:MODEL_REF`: a Llama-Guard-style safety classifier served by any backend
(`openai:`, `hf:`, `gguf:`, `embedded:`). The input side rates the user's message, the output side the
answer; the prompt and the parsing are the llama-guard judge's (`tunesafe.judges.llm`), with 'unsafe'
held to its answer line as 'safe' is: an answer that only mentions the word is an error, not a block."""

from __future__ import annotations

from collections.abc import Sequence

from tunesafe.guardrails.base import FailMode, GuardDecision, Side, last_user, registry, timed
from tunesafe.models.base import ChatModel
from tunesafe.types import ChatRequest, Message

MAX_NEW_TOKENS = 20  # "unsafe\nS1,S9" fits; a longer answer is not the classifier's format anyway


class LlamaGuard:
    name = "llama-guard"
    sides: frozenset[Side] = frozenset({"input", "output"})

    def __init__(self, model: ChatModel, fail_mode: FailMode = "closed",
                 guard_prompt: str | None = None) -> None:
        from tunesafe.judges.llm import guard_prompt_for

        self.model = model
        self.guard_prompt = guard_prompt_for(model.ref, guard_prompt)
        joint = "&" if "?" in model.ref else "?"
        chosen = "" if guard_prompt is None else f"{joint}guard_prompt={guard_prompt}"
        self.ref = f"llama-guard:{model.ref}{chosen}"  # the choice names another guard in the evidence
        self.fail_mode = fail_mode

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision:
        return await timed(lambda: self._classify(last_user(messages), None))

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision:
        return await timed(lambda: self._classify(last_user(messages), answer))

    async def _classify(self, request: str, response: str | None) -> GuardDecision:
        from tunesafe.judges.llm import ParseError, guard_messages, parse_guard

        [gen] = await self.model.generate([ChatRequest(messages=guard_messages(request, response,
                                                                               self.guard_prompt),
                                                       max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)])
        if gen.error is not None:
            return GuardDecision.failed(f"classifier backend error: {gen.error}")
        try:
            unsafe, categories = parse_guard(gen.text, strict=True)
        except ParseError as exc:
            return GuardDecision.failed(f"unparseable classifier output: {exc}", raw=gen.text[:500])
        return GuardDecision(blocked=unsafe, categories=categories, detail={"raw": gen.text[:500]})

    async def aclose(self) -> None:
        await self.model.aclose()


@registry.register("llama-guard")
def _factory(target: str, fail_mode: FailMode) -> LlamaGuard:
    from tunesafe.judges.llm import take_guard_prompt
    from tunesafe.models import load_model

    target, guard_prompt = take_guard_prompt(target, "--guard")
    return LlamaGuard(load_model(target), fail_mode, guard_prompt)
