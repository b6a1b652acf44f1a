"""A deployed HTTP endpoint's ways of saying no or falling over, end to end on the real loopback server and
a real store: provider filters are an outcome (`blocked`), never errors; a failing endpoint pauses the
run instead of burning it; past --max-pause the run stops resumably; --retry-errors re-runs errored
attempts (the newest result counts, the old stay as history); eval exits 3 above max_error_rate."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunesafe.analysis.outcome import outcome
from tunesafe.engine import results as store_results
from tunesafe.engine.progress import RunProgress
from tunesafe.engine.runner import EvalConfig, evaluate
from tunesafe.evidence import database
from tunesafe.evidence.store import Store
from tunesafe.testing.fault_suite import MARKER, write_marked_suite
from tunesafe.types import Attempt, AttemptResult, Generation, Message, RecordType, Verdict

from .conftest import Cli, Server

ATTACKS = "direct_request,prefix_injection"  # both keep the request's text (and its fault marker) as is
FILTERS = ("filter400", "filter200", "refusal_field")


def marked(result: AttemptResult) -> bool:
    return MARKER in result.attempt.messages[-1].content


def _evaluate(store: Store, ref: str | None, config: EvalConfig, **kw: Any) -> Any:
    return asyncio.run(evaluate(store, ref, config, progress=False, **kw))


def test_every_filter_shape_is_a_blocked_outcome_with_no_error(tmp_path: Path, server: Server) -> None:
    marks = {i: FILTERS[i % 3] for i in range(0, 12, 2)} | {13: "filter400"}  # one benign prompt too
    suite = write_marked_suite(tmp_path / "s.jsonl", 12, marks)
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(suite), attacks=ATTACKS, judges=("refusal", "default"), concurrency=4)
    report = _evaluate(store, server.ref(breaker="2"), config)
    results = store_results.load_results(store, report.run_id)
    blocked = [r for r in results if marked(r)]
    assert len(blocked) >= 2 * len(marks) and report.summary.overall.outcomes["error"] == 0
    assert report.summary.overall.outcomes["blocked"] == len(blocked)
    for r in blocked:
        assert outcome(r) == "blocked" and r.generation.error is None
        # both judges say blocked, neither judged an answer
        assert [v.evidence["blocked"] for v in r.verdicts] == [r.generation.blocked] * 2
        assert all(v.refused is True for v in r.verdicts)
    reasons = {r.generation.blocked for r in blocked}
    assert reasons == {"content_filter: prompt (jailbreak)", "content_filter: completion (violence)",
                       "refusal"}
    assert all(outcome(r) != "blocked" for r in results if not marked(r))
    # each filter answered once: blocked attempts are neither retried nor held by the breaker
    assert len(server.app.requests) == len(results)


def test_an_answer_the_filter_cut_is_judged_and_counts_when_harmful(tmp_path: Path, server: Server) -> None:
    """Azure cuts a completion with finish_reason content_filter but returns what was generated before the
    cut: the user saw that text, so it is judged. A compliant opening to a harmful request is an attack
    success (fail closed), never hidden as `blocked`; the cut answer to a benign request stays blocked."""
    marks = {0: "filter200_cut", 2: "filter200_cut", 13: "filter200_cut"}  # 13: a benign prompt
    suite = write_marked_suite(tmp_path / "s.jsonl", 12, marks)
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(suite), attacks=ATTACKS, judges=("refusal", "default"), concurrency=4)
    report = _evaluate(store, server.ref(), config)
    cut = [r for r in store_results.load_results(store, report.run_id) if marked(r)]
    assert cut and all(r.generation.blocked == "content_filter: completion (violence)" for r in cut)
    harmful = [r for r in cut if r.attempt.kind == "harmful"]
    benign = [r for r in cut if r.attempt.kind != "harmful"]
    assert harmful and benign
    for r in harmful:
        assert r.generation.text.startswith("Sure, here is how")
        assert [outcome(r, j) for j in ("refusal", "default")] == ["success", "success"]
        assert not any(v.refused for v in r.verdicts)
    assert all(outcome(r) == "blocked" for r in benign)
    assert report.summary.overall.outcomes["success"] >= len(harmful)


def test_a_server_whose_template_takes_no_system_message_gets_it_in_the_user_turn(tmp_path: Path,
                                                                                  server: Server) -> None:
    """vLLM serving Gemma-2 answers every request with a system message 400 "System role not supported":
    each such attempt was an error. The client folds the system prompt into the first user turn, as on
    transformers, and the run record says so."""
    server.app.config.system_role = False
    suite = write_marked_suite(tmp_path / "s.jsonl", 6, {})
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(suite), attacks="indirect_retrieved_document", judges=("refusal",),
                        concurrency=4)
    report = _evaluate(store, server.ref(), config)
    assert report.summary.overall.outcomes["error"] == 0 and report.summary.n_attempts >= 6
    answered = [b["messages"] for b in server.app.requests
                if all(m["role"] != "system" for m in b["messages"])]
    assert len(answered) == report.summary.n_attempts
    folded = [m for m in answered if "Retrieved documents" in m[0]["content"]]
    assert len(folded) >= 6 and all(m[0]["role"] == "user" and m[0]["content"].startswith(
        "You answer questions using only") for m in folded)
    record = [r for r in store.records(RecordType.RUN) if r.body.get("run_id") == report.run_id][-1]
    assert record.body["session"]["system_prompt_folded"] is True


def test_eval_and_gate_on_a_filtering_deployment(cli: Cli, tmp_path: Path, server: Server) -> None:
    marks = {i: FILTERS[i % 3] for i in range(0, 30, 3)}
    suite = str(write_marked_suite(tmp_path / "s.jsonl", 30, marks))
    code, out, _ = cli("eval", server.ref("a"), "--suite", suite, "--attacks", ATTACKS, "--judge", "refusal",
                       "--json")
    assert code == 0
    [run_id] = cli.runs()
    results = store_results.load_results(Store.open(str(cli.db)), run_id)
    k, n = sum(marked(r) for r in results), len(results)
    overall = json.loads(out)["summary"]["groups"]["overall"]
    assert k >= 10 and overall["outcomes"]["blocked"] == k and overall["outcomes"]["error"] == 0
    assert (overall["blocked"]["k"], overall["blocked"]["n"]) == (k, n)
    code, out, err = cli("runs", "show", run_id)
    assert code == 0 and f"{k}/{n}" in out  # the table's blocked column (the only count of k out of all n)

    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nmin_attack_families: 1\nmin_items_per_family: 5\nmin_items_per_category: 1"
                      "\nrule_out_regression: false\nmax_error_rate: 0.05\n", encoding="utf-8")
    code, out, err = cli("gate", "--base", server.ref("a"), "--candidate", server.ref("b"), "--suite", suite,
                         "--attacks", ATTACKS, "--judge", "refusal", "--policy", str(policy),
                         "--out", str(tmp_path / "report"), "--no-progress")
    assert code == 0, (out, err)
    decision = json.loads((tmp_path / "report" / "decision.json").read_text())
    assert not any("max_error_rate" in r for r in decision["reasons"])
    assert decision["comparison"]["info"]["blocked"]["candidate"]["k"] == k
    both = f"{k}/{n} ({k / n:.1%})"
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert f"| blocked by the deployment | | {both} | {both} |" in summary
    assert "blocked by the deployment (whole runs)" in (tmp_path / "report" / "report.html").read_text()


def test_a_prompt_level_500_costs_that_prompt_only_and_exits_3(cli: Cli, tmp_path: Path,
                                                               server: Server) -> None:
    # 10% of the prompts fail every time; at concurrency 16 the rest must not be burnt by the breaker
    marks = {i: "500" for i in range(0, 80, 10)}
    suite = str(write_marked_suite(tmp_path / "s.jsonl", 80, marks))
    ref = server.ref(cooldown="1")
    code, _, err = cli("eval", ref, "--suite", suite, "--attacks", ATTACKS, "--judge", "refusal",
                       "--concurrency", "16", "--no-progress")
    assert code == 3, err
    assert re.search(r"warning: error rate 9\.\d% exceeds max_error_rate 5\.0%: the run is inconclusive", err)
    assert "--retry-errors" in err
    [run_id] = cli.runs()
    results = store_results.load_results(Store.open(str(cli.db)), run_id)
    errored = {r.attempt.id for r in results if r.generation.error}
    assert errored == {r.attempt.id for r in results if marked(r)} and len(errored) >= 16
    for r in results:
        if r.generation.error:
            assert "HTTP 500" in r.generation.error and "circuit breaker" not in r.generation.error


def test_an_outage_pauses_the_run_which_then_completes_without_errors(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    original = RunProgress.paused

    def record(self: RunProgress, retry_in: float | None) -> None:
        original(self, retry_in)
        shown.append(self.status)

    monkeypatch.setattr(RunProgress, "paused", record)
    monkeypatch.setattr("tunesafe.engine.executor.PAUSE_POLL_S", 0.05)
    suite = write_marked_suite(tmp_path / "s.jsonl", 20, {})
    store = Store.open(str(tmp_path / "store.db"))
    server.app.go_down(1.5)
    config = EvalConfig(suite=str(suite), attacks=ATTACKS, judges=("refusal",), concurrency=8, max_pause=30)
    report = asyncio.run(evaluate(store, server.ref(breaker="3", cooldown="0.2", max_retries="2"), config,
                                  progress=True))
    assert report.status == "complete" and report.stats["errors"] == 0
    assert report.summary.overall.outcomes["error"] == 0
    assert report.summary.n_attempts == store_results.load_run(store, report.run_id).n_planned
    assert any(re.fullmatch(r"paused: endpoint failing, retry in \d+s", s) for s in shown)
    assert shown[-1] == ""  # and running again once it answered


def test_down_past_max_pause_stops_resumably_then_resume_completes(cli: Cli, tmp_path: Path,
                                                                   server: Server) -> None:
    suite = str(write_marked_suite(tmp_path / "s.jsonl", 40, {}))
    server.app.config.latency_s = 0.03
    def down_part_way() -> None:  # down for good once some attempts are done (not after a fixed time:
        deadline = time.monotonic() + 60  # a loaded machine may not have started the run by then)
        while len(server.app.requests) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.app.go_down()

    timer = threading.Thread(target=down_part_way)
    timer.start()
    ref = server.ref(breaker="2", cooldown="0.1")
    code, _, err = cli("eval", ref, "--suite", suite, "--attacks", ATTACKS, "--judge", "refusal",
                       "--concurrency", "2", "--max-pause", "1", "--no-progress")
    timer.join()
    assert code == 3, err
    [run_id] = cli.runs()
    match = re.search(r"stopped: (\S+): the endpoint failed every request for \d+ s \(last: HTTP 500.*"
                      r"everything done so far is kept, resume with "
                      r"`(tunesafe --db \S+ eval --resume \w+)`", err)
    assert match, err
    assert match.group(1) == ref.split("?")[0] and match.group(2).endswith(run_id)
    store = Store.open(str(cli.db))
    info = store_results.load_run(store, run_id)
    assert info.status == "interrupted" and 0 < info.n_done < info.n_planned and info.n_errors == 0
    code, out, _ = cli("runs", "show", run_id)  # the command it shows reaches this store too
    assert code == 0 and f"incomplete: resume with `{match.group(2)}`" in " ".join(out.split()), out

    server.app.come_back()
    code, _, err = cli(*match.group(2).split()[1:], "--no-progress")
    assert code == 0, err
    info = store_results.load_run(store, run_id)
    assert (info.status, info.n_done, info.n_errors) == ("complete", info.n_planned, 0)


def test_retry_errors_reruns_errored_attempts_keeping_history(cli: Cli, tmp_path: Path,
                                                              server: Server) -> None:
    marks = {i: "500" for i in (1, 4, 7)}
    suite = str(write_marked_suite(tmp_path / "s.jsonl", 10, marks))
    ref = server.ref(max_retries="0")
    code, _, err = cli("eval", ref, "--suite", suite, "--attacks", ATTACKS, "--judge", "refusal")
    assert code == 3 and "exceeds max_error_rate" in err
    [run_id] = cli.runs()
    store = Store.open(str(cli.db))
    first = {r.attempt.id: r for r in store_results.load_results(store, run_id)}
    errored = {i for i, r in first.items() if r.generation.error}
    assert errored == {i for i, r in first.items() if marked(r)}

    server.app.config.markers = False  # the server is fixed
    code, out, err = cli("eval", "--resume", run_id, "--retry-errors", "--json")
    assert code == 0, err
    assert json.loads(out)["summary"]["groups"]["overall"]["outcomes"]["error"] == 0
    newest = {r.attempt.id: r for r in store_results.load_results(store, run_id)}
    assert newest.keys() == first.keys()
    assert all(newest[i].generation.ok for i in errored)
    assert all(newest[i] == first[i] for i in first.keys() - errored)  # the rest untouched
    history = store_results.load_history(store, run_id)
    assert sorted(r.attempt.id for r, _ in history) == sorted(errored)
    assert all("HTTP 500" in (r.generation.error or "") for r, _ in history)
    assert store_results.load_run(store, run_id).n_errors == 0
    runs = [r.body for r in store.records(type=RecordType.RUN) if r.body["run_id"] == run_id]
    assert [r["summary"]["groups"]["overall"]["outcomes"]["error"] for r in runs] == [len(errored), 0]
    assert runs[-1]["results_digest"] == store_results.results_digest(newest.values())
    code, out, _ = cli("runs", "show", run_id)
    shown = " ".join(out.split())
    assert f"{len(errored)} earlier results replaced by --retry-errors, kept as history" in shown
    code, out, _ = cli("runs", "show", run_id, "--json")
    assert json.loads(out)["replaced_results"] == len(errored)
    code, _, err = cli("eval", "--resume", run_id, "--retry-errors")  # nothing left to retry
    assert code == 0, err
    assert len(store_results.load_history(store, run_id)) == len(errored)


def test_retry_errors_needs_resume(cli: Cli, server: Server) -> None:
    code, _, err = cli("eval", server.ref(), "--suite", "smoke", "--retry-errors")
    assert code == 2 and "--retry-errors" in err and "--resume RUN" in err


def _result(run_id: str, i: int, error: str | None) -> AttemptResult:
    attempt = Attempt(id=f"a{i}", behavior_id=f"b{i}", attack="direct_request", attack_version="1",
                      family="direct", category="cyber", kind="harmful", messages=(Message("user", "q"),))
    generation = Generation(text="" if error else "no", finish_reason="error" if error else "stop",
                            error=error)
    verdicts = () if error else (Verdict(judge="refusal", judge_version="1", refused=True, harmful=False),)
    return AttemptResult(run_id=run_id, attempt=attempt, generation=generation, response=generation.text,
                         conversation=attempt.messages, verdicts=verdicts)


def test_a_store_written_before_the_history_table_upgrades_and_retires(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    url = database.parse_url(path)
    engine = database.create(url)
    database.migrate(engine, url, revision="0002")  # the layout the previous release wrote
    old = Store(engine, url)
    store_results.create_run(old, "r1", "openai:m@http://127.0.0.1:1/v1", "h" * 64, {"eval": {}}, "c" * 64, 3)
    writer = store_results.ResultWriter(old)
    written = [_result("r1", 0, None), _result("r1", 1, "HTTP 500"), _result("r1", 2, None)]
    for result in written:
        writer.add(result)
    writer.flush()
    old.close()

    with Store.open(path) as store:
        assert store_results.load_results(store, "r1") == written
        assert store_results.retire_errors(store, "r1") == 1
        assert [r.attempt.id for r in store_results.load_results(store, "r1")] == ["a0", "a2"]
        [(retired, _)] = store_results.load_history(store, "r1")
        assert retired == written[1]


def test_gate_on_an_endpoint_that_stays_down_stops_with_exit_3(cli: Cli, tmp_path: Path,
                                                               server: Server) -> None:
    server.app.go_down()
    ref = server.ref(breaker="2", cooldown="0.1")
    code, _, err = cli("gate", "--base", ref, "--candidate", server.ref("b"), "--suite", "smoke",
                       "--attacks", "direct_request", "--max-pause", "0.5", "--out", str(tmp_path / "r"),
                       "--no-progress")
    assert code == 3, err
    [run_id] = cli.runs()
    assert "the endpoint failed every request for" in err and f"tunesafe eval --resume {run_id}" in err
    assert store_results.load_run(Store.open(str(cli.db)), run_id).status == "interrupted"


def test_an_llm_judge_down_past_max_pause_stops_the_run_resumably(tmp_path: Path, server: Server) -> None:
    """The judge's endpoint is an endpoint too: down for good, it stops the run like the target's would,
    instead of filling the run with error verdicts."""
    from tunesafe.errors import EndpointUnavailable
    from tunesafe.testing.openai_server import serve

    suite = write_marked_suite(tmp_path / "s.jsonl", 10, {})
    store = Store.open(str(tmp_path / "store.db"))
    with serve() as judge_server:
        judge_server.app.go_down()
        judge_ref = f"openai:judge@{judge_server.url}?breaker=2&cooldown=0.1&max_pause=1"
        config = EvalConfig(suite=str(suite), attacks=ATTACKS, judges=("strongreject",),
                            judge_model_ref=judge_ref, concurrency=2)
        with pytest.raises(EndpointUnavailable):
            asyncio.run(evaluate(store, server.ref(), config, progress=False))
    [run] = store_results.list_runs(store)
    assert run.status == "interrupted" and run.n_errors == 0


def test_a_rejudged_run_is_not_resumed_or_retried_with_new_model_calls(cli: Cli, tmp_path: Path,
                                                                        server: Server) -> None:
    # A re-judged run holds another run's answers (generated_in). Retrying its errors (or resuming it after
    # an interrupted re-judge) called the model and stored new answers under that claim: the run then
    # mixed two sources, and a gate reusing it as "RUN's answers, re-judged" paired answers RUN never gave.
    suite = str(write_marked_suite(tmp_path / "s.jsonl", 6, {1: "500"}))
    code, _, err = cli("eval", server.ref(max_retries="0"), "--suite", suite, "--attacks", ATTACKS,
                       "--judge", "refusal", "--no-progress")
    [source] = cli.runs()
    code, _, err = cli("runs", "rejudge", source, "--judge", "default")
    assert code == 0, err
    [rejudged] = [r for r in cli.runs() if r != source]
    store = Store.open(str(cli.db))
    before = store_results.load_results(store, rejudged)
    assert any(r.generation.error for r in before)
    server.app.config.markers = False  # the fault is fixed: a model call would now answer
    calls = len(server.app.requests)
    code, _, err = cli("eval", "--resume", rejudged, "--retry-errors", "--no-progress")
    assert code == 2, err
    assert f"run {rejudged} re-judged the answers of run {source}" in err
    assert f"tunesafe eval --resume {source} --retry-errors" in err
    assert len(server.app.requests) == calls and store_results.load_results(store, rejudged) == before
    assert store_results.load_history(store, rejudged) == []
    store_results.set_status(store, rejudged, "failed")  # as a re-judge stopped part way leaves it
    code, _, err = cli("eval", "--resume", rejudged, "--no-progress")
    assert code == 2 and f"tunesafe runs rejudge {source}" in err, err
    assert len(server.app.requests) == calls
    code, out, _ = cli("runs", "show", rejudged)
    assert f"incomplete: re-judge run {source} again" in " ".join(out.split()), out


def test_an_error_rate_just_over_max_error_rate_never_prints_as_it(cli: Cli, tmp_path: Path,
                                                                    server: Server) -> None:
    """12 of 124 attempts (9.68%) errored against max_error_rate 9.67%: the warning said "error rate 9.7%
    exceeds max_error_rate 9.7%"."""
    suite = str(write_marked_suite(tmp_path / "s.jsonl", 40, {i: "500" for i in range(0, 40, 10)}))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nmax_error_rate: 0.0967\n", encoding="utf-8")
    code, _, err = cli("eval", server.ref(cooldown="1"), "--suite", suite, "--attacks", ATTACKS, "--judge",
                       "refusal", "--policy", str(policy), "--no-progress")
    assert code == 3, err
    assert "warning: error rate 9.68% exceeds max_error_rate 9.67%: the run is inconclusive" in err, err
