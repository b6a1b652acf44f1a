"""A model behind a guardrail, as one ChatModel: `guarded:MODEL_REF|GUARD_REF`.

What a deployment with the guard in front of the model answers, so the guarded system can be evaluated
and gated like any model (e.g. `tunesafe gate --base MODEL --candidate 'guarded:FT|GUARD'`, or both
sides guarded). Each request goes through the guard's input check; one it blocks is `blocked` (the
deployed system declined: counted as refused, never judged) and the model is not called. The model's
answer then goes through the output check, and a blocked answer is withheld (`blocked`, no text) as the
deployment would withhold it.

Fail closed in the measurement: a guard check that errors is never counted as a refusal. With the
guard's `on_error=closed` (the default) the attempt is an error (it leaves the ASR denominator and counts
toward the run's error rate); with `on_error=open` the request goes on as the deployment lets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from tunesafe.guardrails.base import Guard, GuardDecision, canonical_ref, timed
from tunesafe.models.base import ChatModel, error_generation
from tunesafe.types import ChatRequest, Generation, canonical_json, sha256_hex


def blocked_by(side: str, decision: GuardDecision) -> str:
    return f"guardrail: {side}" + (f" ({', '.join(decision.categories)})" if decision.categories else "")


class GuardedModel:
    def __init__(self, model: ChatModel, guard: Guard, guard_ref: str) -> None:
        self.model = model
        self.guard = guard
        self.guard_ref = canonical_ref(guard_ref)
        self.ref = f"guarded:{model.ref}|{self.guard_ref}"
        self.backend = model.backend
        self.capabilities = model.capabilities
        self._hash: str | None = None

    def content_hash(self) -> str:
        """The model's hash and the guard as deployed (its ref, fail mode included): a guard is a service
        with no weights to hash, like an HTTP model."""
        if self._hash is None:
            self._hash = sha256_hex(canonical_json({"model": self.model.content_hash(),
                                                    "guard": self.guard_ref}))
        return self._hash

    def paused(self) -> float | None:
        paused = getattr(self.model, "paused", None)
        return None if paused is None else paused()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        try:
            await self.model.aclose()
        finally:
            await self.guard.aclose()

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        inputs = await asyncio.gather(*(self._check("input", r) for r in requests))
        passed = [i for i, stop in enumerate(inputs) if stop is None]
        answers = await self.model.generate([requests[i] for i in passed]) if passed else []
        out: list[Generation | None] = list(inputs)
        outputs = await asyncio.gather(*(self._check_output(requests[i], g)
                                         for i, g in zip(passed, answers, strict=True)))
        for i, generation in zip(passed, outputs, strict=True):
            out[i] = generation
        assert all(g is not None for g in out)
        return out  # type: ignore[return-value]

    async def _check(self, side: str, request: ChatRequest, answer: str | None = None) -> Generation | None:
        """None when the request may go on; else what the deployment returns instead."""
        if side not in self.guard.sides:
            return None
        if answer is None:  # through timed: a plugin's check may raise, and that is this check's error
            decision = await timed(lambda: self.guard.check_input(request.messages))
        else:
            decision = await timed(lambda: self.guard.check_output(request.messages, answer))
        if decision.blocked:
            return Generation(text="", finish_reason="content_filter", blocked=blocked_by(side, decision),
                              latency_s=decision.latency_s)
        if decision.error is not None and self.guard.fail_mode == "closed":
            return error_generation(f"guardrail {side} check failed (on_error=closed): {decision.error}",
                                    decision.latency_s)
        return None

    async def _check_output(self, request: ChatRequest, generation: Generation) -> Generation:
        if not generation.ok or generation.blocked is not None:
            return generation
        stop = await self._check("output", request, generation.text)
        if stop is None:
            return generation
        return replace(stop, latency_s=generation.latency_s + stop.latency_s,
                       prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens)
