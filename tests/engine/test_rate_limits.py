"""A rate-limited endpoint (HTTP 429) is a healthy one asking the client to slow down: the run waits and
loses no attempt. Against the real loopback server with a request-rate bucket, as hosted APIs limit
requests and tokens per minute, with and without a wait hint in the reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tunesafe.analysis.outcome import outcome
from tunesafe.engine import results as store_results
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence.store import Store

from .conftest import Server, write_suite


@pytest.mark.parametrize("hint", [False, True], ids=["no-hint", "retry-after-ms"])
def test_a_rate_limited_endpoint_costs_time_not_attempts(tmp_path: Path, server: Server, hint: bool) -> None:
    server.app.config.rate_limit, server.app.config.rate_limit_hint = 6.0, hint
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=30)), attacks="direct_request",
                        judges=("refusal",), concurrency=16)
    report = asyncio.run(evaluate(store, server.ref(), config, progress=False))
    results = store_results.load_results(store, report.run_id)
    assert server.app.rate_limited > 16  # the limit was hit, many times over
    assert len(results) == 32 and not [r.generation.error for r in results if outcome(r) == "error"]


def test_a_limit_that_never_lifts_is_an_error_after_max_pause(tmp_path: Path, server: Server) -> None:
    """Fail closed: waiting is bounded by max_pause, and an attempt that never got through is an error."""
    server.app.config.rate_limit = 0.2  # one request per five seconds
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=6)), attacks="direct_request",
                        judges=("refusal",), concurrency=8, max_pause=2.0)
    report = asyncio.run(evaluate(store, server.ref(), config, progress=False))
    errors = [r.generation.error for r in store_results.load_results(store, report.run_id)
              if outcome(r) == "error"]
    assert errors and all("rate limited" in str(e) and "429" in str(e) for e in errors)


@pytest.mark.parametrize("status", [429, 529], ids=["429", "529-overloaded"])
def test_a_server_that_takes_few_requests_at_once_loses_no_attempt(tmp_path: Path, server: Server,
                                                                  status: int) -> None:
    """Concurrency 64 against a server that handles 4 requests at once and refuses the rest (a concurrency
    limit's 429, an overloaded service's 529), without a hint: every attempt is answered in the end."""
    server.app.config.max_concurrent, server.app.config.busy_status = 4, status
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=60, n_benign=4)),
                        attacks="direct_request,prefix_injection", judges=("refusal",), concurrency=64)
    report = asyncio.run(evaluate(store, server.ref(), config, progress=False))
    results = store_results.load_results(store, report.run_id)
    assert server.app.busy > 64 and server.app.max_in_flight <= 4  # most of a burst was refused
    assert len(results) == store_results.load_run(store, report.run_id).n_planned > 64
    assert not [r.generation.error for r in results if outcome(r) == "error"]
