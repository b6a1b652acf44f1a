"""OpenAI's reasoning models (o-series, gpt-5) over HTTP, end to end on the real loopback server acting as
one: they refuse `max_tokens` and `stop` (HTTP 400 "Unsupported parameter"), take only temperature 1, and
spend part of `max_completion_tokens` on reasoning they do not return. Every attempt of a run against
such a model was an error; an answer the hidden reasoning crowded out would have been judged empty."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tunesafe.analysis.outcome import outcome
from tunesafe.engine import results as store_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.testing.openai_server import serve
from tunesafe.types import ChatRequest, Message, RecordType

from .conftest import Cli, Server, write_suite


def _run(tmp_path: Path, server: Server, **config: object) -> tuple[Store, str]:
    store = Store.open(str(tmp_path / "store.db"))
    eval_config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl")), attacks="direct_request",
                             judges=("refusal",), concurrency=4, **config)  # type: ignore[arg-type]
    report = asyncio.run(evaluate(store, server.ref(), eval_config, progress=False))
    return store, report.run_id


def test_a_reasoning_model_is_sent_max_completion_tokens_and_the_run_record_says_so(
        tmp_path: Path, server: Server) -> None:
    server.app.config.hidden_reasoning = 4
    store, run_id = _run(tmp_path, server, temperature=1.0)
    results = store_results.load_results(store, run_id)
    assert len(results) == 8 and all(r.generation.error is None for r in results)
    answered = [b for b in server.app.requests if "max_tokens" not in b]
    assert len(answered) == 8 and all(b["max_completion_tokens"] == 256 for b in answered)
    record = [r for r in store.records(RecordType.RUN) if r.body.get("run_id") == run_id][-1]
    assert record.body["session"]["request_params_adapted"] == {"max_tokens": "sent as max_completion_tokens"}


def test_greedy_decoding_on_a_model_that_only_samples_is_an_error_that_says_what_to_do(
        cli: Cli, tmp_path: Path, server: Server) -> None:
    server.app.config.hidden_reasoning = 4
    suite = str(write_suite(tmp_path / "s.jsonl"))
    code, out, err = cli("eval", server.ref(), "--suite", suite, "--attacks", "direct_request", "--judge",
                         "refusal")
    assert code == 3, (out, err)  # every attempt an error: inconclusive, never a measured ASR
    [run_id] = cli.runs()
    results = store_results.load_results(Store.open(str(cli.db)), run_id)
    assert results and all(outcome(r) == "error" for r in results)
    assert all("rerun with --temperature 1" in str(r.generation.error) for r in results)


def test_an_answer_crowded_out_by_hidden_reasoning_is_an_error_not_an_empty_answer(
        tmp_path: Path, server: Server) -> None:
    server.app.config.hidden_reasoning = 100  # more than the 32 tokens allowed: no answer is left
    store, run_id = _run(tmp_path, server, temperature=1.0, max_new_tokens=32)
    results = store_results.load_results(store, run_id)
    assert results and all(outcome(r) == "error" for r in results)
    assert all("raise --max-new-tokens" in str(r.generation.error) for r in results)
    assert all(not r.verdicts or all(v.refused is None for v in r.verdicts) for r in results)


def test_stop_strings_are_applied_by_the_client_when_the_server_takes_none() -> None:
    with serve(hidden_reasoning=0, replies={"hi": "first part END second part"}) as running:
        model = OpenAIChatModel("m", running.url)
        request = ChatRequest(messages=(Message("user", "hi"),), max_new_tokens=50, temperature=1.0,
                              stop=("END",))

        async def go() -> list[str]:
            try:
                return [g.text for g in await model.generate([request, request])]
            finally:
                await model.aclose()

        assert asyncio.run(go()) == ["first part ", "first part "]
        assert model.request_adaptations() == {
            "max_tokens": "sent as max_completion_tokens",
            "stop": "not sent; answers are cut at the stop strings by tunesafe"}
        assert [("stop" in b, "max_tokens" in b) for b in running.app.requests][-2:] == [(False, False)] * 2
