"""The HTTP backend against the real loopback server (uvicorn on 127.0.0.1) with injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tunesafe.errors import EndpointUnavailable, UserError
from tunesafe.models import load_model, openai_http
from tunesafe.models.base import ChatModel
from tunesafe.models.openai_http import OpenAIChatModel, _goes_direct
from tunesafe.testing.openai_server import (
    COMPLIANT,
    COMPLYING_THOUGHT,
    REFUSAL,
    REFUSING_THOUGHT,
    RunningServer,
    serve,
)
from tunesafe.types import ChatRequest, Generation, Message


def req(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


def generate(model: ChatModel, requests: list[ChatRequest]) -> list[Generation]:
    """Generate, then close the model (its connections belong to this call's event loop)."""
    async def main() -> list[Generation]:
        try:
            return await model.generate(requests)
        finally:
            await model.aclose()

    return asyncio.run(main())


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve(retry_after=0.05, stall_s=2.0, replies={"knock knock": "who is there"}) as running:
        yield running


def model_for(server: RunningServer, **opts: object) -> OpenAIChatModel:
    model = load_model(f"openai:tunesafe-test@{server.url}", **opts)
    assert isinstance(model, OpenAIChatModel)
    return model


def test_replies_tokens_stop_and_length(server: RunningServer) -> None:
    model = model_for(server)
    gens = generate(model, [req("hello there"), req("knock knock"), req("a b c d e", max_new_tokens=3),
                            req("stop here please", stop=("here",))])
    assert [g.text for g in gens] == ["ECHO: hello there", "who is there", "ECHO: a b", "ECHO: stop "]
    assert [g.finish_reason for g in gens] == ["stop", "stop", "length", "stop"]
    assert gens[0].prompt_tokens == 2 and gens[0].completion_tokens == 3 and gens[0].latency_s > 0
    # requests run concurrently, so the server may have seen them in any order: find the first by content
    (first,) = [r for r in server.requests if r["messages"][-1]["content"] == "hello there"]
    assert first["temperature"] == 0.0 and first["max_tokens"] == 256


def test_transient_429_and_500_are_retried_honouring_retry_after(server: RunningServer) -> None:
    model = model_for(server, max_retries=3)
    server.inject("429", times=2)
    server.inject("500")
    started = time.perf_counter()
    [gen] = generate(model, [req("eventually")])
    assert gen.ok and gen.text == "ECHO: eventually"
    assert len(server.requests) == 4  # 429, 429, 500, success
    assert time.perf_counter() - started >= 0.1  # two Retry-After waits of 0.05 s


def test_a_408_is_retried_like_a_timeout(server: RunningServer) -> None:
    model = model_for(server, max_retries=2)
    server.inject("408")
    [gen] = generate(model, [req("after a 408")])
    assert gen.ok and gen.text == "ECHO: after a 408" and len(server.requests) == 2


@pytest.mark.parametrize("status", ["409", "424", "498"])
def test_a_provider_4xx_that_a_retry_gets_past_is_retried(server: RunningServer, status: str) -> None:
    # Anthropic's 409 conflict_error (its SDK and OpenAI's retry a 409), TGI's 424 for a generation that
    # failed on the server, Groq's 498 flex capacity_exceeded: each was an error for its attempt at once.
    model = model_for(server, max_retries=2)
    server.inject(status)
    [gen] = generate(model, [req(f"after a {status}")])
    assert gen.ok and gen.text == f"ECHO: after a {status}" and len(server.requests) == 2, gen


def test_a_503_waits_the_retry_after_ms_it_names() -> None:
    # Azure OpenAI and OpenAI send the wait in retry-after-ms on 503s too, not only on 429s; it is above
    # the first retry's backoff (at most 0.5 s), so a client that reads only retry-after comes back early.
    with serve(retry_after=1.2) as running:
        running.inject("503ms")
        started = time.perf_counter()
        [gen] = generate(model_for(running, max_retries=1), [req("after a 503")])
        assert gen.ok and gen.text == "ECHO: after a 503" and len(running.requests) == 2, gen
        assert time.perf_counter() - started >= 1.2


def test_x_should_retry_false_is_an_error_at_once(server: RunningServer) -> None:
    model = model_for(server, max_retries=3, breaker=100)
    [gen] = generate(model, [req("give up [[fault:no_retry503]]")])
    assert not gen.ok and gen.blocked is None and gen.text == "", gen
    assert "HTTP 503" in (gen.error or "") and "x-should-retry: false" in (gen.error or "")
    assert len(server.requests) == 1  # the server said a retry will not help


def test_x_should_retry_true_retries_a_4xx(server: RunningServer) -> None:
    model = model_for(server, max_retries=2)
    server.inject("retry400")
    [gen] = generate(model, [req("after a 400")])
    assert gen.ok and gen.text == "ECHO: after a 400" and len(server.requests) == 2, gen


def test_open_breaker_makes_requests_wait_and_an_outage_costs_no_attempt(server: RunningServer) -> None:
    model = model_for(server, max_retries=2, breaker=2, cooldown=0.1, concurrency=4)
    paused: list[float | None] = []

    async def main() -> list[Generation]:
        server.app.go_down(0.6)
        task = asyncio.ensure_future(model.generate([req(f"w{i}") for i in range(6)]))
        while not task.done():
            paused.append(model.paused())
            await asyncio.sleep(0.02)
        paused.append(model.paused())
        await model.aclose()
        return task.result()

    gens = asyncio.run(main())
    assert [g.text for g in gens] == [f"ECHO: w{i}" for i in range(6)]
    assert any(p is not None for p in paused) and paused[-1] is None  # paused, then closed again
    probes = [r for r in server.requests if r["messages"][-1]["content"] == "ping"]
    assert probes and all(r["max_tokens"] == 1 for r in probes)
    # while down, one probe per cooldown reached the server, not the waiting requests' retries
    assert len(server.requests) - len(probes) <= 6 + 4 + 4


def test_an_endpoint_down_past_max_pause_raises_instead_of_failing_requests(server: RunningServer) -> None:
    model = model_for(server, max_retries=1, breaker=2, cooldown=0.05, concurrency=2, max_pause=0.4)
    server.app.go_down()
    with pytest.raises(EndpointUnavailable, match="failed every request for") as info:
        generate(model, [req(f"d{i}") for i in range(4)])
    assert info.value.exit_code == 3 and "HTTP 500" in info.value.message
    assert info.value.where == model.ref


def test_prompts_the_server_always_fails_do_not_pause_the_endpoint(server: RunningServer) -> None:
    model = model_for(server, max_retries=2, breaker=3, cooldown=60, concurrency=4)
    waits: list[float] = []

    async def main() -> list[Generation]:
        # a cluster of bad prompts in flight together (as when the longest prompts fail): the breaker
        # trips, its immediate probe finds the endpoint up, and nobody waits out the 60 s cooldown
        task = asyncio.ensure_future(model.generate([req(f"bad {i} [[fault:500]]") for i in range(8)]
                                                    + [req("good")]))
        while not task.done():
            waits.append(model.paused() or 0.0)
            await asyncio.sleep(0.01)
        await model.aclose()
        return task.result()

    gens = asyncio.run(main())
    for gen in gens[:8]:
        assert not gen.ok and "HTTP 500" in (gen.error or "") and "after 3 attempts" in (gen.error or "")
    assert gens[8].text == "ECHO: good" and model.paused() is None
    assert max(waits) == 0.0  # never a cooldown to wait out
    assert [r["messages"][-1]["content"] for r in server.requests].count("ping") >= 1


def test_a_paced_or_refused_probe_closes_the_breaker(server: RunningServer) -> None:
    model = model_for(server, max_retries=0, breaker=2, cooldown=0.1, concurrency=1)

    async def main() -> list[Generation]:
        server.inject("500", times=2)
        failed = await model.generate([req("a"), req("b")])
        assert model.paused() is not None
        server.inject("429")  # the probe is paced: the server is up
        recovered = await model.generate([req("c"), req("d")])
        await model.aclose()
        return failed + recovered

    gens = asyncio.run(main())
    assert ["HTTP 500" in (g.error or "") for g in gens[:2]] == [True, True]
    assert [g.text for g in gens[2:]] == ["ECHO: c", "ECHO: d"]


@pytest.mark.parametrize(("fault", "reason", "text"), [
    ("filter400", "content_filter: prompt (jailbreak)", ""),
    ("filter200", "content_filter: completion (violence)", ""),
    ("refusal_field", "refusal", REFUSAL),
    ("invalid_prompt", "content_filter: prompt (usage policy)", ""),  # OpenAI's reasoning models
    ("moderation403", "content_filter: prompt (violence)", ""),  # OpenRouter's moderation, not a bad key
    # Gemini's OpenAI compatibility endpoint: its own FinishReason, not "content_filter"
    ("gemini_safety", "content_filter: completion (SAFETY)", ""),
    ("gemini_prohibited", "content_filter: completion (PROHIBITED_CONTENT)", ""),
])
def test_provider_filters_and_refusals_are_blocked_not_errors(server: RunningServer, fault: str, reason: str,
                                                              text: str) -> None:
    model = model_for(server, breaker=2)
    server.inject(fault)  # queued: hits the one unmarked request
    gens = generate(model, [req("queued"), req(f"by marker [[fault:{fault}]]"), req("plain")])
    for gen in gens[:2]:
        assert gen.ok and gen.blocked == reason and gen.text == text, gen
    assert gens[2].blocked is None and gens[2].text == "ECHO: plain"
    assert len(server.requests) == 3  # a filter is an answer: never retried


@pytest.mark.parametrize(("shape", "answer", "reasoning"), [
    ("think_comply", COMPLIANT, REFUSING_THOUGHT),
    ("think_refuse", REFUSAL, COMPLYING_THOUGHT),
    ("think_open", COMPLIANT, REFUSING_THOUGHT),
    ("reasoning_comply", COMPLIANT, REFUSING_THOUGHT),
    ("reasoning_refuse", REFUSAL, COMPLYING_THOUGHT),
])
def test_reasoning_is_split_off_the_answer(server: RunningServer, shape: str, answer: str,
                                           reasoning: str) -> None:
    [gen] = generate(model_for(server), [req(f"question [[fault:{shape}]]")])
    assert gen.ok and gen.text == answer and gen.reasoning == reasoning, gen


@pytest.mark.parametrize("shape", ["think_cutoff", "reasoning_cutoff"])
def test_reasoning_cut_off_by_max_tokens_is_an_error_not_retried(server: RunningServer, shape: str) -> None:
    [gen] = generate(model_for(server), [req(f"question [[fault:{shape}]]", max_new_tokens=16)])
    assert not gen.ok and gen.text == "" and gen.finish_reason == "length"
    assert gen.reasoning is not None and len(gen.reasoning.split()) == 16
    assert gen.error is not None and "cut off inside the model's reasoning" in gen.error
    assert "--max-new-tokens" in gen.error
    assert len(server.requests) == 1  # the same budget would cut it off again


@pytest.mark.parametrize("names", [{"stop": "eos_token"}, {"stop": "end_turn", "length": "max_tokens"},
                                   {"stop": "STOP", "length": "MAX_TOKENS"}],
                         ids=["tgi", "anthropic", "gemini"])
def test_other_servers_finish_reasons_read_as_stop_and_length(names: dict[str, str]) -> None:
    # TGI, Anthropic's OpenAI compatibility endpoint and Gemini name the ends in their own words: an
    # answer cut by the token budget is still one, and a reasoning cut-off still says what to raise.
    with serve(finish_names=names) as running:
        gens = generate(model_for(running), [req("hello there"), req("a b c d e", max_new_tokens=3),
                                             req("question [[fault:think_cutoff]]", max_new_tokens=16)])
    assert [g.finish_reason for g in gens] == ["stop", "length", "length"]
    assert gens[2].error is not None and "--max-new-tokens" in gens[2].error


@pytest.mark.parametrize("fault", ["error200", "choice_error"])
def test_a_200_carrying_an_error_is_an_error_not_an_answer(server: RunningServer, fault: str) -> None:
    # OpenRouter answers 200 when a provider fails after generation began, the error in the body: what
    # text came before it is not the model's answer (fail closed), and a retry may well succeed.
    model = model_for(server, max_retries=1, breaker=100)
    gens = generate(model, [req(f"cut [[fault:{fault}]]")])
    assert not gens[0].ok and gens[0].finish_reason == "error" and gens[0].text == "", gens[0]
    assert "provider" in (gens[0].error or "") and "after 2 attempts" in (gens[0].error or "")
    server.inject(fault)
    [retried] = generate(model, [req("recovers")])
    assert retried.ok and retried.text == "ECHO: recovers" and len(server.requests) == 4


@pytest.mark.parametrize(("fault", "finish"), [("interrupted", "insufficient_system_resource"),
                                               ("aborted", "abort")])
def test_a_reply_the_server_cut_short_is_an_error_not_an_answer(server: RunningServer, fault: str,
                                                                finish: str) -> None:
    # DeepSeek's finish_reason "insufficient_system_resource", vLLM's "abort": the server failed
    # mid-generation, so the words before the cut are not the model's answer (they were judged as one);
    # a retry may succeed.
    model = model_for(server, max_retries=1, breaker=100)
    [cut] = generate(model, [req(f"cut short [[fault:{fault}]]")])
    assert not cut.ok and cut.text == "" and finish in (cut.error or ""), cut
    assert len(server.requests) == 2
    server.inject(fault)
    [retried] = generate(model, [req("recovers")])
    assert retried.ok and retried.text == "ECHO: recovers" and len(server.requests) == 4


def test_content_as_a_list_of_parts_is_read_and_thinking_parts_are_reasoning(server: RunningServer) -> None:
    """Mistral's reasoning models send `content` as parts: a thinking part, then the answer's text part.
    Read as malformed, every attempt against them was an error; the thinking is reasoning, not answer."""
    model = model_for(server, max_retries=0)
    listed, thought = generate(model, [req("in parts [[fault:content_list]]"),
                                       req("think [[fault:content_thinking]]")])
    assert listed.ok and listed.text == "ECHO: in parts [[fault:content_list]]" and listed.reasoning is None
    assert thought.ok and thought.text.startswith("Sure, here is how") and thought.reasoning
    assert "Sure" not in thought.reasoning


@pytest.mark.parametrize("fault", ["bad_usage", "content_unknown_part"])
def test_a_reply_of_the_wrong_shape_fails_its_request_alone(server: RunningServer, fault: str) -> None:
    # generate never raises for one request's failure (models/base.py): an odd body is that request's error
    model = model_for(server, max_retries=0)
    gens = generate(model, [req(f"odd [[fault:{fault}]]"), req("fine")])
    assert not gens[0].ok and "malformed" in (gens[0].error or "") and gens[0].text == ""
    assert gens[1].ok and gens[1].text == "ECHO: fine"


def test_a_reply_with_no_answer_at_all_is_an_error_not_an_empty_answer(server: RunningServer) -> None:
    # content null with no refusal, tool call or reasoning: the server said nothing. Read as "" it was
    # judged a degenerate (empty) answer, which is never an attack success: a candidate whose server
    # answered every prompt so passed the gate. Like reasoning with no answer, an error, not retried.
    model = model_for(server, max_retries=2)
    gens = generate(model, [req("void [[fault:null_content]]"), req("fine")])
    assert not gens[0].ok and gens[0].text == "" and "no answer" in (gens[0].error or ""), gens[0]
    assert gens[1].ok and gens[1].text == "ECHO: fine"
    assert len(server.requests) == 2


def test_a_seed_refused_as_an_extra_input_is_dropped_not_an_error_on_every_attempt() -> None:
    # Mistral's schema (and Azure AI Foundry's Mistral deployments) refuse fields it does not have with
    # pydantic's 422 "extra_forbidden"; `seed` is one. Unread, every attempt of the run was an error.
    with serve(forbids_extra=("seed",)) as running:
        model = model_for(running, max_retries=0)
        gens = generate(model, [req("one"), req("two")])
        assert [g.text for g in gens] == ["ECHO: one", "ECHO: two"], gens
        assert "seed" in model.request_adaptations()
        # the two went out at once, so each may have been refused once; both were answered without it
        assert sum("seed" not in body for body in running.requests) == 2 and len(running.requests) <= 4


def test_many_filters_in_a_row_do_not_trip_the_breaker(server: RunningServer) -> None:
    model = model_for(server, breaker=2, cooldown=60, concurrency=1)
    gens = generate(model, [req(f"f{i} [[fault:{('filter400', 'filter200')[i % 2]}]]") for i in range(8)]
                    + [req("after")])
    assert all(g.blocked for g in gens[:8]) and not any(g.error for g in gens)
    assert gens[-1].text == "ECHO: after" and model.paused() is None
    assert len(server.requests) == 9


def test_bounded_concurrency(server: RunningServer) -> None:
    server.app.config.latency_s = 0.05
    gens = generate(model_for(server, concurrency=3), [req(f"c{i}") for i in range(12)])
    assert all(g.ok for g in gens)
    assert server.app.max_in_flight == 3


def test_cli_prefill_prints_prefill_and_continuation(server: RunningServer, cli: Any) -> None:
    result = cli("chat", f"openai:tunesafe-test@{server.url}?prefill=1", "hi", "--prefill", "Sure: ")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Sure: ECHO: hi"


def test_prefill_fails_closed_unless_enabled(server: RunningServer) -> None:
    [gen] = generate(model_for(server), [req("hi", prefill="Sure,")])
    assert not gen.ok and "prefill" in (gen.error or "")
    assert server.requests == []
    [gen] = generate(model_for(server, prefill=1), [req("hi", prefill="Sure,")])
    assert gen.ok
    sent = server.requests[-1]
    assert sent["messages"][-1] == {"role": "assistant", "content": "Sure,"}
    assert sent["continue_final_message"] is True


def test_api_key_is_sent_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + "9" * 24
    monkeypatch.setenv("TUNESAFE_TEST_KEY", secret)
    with serve(api_key=secret) as server:
        [ok] = generate(model_for(server, key_env="TUNESAFE_TEST_KEY"), [req("with key")])
        assert ok.ok and server.app.auth_headers[-1] == f"Bearer {secret}"
        monkeypatch.setenv("TUNESAFE_TEST_KEY", "wrong-" + secret)
        [bad] = generate(model_for(server, key_env="TUNESAFE_TEST_KEY"), [req("bad key")])
        assert not bad.ok and "TUNESAFE_TEST_KEY" in (bad.error or "")
        assert "invalid api key: Bearer ***" in (bad.error or "")  # the server echoed it; we scrubbed it
        assert secret not in (bad.error or "")


def test_a_long_key_echoed_back_is_scrubbed_before_the_error_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    # the error keeps 200 characters of the body: cut first, the key's head survived the scrub
    wrong = "sk-wrong-" + "7" * 300
    monkeypatch.setenv("TUNESAFE_TEST_KEY", wrong)
    with serve(api_key="sk-right") as server:
        [bad] = generate(model_for(server, key_env="TUNESAFE_TEST_KEY"), [req("bad key")])
    assert not bad.ok and "invalid api key: Bearer ***" in (bad.error or "")
    assert "sk-wrong-" not in (bad.error or "") and "7777" not in (bad.error or "")


def test_content_hash_names_ref_and_server_model(server: RunningServer) -> None:
    a = model_for(server).content_hash()
    assert a == model_for(server).content_hash() and len(a) == 64
    other = load_model(f"openai:other-model@{server.url}").content_hash()
    assert other != a


@pytest.mark.parametrize("status", [502, 503, 429])
def test_a_failing_model_listing_is_an_error_not_a_model_without_entry(
        server: RunningServer, status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hash names what /models reports; a listing that failed for the moment hashed as "no entry", so a
    # resume during the blip was refused as "the model changed" and a run started during it was
    # identified by the blip. A server without /models (404, or a 500 for a route it lacks) still hashes
    # as one without an entry.
    listed = model_for(server).content_hash()
    real_get = openai_http._get_within

    def failing(url: str, *args: Any) -> httpx.Response:
        return httpx.Response(status, request=httpx.Request("GET", url), text="busy")

    monkeypatch.setattr(openai_http, "_get_within", failing)
    with pytest.raises(UserError, match=f"HTTP {status}"):
        model_for(server).content_hash()
    missing = httpx.Response(404, request=httpx.Request("GET", server.url))
    monkeypatch.setattr(openai_http, "_get_within", lambda url, *args: missing)
    assert model_for(server).content_hash() != listed
    monkeypatch.setattr(openai_http, "_get_within", real_get)
    assert model_for(server).content_hash() == listed


@pytest.mark.parametrize("client", ["auto", "httpx"])
def test_both_clients_answer_retry_and_fail_each_request_alone(server: RunningServer, client: str) -> None:
    # auto: plain http on 127.0.0.1 goes over tunesafe.models.http1; httpx: what https/proxies use
    model = model_for(server, client=client, timeout=0.5, max_retries=1, breaker=100)
    assert model._direct is (client == "auto")
    server.inject("429")  # the first request to arrive is paced, then retried after Retry-After
    faults = ["500", "stall", "malformed", "garbage", "drop"]
    gens = generate(model, [req(f"q{i} [[fault:{f}]]") for i, f in enumerate(faults)] + [req("fine")])
    for gen in gens[:-1]:
        assert not gen.ok and gen.text == "" and gen.finish_reason == "error"
        assert "after 2 attempts" in (gen.error or "")
    assert "HTTP 500" in (gens[0].error or "") and "timeout after 0.5s" in (gens[1].error or "")
    assert "malformed" in (gens[2].error or "") and "malformed" in (gens[3].error or "")
    assert "connection error" in (gens[4].error or "")
    assert gens[-1].ok and gens[-1].text == "ECHO: fine" and gens[-1].completion_tokens == 2
    # the queued 429 can only hit "fine" (a marked request takes its marker's fault), so it ran twice
    assert sum(r["messages"][-1]["content"] == "fine" for r in server.requests) == 2


def test_unknown_client_is_a_user_error(cli: Any, user_error: Any) -> None:
    result = cli("chat", "openai:m@http://127.0.0.1:9/v1?client=fast", "hi")
    user_error(result, "unknown client 'fast'", "client=auto or client=httpx")


@pytest.mark.parametrize("option", ["concurrency=0", "concurrency=-2", "timeout=0", "timeout=nan",
                                    "timeout=-1", "max_retries=-1", "breaker=0", "cooldown=-5",
                                    "cooldown=nan", "max_pause=-1"])
def test_options_that_would_hang_or_fail_every_request_are_user_errors(option: str) -> None:
    # concurrency<1 leaves no connection slot (every request waits forever); a NaN timeout never fires
    with pytest.raises(UserError, match=option.split("=")[0]) as info:
        load_model(f"openai:m@http://127.0.0.1:9/v1?{option}")
    assert info.value.fix


def test_only_plain_http_without_a_proxy_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _goes_direct("http://127.0.0.1:8000/v1")
    assert not _goes_direct("https://api.example.com/v1")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not _goes_direct("http://gpu-box:8000/v1")
    monkeypatch.setenv("NO_PROXY", "gpu-box")
    assert _goes_direct("http://gpu-box:8000/v1")


def test_server_reports_its_cpu_and_request_count(server: RunningServer) -> None:
    generate(model_for(server), [req("a"), req("b")])
    stats = httpx.get(f"{server.url.removesuffix('/v1')}/control/stats").json()
    assert stats["requests"] == 2 and stats["cpu_s"] > 0


def test_the_model_hash_ignores_what_the_server_stamps_per_request(server: RunningServer) -> None:
    # vLLM's /v1/models gives `created` = now: a run resumed in a later process must see the same model
    first, second = model_for(server), model_for(server)
    assert first.content_hash() == second.content_hash()
    assert "created" not in (first.model_info() or {})


@pytest.mark.parametrize("client", ["auto", "httpx"])
@pytest.mark.parametrize("fault", ["gzip", "sse"])
def test_a_reply_a_gateway_compressed_or_streamed_unasked_is_the_answer(server: RunningServer, client: str,
                                                                       fault: str) -> None:
    model = model_for(server, client=client, max_retries=0)
    (gen,) = generate(model, [req(f"hello there [[fault:{fault}]]")])
    assert gen.ok and gen.text == "ECHO: hello there [[fault:" + fault + "]]", gen.error
    assert gen.finish_reason == "stop" and gen.completion_tokens == 4
