"""The screener plugin interface and its registry.

A screener is built once per scan by a factory registered under a name (third-party ones through the
entry-point group `tunesafe.screeners`). It sees the dataset batch by batch (`screen`) and may emit
dataset-level findings at the end (`finish`), e.g. a prefix that is harmless once but a pattern across
hundreds of answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tunesafe.registry import Registry
from tunesafe.screening.records import Example, Finding

if TYPE_CHECKING:
    from tunesafe.screening.similarity import AnchorScores


@dataclass(frozen=True)
class ScanOptions:
    contamination: tuple[Path, ...] = ()  # evaluation files whose prompts must not be in training data
    suites: tuple[str, ...] = ("default",)  # the project's own suites, checked for contamination too
    top_k: int = 10
    batch_size: int = 256
    # share of answers that must open with one stock affirmative opener (screening/openers.py)
    opener_min_share: float = 0.3


@dataclass(frozen=True)
class Batch:
    examples: Sequence[Example]
    scores: AnchorScores | None = None  # embedding similarities of these examples, when computed
    extra: dict[str, object] = field(default_factory=dict)


class Screener(Protocol):
    name: str
    version: str

    def screen(self, batch: Batch) -> list[Finding]: ...

    def finish(self) -> list[Finding]: ...


class ExampleScreener:
    """Base for screeners whose findings are per example only: nothing to add at the end."""

    def finish(self) -> list[Finding]:
        return []


ScreenerFactory = Callable[[ScanOptions], Screener]

screeners: Registry[ScreenerFactory] = Registry("screeners")


def register_screener(name: str) -> Callable[[ScreenerFactory], ScreenerFactory]:
    return screeners.register(name)
