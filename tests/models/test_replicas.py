"""A model served by several replicas (`openai:MODEL@URL1,URL2`), against real loopback servers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tunesafe.errors import EndpointUnavailable, UserError
from tunesafe.models import load_model
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.models.replicas import ReplicatedChatModel
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import Generation

from .test_openai_http import generate, req


@pytest.fixture
def servers() -> Iterator[list[RunningServer]]:
    with ExitStack() as stack:
        yield [stack.enter_context(serve(retry_after=0.05, latency_s=0.01)) for _ in range(3)]


def replicated(servers: list[RunningServer], **opts: object) -> ReplicatedChatModel:
    model = load_model(f"openai:tunesafe-test@{','.join(s.url for s in servers)}", **opts)
    assert isinstance(model, ReplicatedChatModel)
    return model


def test_requests_spread_over_the_replicas_and_are_counted(servers: list[RunningServer]) -> None:
    model = replicated(servers, concurrency=4)
    gens = generate(model, [req(f"question {i}") for i in range(60)])
    assert [g.text for g in gens] == [f"ECHO: question {i}" for i in range(60)]
    served = [len(s.requests) for s in servers]
    assert sum(served) == 60 and min(served) >= 10  # least-outstanding spreads a concurrent burst
    stats = model.replica_stats()
    assert [s["requests"] for s in stats] == served and all(s["errors"] == 0 for s in stats)
    assert [s["url"] for s in stats] == [s.url for s in servers]
    assert model.reported_models() == {"tunesafe-test": 60}  # the replies' model ids, over all replicas


def test_a_failed_replica_is_taken_out_and_its_work_served_elsewhere(servers: list[RunningServer]) -> None:
    model = replicated(servers, max_retries=2, breaker=2, cooldown=60, concurrency=4)
    servers[1].app.go_down()
    gens = generate(model, [req(f"q{i}") for i in range(40)])
    assert all(g.error is None for g in gens)  # fail closed still holds: no answer is invented
    stats = model.replica_stats()
    served = [s["requests"] - s["errors"] for s in stats]
    assert served[1] == 0 and served[0] + served[2] == 40
    assert stats[1]["errors"] + stats[1]["moved_away"] >= 1  # it was tried, then taken out


def test_a_replica_comes_back_after_its_trial_succeeds(servers: list[RunningServer]) -> None:
    model = replicated(servers[:2], max_retries=1, breaker=1, cooldown=0.1, concurrency=2)
    servers[0].app.go_down(0.3)

    async def main() -> tuple[list[Generation], list[Generation]]:
        try:
            first = await model.generate([req(f"a{i}") for i in range(10)])
            await asyncio.sleep(0.5)  # down time over, cooldown passed: the next request is its trial
            second = await model.generate([req(f"b{i}") for i in range(40)])
            return first, second
        finally:
            await model.aclose()

    first, second = asyncio.run(main())
    assert all(g.error is None for g in first + second)
    assert any(r["messages"][-1]["content"].startswith("b") for r in servers[0].requests)


def test_every_replica_down_pauses_then_stops_resumably(servers: list[RunningServer]) -> None:
    model = replicated(servers[:2], max_retries=1, breaker=1, cooldown=0.05, max_pause=0.3, concurrency=2)
    for s in servers[:2]:
        s.app.go_down()
    with pytest.raises(EndpointUnavailable, match="every replica"):
        generate(model, [req("x"), req("y")])


def test_a_prompt_that_fails_everywhere_is_an_error_not_an_answer(servers: list[RunningServer]) -> None:
    model = replicated(servers[:2], max_retries=0, breaker=50)
    for s in servers[:2]:
        s.inject("500", times=1)
    (gen,) = generate(model, [req("only one")])
    assert gen.error is not None and gen.text == ""


def test_replicas_that_report_different_models_are_refused() -> None:
    with serve(model="tunesafe-test") as a, serve(model="tunesafe-test") as b:
        a.app.config = type(a.app.config)(model="tunesafe-test")
        model = replicated([a, b])
        model.content_hash()  # same entry: accepted, the ids recorded
        assert [s["model_id"] for s in model.replica_stats()] == ["tunesafe-test", "tunesafe-test"]
        b.app.config = type(b.app.config)(model="other-weights")
        with pytest.raises(UserError, match="different models"):
            replicated([a, b]).content_hash()


def test_a_replica_whose_replies_name_another_model_stops_the_run(servers: list[RunningServer]) -> None:
    # a replica misrouted to other weights lists the same /v1/models entry, so the hash cannot tell; the
    # replies' model ids can, and answers of two models must not make one run
    servers[1].app.config.reported_model = "other-weights"
    model = replicated(servers[:2], concurrency=2)
    with pytest.raises(UserError, match="other-weights") as info:
        generate(model, [req(f"q{i}") for i in range(20)])
    assert servers[1].url in info.value.message and servers[0].url in info.value.message
    stats = model.replica_stats()  # which replica answered as which model
    assert [set(s["reported_models"]) for s in stats] == [{"tunesafe-test"}, {"other-weights"}]


def test_replicas_whose_replies_all_name_one_snapshot_agree(servers: list[RunningServer]) -> None:
    for s in servers:  # a provider's own name for the model, the same on every replica: no mismatch
        s.app.config.reported_model = "tunesafe-test-2024-08-06"
    model = replicated(servers, concurrency=2)
    assert all(g.ok for g in generate(model, [req(f"q{i}") for i in range(12)]))
    assert model.reported_models() == {"tunesafe-test-2024-08-06": 12}


@pytest.mark.parametrize("ref, message", [
    ("openai:m@http://127.0.0.1:1/v1,ftp://x/v1", "bad replica URL"),
    ("openai:m@http://127.0.0.1:1/v1,http://127.0.0.1:1/v1", "listed twice"),
    ("openai:m@http://127.0.0.1:1/v1,", "bad replica URL"),
])
def test_bad_replica_lists_are_one_error(ref: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_model(ref)


def test_a_comma_in_a_password_does_not_split_a_replica(servers: list[RunningServer]) -> None:
    # RFC 3986 allows ',' unescaped in userinfo: only a comma before another URL separates replicas
    secret = "pw,s3cr3t"
    basic = "Basic " + base64.b64encode(f"alice:{secret}".encode()).decode()
    urls = [s.url.replace("http://", f"http://alice:{secret}@") for s in servers[:2]]
    single = load_model(f"openai:tunesafe-test@{urls[0]}")
    assert isinstance(single, OpenAIChatModel) and single.ref == f"openai:tunesafe-test@{servers[0].url}"
    model = load_model(f"openai:tunesafe-test@{','.join(urls)}")
    assert isinstance(model, ReplicatedChatModel)
    assert model.ref == f"openai:tunesafe-test@{servers[0].url},{servers[1].url}"
    assert all(g.ok for g in generate(model, [req(f"q{i}") for i in range(6)]))
    assert all(s.app.auth_headers and set(s.app.auth_headers) == {basic} for s in servers[:2])
    with pytest.raises(UserError, match="bad replica URL") as info:
        load_model(f"openai:m@{urls[0]},ftp://x/v1")
    assert "s3cr3t" not in info.value.render() and "ftp://x/v1" in info.value.render()
