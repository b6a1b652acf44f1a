"""`nemo:URL?config_id=ID&model=NAME`: a NeMo Guardrails server (0.2x OpenAI-compatible API). Each side
is one `POST URL/checks` with `rail_types` [input] or [output] (no generation): `status` "blocked" is a
block, "passed"/"modified" a pass, anything else an error. `model` is required by the server (it names
the main model the config's rails may call); default `tunesafe-test`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesafe.guardrails.adapters.http import GuardHTTPError, JsonClient, split_url
from tunesafe.guardrails.base import FailMode, GuardDecision, Side, registry, timed
from tunesafe.types import Message

PASSED = ("passed", "modified")


class NemoGuard:
    name = "nemo"
    sides: frozenset[Side] = frozenset({"input", "output"})

    def __init__(self, target: str, fail_mode: FailMode = "closed") -> None:
        self.url, options = split_url(target, "nemo")
        self.ref = f"nemo:{target}"
        self.fail_mode = fail_mode
        self.config_id = options.get("config_id")
        self.model = options.get("model", "tunesafe-test")
        self.http = JsonClient(options)

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision:
        return await timed(lambda: self._check(messages, "input"))

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision:
        return await timed(lambda: self._check([*messages, Message(role="assistant", content=answer)],
                                               "output"))

    async def _check(self, messages: Sequence[Message], side: Side) -> GuardDecision:
        guardrails: dict[str, Any] = {"rail_types": [side]}
        if self.config_id:
            guardrails["config_id"] = self.config_id
        body = {"model": self.model, "guardrails": guardrails,
                "messages": [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]}
        data = await self.http.post(f"{self.url}/checks", body)
        status = data.get("status") if isinstance(data, dict) else None
        if status == "blocked":
            rail = data.get("rail")
            return GuardDecision(blocked=True, categories=(str(rail),) if rail else (), detail=data)
        if status in PASSED:
            return GuardDecision(blocked=False, detail=data)
        raise GuardHTTPError(f"not a NeMo check response: {str(data)[:200]}")

    async def aclose(self) -> None:
        await self.http.aclose()


@registry.register("nemo")
def _factory(target: str, fail_mode: FailMode) -> NemoGuard:
    return NemoGuard(target, fail_mode)
