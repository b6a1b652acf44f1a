"""Real OpenAI-compatible servers on loopback (tunesafe.testing.openai_server) as targets and
attackers, and the real pattern judge."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tunesafe.models import ChatModel, load_model
from tunesafe.testing.openai_server import RunningServer, serve

Connect = Callable[..., ChatModel]


@pytest.fixture
def target_server() -> Iterator[RunningServer]:
    # A dict we keep, so a test can script replies (last user message -> reply) after the start.
    with serve(replies={}) as server:
        yield server


@pytest.fixture
def second_server() -> Iterator[RunningServer]:
    with serve(replies={}, model="second") as server:
        yield server


@pytest.fixture
def attacker_server() -> Iterator[RunningServer]:
    with serve(replies={}, model="attacker") as server:
        yield server


@pytest.fixture
def connect() -> Connect:
    """connect(server, options="?prefill=1") -> a ChatModel on that server (no retries: faults show)."""

    def _connect(server: RunningServer, options: str = "") -> ChatModel:
        return load_model(f"openai:test@{server.url}{options}", max_retries=0)

    return _connect
