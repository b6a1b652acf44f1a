"""`moderation:URL`: an endpoint with the OpenAI moderation response shape (`POST URL/moderations`,
`{"results": [{"flagged": bool, "categories": {name: bool}}]}`, or Mistral's, without `flagged`). Input
side: the user's message; output side: the answer. Options: `model=` (sent as the request's model),
`key_env=`, `timeout=`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunesafe.guardrails.adapters.http import GuardHTTPError, JsonClient, split_url
from tunesafe.guardrails.base import FailMode, GuardDecision, Side, last_user, registry, timed
from tunesafe.types import Message

DEFAULT_MODEL = "omni-moderation-latest"


class Moderation:
    name = "moderation"
    sides: frozenset[Side] = frozenset({"input", "output"})

    def __init__(self, target: str, fail_mode: FailMode = "closed") -> None:
        self.url, options = split_url(target, "moderation")
        self.ref = f"moderation:{target}"
        self.fail_mode = fail_mode
        self.model = options.get("model", DEFAULT_MODEL)
        self.http = JsonClient(options)

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision:
        return await timed(lambda: self._moderate(last_user(messages)))

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision:
        return await timed(lambda: self._moderate(answer))

    async def _moderate(self, text: str) -> GuardDecision:
        data = await self.http.post(f"{self.url}/moderations", {"model": self.model, "input": text})
        return parse_moderation(data)

    async def aclose(self) -> None:
        await self.http.aclose()


def parse_moderation(data: Any) -> GuardDecision:
    """The first result's `flagged` and the categories set true; anything else is an error. Mistral's
    moderation sends no `flagged`: a result of boolean categories alone is flagged when one is true."""
    try:
        result = data["results"][0]
        categories = result.get("categories") or {}
        flagged = result["flagged"] if "flagged" in result else _any_category(categories)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise GuardHTTPError(f"not a moderation response: {str(data)[:200]}") from None
    if not isinstance(flagged, bool):
        raise GuardHTTPError(f"'flagged' is not a boolean: {flagged!r}")
    names = tuple(sorted(k for k, v in categories.items() if v)) if isinstance(categories, Mapping) else ()
    return GuardDecision(blocked=flagged, categories=names)


def _any_category(categories: Any) -> bool:
    if not isinstance(categories, Mapping) or not categories \
            or not all(isinstance(v, bool) for v in categories.values()):
        raise KeyError("flagged")  # neither shape: not a moderation response
    return any(categories.values())


@registry.register("moderation")
def _factory(target: str, fail_mode: FailMode) -> Moderation:
    return Moderation(target, fail_mode)
