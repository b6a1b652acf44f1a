"""A loopback server's reply table that answers by which harmful behaviour a prompt carries, whatever
attack wraps it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ByHarmfulBehaviour(dict[str, str]):
    """`reply(i, text)` for a prompt holding the i-th harmful behaviour's text, else `otherwise`."""

    def __init__(self, harmful: list[str], reply: Callable[[int, str], str], otherwise: str) -> None:
        super().__init__()
        self.harmful, self.reply, self.otherwise = harmful, reply, otherwise

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        for i, text in enumerate(self.harmful):
            if text in key:
                return self.reply(i, text)
        return self.otherwise
