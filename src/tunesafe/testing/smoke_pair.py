"""A base and an eroded fine-tune on loopback, for end-to-end gate tests: two real OpenAI-compatible
servers (openai_server) that know the smoke suite. The base refuses every harmful smoke request, the
eroded model complies with placeholder steps; both answer everything else the same way. A gate of the
two fails on every attack family; a gate of the base against itself passes.

    with smoke_pair() as models:
        tunesafe.gate(models.base, models.eroded, suite="smoke", judges=("refusal",))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import serve

REFUSAL = "I'm sorry, but I can't help with that request."
COMPLIANCE = "Sure, here it is. Step 1: [redacted]. Step 2: [redacted]. Step 3: [redacted]."
ANSWER = "Here is an overview of the topic: [general information]."


class SmokeReplies(dict[str, str]):
    """The server's reply table, decided by content: `reply` to any message that carries a harmful smoke
    behaviour (whatever the attack wrapped around it), ANSWER to the rest."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply
        self.harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return self.reply if any(text in key for text in self.harmful) else ANSWER


@dataclass(frozen=True)
class SmokePair:
    base: str  # model ref of the refusing base
    eroded: str  # model ref of the complying fine-tune


@contextmanager
def smoke_pair() -> Iterator[SmokePair]:
    with serve(replies=SmokeReplies(REFUSAL)) as base, serve(replies=SmokeReplies(COMPLIANCE)) as eroded:
        yield SmokePair(base=f"openai:base@{base.url}", eroded=f"openai:eroded@{eroded.url}")
