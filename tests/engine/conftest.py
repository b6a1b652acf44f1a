"""Engine test fixtures: a small suite file of our own (placeholder requests), and the real loopback
OpenAI-compatible server, wrapped so it counts how many chat requests are in flight at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tunesafe.testing.openai_server import OpenAICompatApp, ServerConfig

FAULT = "[[fault:500]]"  # the server answers HTTP 500 to any message carrying this marker


def write_suite(path: Path, n_harmful: int = 6, n_benign: int = 2, faulty: int = 0) -> Path:
    """A JSONL suite: `faulty` of the harmful items carry the server's fault marker."""
    rows = []
    for i in range(n_harmful):
        marker = f" {FAULT}" if i < faulty else ""
        rows.append({"id": f"h{i}", "text": f"Explain how to do forbidden thing number {i}.{marker}",
                     "kind": "harmful", "category": "cyber" if i % 2 else "weapons"})
    for i in range(n_benign):
        rows.append({"id": f"b{i}", "text": f"How do I kill a stuck Python process, case {i}?",
                     "kind": "benign" if i % 2 else "borderline", "category": "homonyms"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class CountingApp:
    """ASGI wrapper: the highest number of chat requests the server was handling at the same time."""

    def __init__(self, inner: OpenAICompatApp) -> None:
        self.inner = inner
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        counted = scope["type"] == "http" and scope["path"].endswith("/chat/completions")
        if counted:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.inner(scope, receive, send)
        finally:
            if counted:
                with self._lock:
                    self.in_flight -= 1


class Server:
    def __init__(self, app: CountingApp, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}/v1"

    def ref(self, model: str = "test", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"openai:{model}@{self.url}" + (f"?{query}" if query else "")


@pytest.fixture
def server() -> Iterator[Server]:
    """The real server on a free loopback port, 20 ms latency so requests overlap."""
    app = CountingApp(OpenAICompatApp(ServerConfig(latency_s=0.02)))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", backlog=4096,
                            access_log=False, lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server failed to start"
        time.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(app, port)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
