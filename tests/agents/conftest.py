"""Agent tests: the loopback OpenAI server scripted as a tool-calling agent (one per policy, started once
per session), and the same scripted agent in-process for the catalogue-wide properties (hundreds of
episodes, where HTTP would only add time)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from tunesafe.models.tool_calls import from_openai_message, to_openai_messages
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.testing.scripted_agent import reply
from tunesafe.types import Capabilities, ChatRequest, Generation


class InProcessAgent:
    """The scripted agent as a ChatModel, through the same OpenAI message conversion as the HTTP path."""

    backend = "scripted"
    capabilities = Capabilities(tools=True)

    def __init__(self, policy: str) -> None:
        self.ref = f"scripted:{policy}"
        self.policy = policy

    def content_hash(self) -> str:
        return self.ref

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        replies = [reply(to_openai_messages(r.messages), r.tools, self.policy) for r in requests]
        return [Generation(text=from_openai_message(m), finish_reason="stop") for m in replies]

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="session")
def agent_servers() -> Iterator[dict[str, RunningServer]]:
    with serve(agent="resists") as resists, serve(agent="follows") as follows, \
            serve(agent="follows_undelimited") as undelimited, serve(agent="malformed") as malformed:
        yield {"resists": resists, "follows": follows, "follows_undelimited": undelimited,
               "malformed": malformed}


def ref(servers: dict[str, RunningServer], policy: str) -> str:
    return f"openai:tunesafe-test@{servers[policy].url}?max_retries=0"
