"""Prompt prefixes shared across llama.cpp's slots: the index, the real server's work, and failing open."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesafe.models import load_model
from tunesafe.models.llamacpp import LlamaCppChatModel
from tunesafe.models.llamacpp_slots import PrefixIndex, SharedPrefixSlots, common_prefix
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.testing.openai_server import serve
from tunesafe.types import ChatRequest, Generation, Message

TEMPLATE = ("You are a ship's captain in a story. Stay in character whatever happens, never leave the role, "
            "and answer each question in sailor's slang with one line of a sea shanty. The question: ")
OTHER = ("Reply as a careful librarian who cites a made-up catalogue number for every answer, in one "
         "sentence, never more. Here is the patron's question: ")
QUESTIONS = ["how do ships float?", "what is the capital of France?", "why is the sea salty?",
             "how do I tie a knot?", "what is two plus two?", "who wrote Hamlet?"]


def test_the_index_finds_the_longest_shared_prefix() -> None:
    rng = random.Random(7)
    index, items = PrefixIndex(), list[tuple[int, ...]]()
    for _ in range(300):
        item = tuple(rng.choice((1, 2, 3)) for _ in range(rng.randint(1, 12)))
        probe = tuple(rng.choice((1, 2, 3)) for _ in range(rng.randint(1, 12)))
        expected = max((common_prefix(i, probe) for i in items), default=0)
        length, found = index.longest(probe)
        assert length == expected and (not items or common_prefix(found, probe) == length)
        index.add(item)
        items.append(item)


def _asks(texts: Sequence[str]) -> list[ChatRequest]:
    return [ChatRequest(messages=(Message("user", t),), max_new_tokens=8) for t in texts]


def _evaluated(model: LlamaCppChatModel) -> int:
    """Prompt tokens the server says it computed (its per-request timing lines)."""
    return sum(int(n) for n in re.findall(r"prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens",
                                          model.server.log_text()))


Run = tuple[list[Generation], int, "dict[str, int] | None"]


def _run(share: int, max_saved_bytes: int | None = None, texts: Sequence[str] | None = None) -> Run:
    model = load_model(f"embedded:smollm2-135m?backend=llamacpp&parallel=4&ctx=1024&share_prefix={share}")
    assert isinstance(model, LlamaCppChatModel)
    if max_saved_bytes is not None:
        assert model.prefixes is not None
        model.prefixes.max_saved_bytes = max_saved_bytes
    try:
        asked = texts if texts is not None else [TEMPLATE + q for q in QUESTIONS] + QUESTIONS
        gens = asyncio.run(model.generate(_asks(asked)))
        stats = dict(model.prefixes.stats) if model.prefixes else None
        assert model.prefixes is None or model.prefixes.enabled
        if max_saved_bytes is not None:  # over the budget: only the newest save stays on disk
            assert model.prefixes is not None and len(list(model.prefixes.save_dir.iterdir())) == 1
        return gens, _evaluated(model), stats
    finally:
        model.close()


def test_a_shared_template_is_computed_once_not_per_slot(llama_server: list[str]) -> None:
    shared, shared_work, stats = _run(1)
    plain, plain_work, _ = _run(0)
    assert all(g.ok and g.text for g in shared + plain), shared + plain
    # the same prompts were asked: the server counts the same prompt tokens, computes fewer of them
    assert [g.prompt_tokens for g in shared] == [g.prompt_tokens for g in plain]
    assert stats is not None and stats["saved"] >= 1 and stats["restored"] >= 1, stats
    assert shared_work < plain_work, (shared_work, plain_work)


def test_saves_over_the_byte_budget_are_deleted(llama_server: list[str]) -> None:
    # two templates: each is saved once it is seen twice, and the first save goes when the second comes
    gens, _, stats = _run(1, max_saved_bytes=1, texts=[t + q for t in (TEMPLATE, OTHER) for q in QUESTIONS])
    assert all(g.ok for g in gens) and stats is not None and stats["saved"] >= 2, stats


def test_a_server_without_the_endpoints_is_asked_unshared(tmp_path: Path) -> None:
    with serve() as server:  # an OpenAI-compatible server with no /apply-template or /slots
        client = OpenAIChatModel("tunesafe-test", server.url, concurrency=2)
        slots = SharedPrefixSlots(server.url.removesuffix("/v1"), 2, tmp_path)

        async def ask(request: ChatRequest) -> Generation:
            async def send(extra: dict[str, Any]) -> Generation:
                return await client.generate_one(request, extra)
            return await slots.generate(request, client.payload(request), send)

        async def ask_all() -> list[Generation]:
            requests = _asks([TEMPLATE + q for q in QUESTIONS])
            try:
                return list(await asyncio.gather(*(ask(r) for r in requests)))
            finally:
                await slots.aclose()
                await client.aclose()

        gens = asyncio.run(ask_all())
    assert all(g.ok for g in gens) and len(gens) == len(QUESTIONS)
    assert not slots.enabled
    assert {r.get("id_slot") for r in server.requests} <= {0, 1}  # still one request per slot


def test_a_keep_alive_connection_the_server_closes_is_asked_again_on_a_new_one(tmp_path: Path) -> None:
    """llama.cpp closes idle keep-alive connections; a request that races the close gets no answer.
    Here the server answers the first request of each connection and drops the second unanswered."""
    answers = {"/apply-template": {"prompt": "rendered"}, "/tokenize": {"tokens": [5, 6, 7]}}
    dropped: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for turn in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            if turn == 1:
                dropped.append(path)
                break
            body = json.dumps(answers[path]).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    async def render() -> tuple[Any, bool]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        slots = SharedPrefixSlots(f"http://127.0.0.1:{port}", 1, tmp_path)
        slots._bind_loop()
        try:
            return await slots._tokens({"messages": []}), slots.enabled
        finally:
            await slots.aclose()
            server.close()

    tokens, enabled = asyncio.run(render())
    assert dropped == ["/tokenize"]  # the second request of the first connection went unanswered
    assert tokens == (5, 6, 7) and enabled
