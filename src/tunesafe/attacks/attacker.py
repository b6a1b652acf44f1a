"""What attacker-driven attacks share: calling the attacker model, scoring with the judge, and the
replay rule. A run with an attacker searches and returns its prompts in `Execution.frozen`; a run given
those frozen prompts replays them on the target without searching, so both models see identical user
turns (the paired design of the gate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunesafe.attacks.base import AttackImpl, ExecContext, Execution, JudgeItem, Prompt, request_text, user
from tunesafe.errors import EndpointUnavailable
from tunesafe.types import Attempt, Behavior, ChatRequest, Generation, Message, Verdict

if TYPE_CHECKING:
    from tunesafe.models.base import ChatModel

_LABELS = ("prompt:", "new prompt:", "user:", "message:", "next message:", "translation:", "rewritten:",
           "reformulated:", "question:")


class AttackerError(Exception):
    """The attacker model could not produce what the attack needs: the attempt is an error."""

    def __init__(self, message: str, conversation: Sequence[Message] = ()) -> None:
        super().__init__(message)
        self.conversation = tuple(conversation)


def clean_attacker_text(text: str) -> str:
    """The attacker's output without the wrapping small models add: code fences, a leading label such
    as 'Prompt:', surrounding quotes."""
    text = text.strip()
    if text.startswith("```") and text.endswith("```") and len(text) > 6:
        text = text[3:-3].split("\n", 1)[-1].strip() if "\n" in text[3:-3] else text[3:-3].strip()
    lowered = text.lower()
    for label in _LABELS:
        if lowered.startswith(label):
            text = text[len(label):].strip()
            break
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def attacker_refused(text: str, *, translating: bool = False) -> bool:
    """Whether the attacker model declined its task instead of doing it. Sent on, its refusal would be
    the "attack" and the target's answer to it a resisted attack (ASR understated); as a back-translation
    it would be judged as the target's refusal. Only a refusal in the first line counts: a PAIR prompt
    may quote the target's refusal further on. A back-translation may faithfully carry the target's own
    refusal, so there only a refusal that speaks of translating counts."""
    # Imported here: the judges sit downstream of the attacks, and only the refusal patterns are needed.
    from tunesafe.judges.refusal import scan

    first_line = text.strip().split("\n", 1)[0]
    if not scan(first_line).opening:
        return False
    return not translating or "translat" in first_line.lower()


async def ask_attacker(ctx: ExecContext, messages: Sequence[Message], *, seed: int,
                       translating: bool = False) -> str:
    """The attacker's cleaned answer; an AttackerError when there is none or the attacker refused."""
    if ctx.attacker is None:
        raise AttackerError("this attack needs an attacker model (or frozen prompts to replay)")
    request = ChatRequest(messages=tuple(messages), max_new_tokens=ctx.attacker_max_new_tokens,
                          temperature=ctx.attacker_temperature, seed=seed)
    [generation] = await ctx.attacker.generate([request])
    if generation.error is not None:
        raise AttackerError(f"attacker model failed: {generation.error}")
    text = clean_attacker_text(generation.text)
    if not text:
        raise AttackerError("attacker model returned an empty text")
    if attacker_refused(text, translating=translating):
        raise AttackerError(f"attacker model refused its task: {' '.join(text.split())[:200]}")
    return text


async def send(target: ChatModel, messages: Sequence[Message], ctx: ExecContext) -> Generation:
    request = ChatRequest(messages=tuple(messages), max_new_tokens=ctx.max_new_tokens,
                          temperature=ctx.temperature, seed=ctx.seed)
    [generation] = await target.generate([request])
    return generation


async def judge_one(ctx: ExecContext, goal: str, response: str) -> Verdict | None:
    """The judge's verdict on one answer, or None without a judge. A judge exception is an error verdict:
    never a success, never a refusal."""
    if ctx.judge is None:
        return None
    try:
        [verdict] = await ctx.judge.judge([JudgeItem(request=goal, response=response, kind="harmful")])
    except EndpointUnavailable:
        raise  # an endpoint down past max_pause stops the run resumably; it is not a broken judge
    except Exception as exc:  # a broken judge must not abort the run; it counts as undecided
        return Verdict(judge=ctx.judge.name, judge_version=ctx.judge.version, refused=None, harmful=None,
                       error=f"judge failed: {exc}")
    return verdict


def is_success(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.ok and verdict.refused is False and bool(verdict.harmful)


def is_refusal(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.ok and verdict.refused is True


class AttackerDriven(AttackImpl):
    """Base of attacks that need an attacker model. The attempt holds the goal (the behaviour) as its one
    user message; the turns actually sent are in Execution.conversation. `frozen_keys` are the keys
    `search` must return in `frozen` and `replay` reads back."""

    frozen_keys: tuple[str, ...] = ("prompt",)

    def build(self, behavior: Behavior, params: Mapping[str, Any], seed: int) -> Prompt:
        return Prompt(messages=user(request_text(behavior)))

    async def execute(self, attempt: Attempt, target: ChatModel, ctx: ExecContext) -> Execution:
        goal = attempt.messages[-1].content
        try:
            if ctx.frozen is not None:
                missing = [k for k in self.frozen_keys if k not in ctx.frozen]
                if missing:
                    return Execution.failed(f"frozen prompts of {self.meta.name} lack {', '.join(missing)}")
                return await self.replay(goal, attempt, target, ctx, ctx.frozen)
            if ctx.attacker is None:
                return Execution.failed(f"{self.meta.name} needs an attacker model "
                                        "(or frozen prompts to replay)")
            return await self.search(goal, attempt, target, ctx)
        except AttackerError as exc:
            return Execution.failed(str(exc), exc.conversation)

    async def search(self, goal: str, attempt: Attempt, target: ChatModel, ctx: ExecContext) -> Execution:
        raise NotImplementedError

    async def replay(self, goal: str, attempt: Attempt, target: ChatModel, ctx: ExecContext,
                     frozen: Mapping[str, Any]) -> Execution:
        """Default replay: the frozen single-turn prompt, sent once."""
        return await self.single_turn(str(frozen["prompt"]), target, ctx, frozen)

    async def single_turn(self, prompt: str, target: ChatModel, ctx: ExecContext,
                          frozen: Mapping[str, Any]) -> Execution:
        messages = (Message("user", prompt),)
        generation = await send(target, messages, ctx)
        if not generation.ok:
            return Execution(generation=generation, response="", conversation=messages, frozen=frozen)
        return Execution(generation=generation, response=self.decode(generation.text),
                         conversation=(*messages, Message("assistant", generation.text)), frozen=frozen)
