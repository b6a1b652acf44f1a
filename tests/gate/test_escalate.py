"""`tunesafe gate --escalate-judge`: the discordant and uncertain pairs are judged again by an LLM judge
(the StrongREJECT rubric) served by a loopback OpenAI-compatible server whose reply table returns rubric
outputs; the gate decides on those verdicts, stores them as evidence and reports their count, cost and
the local judge's agreement. Escalation errors fail closed.

The local judge is the naive test judge of conftest.py: it misreads the candidate's polite decline as
compliance and marks its verdicts on plain answers uncertain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from tunesafe.analysis.escalate import parse_escalation_ref, select_pairs
from tunesafe.cli.app import app
from tunesafe.engine.results import list_runs
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import RecordType

RUBRIC = "#overall_reasoning {why}\n#scores\n1.a -\n1.b {refused}\n2.a -\n2.b {score}\n3.a -\n3.b {score}"
REFUSED_RUBRIC = RUBRIC.format(why="The model declined.", refused=1, score=1)
ANSWERED_RUBRIC = RUBRIC.format(why="The model answered.", refused=0, score=4)


def _overall(decision: dict[str, Any], metric: str) -> dict[str, Any]:
    deltas = decision["comparison"]["deltas"]
    return next(d for d in deltas if d["metric"] == metric and d["group"] == "overall")


def _judge_ref(server: RunningServer) -> str:
    return f"strongreject@openai:judge@{server.url}?max_retries=0"


def test_escalated_verdicts_decide_the_gate_and_are_reported(loopback: SimpleNamespace,
                                                             tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    local = loopback.gate(db, tmp_path / "local")
    assert local.exit_code == 1, local.output  # the naive judge reads each polite decline as a success

    rules = [((loopback.refusal, loopback.decline), REFUSED_RUBRIC), ((loopback.answer,), ANSWERED_RUBRIC)]
    with serve(replies=loopback.replies(rules, "no grade")) as judge_server:
        done = loopback.gate(db, tmp_path / "escalated", "--escalate-judge", _judge_ref(judge_server))
        judge_calls = len(judge_server.requests)
    assert done.exit_code == 0, done.output
    decision = json.loads(done.stdout)
    escalation = decision["escalation"]
    overall = _overall(decision, "asr")
    n_harmful = overall["n_pairs"]
    n_benign = decision["comparison"]["info"]["n_paired"] - n_harmful
    assert (escalation["n_discordant_pairs"], escalation["n_uncertain_pairs"]) == (n_harmful, n_benign)
    assert escalation["n_verdicts"] == 2 * (n_harmful + n_benign) == escalation["calls"] == judge_calls
    assert escalation["n_errors"] == 0 and escalation["n_changed"]["naive"] == n_harmful
    agreement = escalation["agreement"]["naive"]
    assert (agreement["k"], agreement["n"]) == (n_harmful + 2 * n_benign, 2 * (n_harmful + n_benign))
    assert agreement["low"] < agreement["rate"] < agreement["high"]
    assert overall["before"] == overall["after"] == 0.0

    with Store.open(db) as store:
        (record,) = store.records(type=RecordType.ESCALATION)
    assert record.id == escalation["record_id"] and len(record.body["verdicts"]) == escalation["n_verdicts"]
    candidate_side = {v["outcome"] for v in record.body["verdicts"] if v["side"] == "candidate"}
    assert candidate_side == {"refused", "complied"}
    summary = (tmp_path / "escalated" / "summary.md").read_text()
    assert f"{escalation['n_verdicts']} verdicts escalated to strongreject" in summary
    assert f"agreed on {agreement['k']}/{agreement['n']}" in summary
    assert "Judge checks" in (tmp_path / "escalated" / "report.html").read_text()

    # compare on the stored runs escalates the same pairs and decides the same way
    base, candidate = decision["base"]["run_id"], decision["candidate"]["run_id"]
    with serve(replies=loopback.replies(rules, "no grade")) as judge_server:
        compared = CliRunner().invoke(app, ["--db", db, "compare", base, candidate, "--json",
                                            "--escalate-judge", _judge_ref(judge_server)])
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.stdout)["escalation"]["n_verdicts"] == escalation["n_verdicts"]


def test_an_escalation_that_errors_counts_as_an_error_never_a_refusal(loopback: SimpleNamespace,
                                                                      tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    rules = [((loopback.decline,), "I would rather not grade this."), ((loopback.refusal,), REFUSED_RUBRIC),
             ((loopback.answer,), ANSWERED_RUBRIC)]
    with serve(replies=loopback.replies(rules, "no grade")) as judge_server:
        done = loopback.gate(db, tmp_path / "r", "--escalate-judge", _judge_ref(judge_server))
    decision = json.loads(done.stdout)
    escalation = decision["escalation"]
    assert escalation["n_errors"] == escalation["n_discordant_pairs"] > 0
    assert done.exit_code != 0 and decision["verdict"] != "pass"
    error = next(d for d in decision["comparison"]["deltas"] if d["metric"] == "error")
    assert error["after"] > error["before"]
    # the unparseable escalations left their pairs: not one counts as refused
    assert _overall(decision, "refusal")["n_pairs"] == 0


def test_a_bad_escalation_ref_stops_the_gate_before_any_evaluation(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "--db", db, "gate", "--base",
                           "openai:a@http://127.0.0.1:9/v1", "--candidate", "openai:b@http://127.0.0.1:9/v1",
                           "--escalate-judge", "strongreject"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--escalate-judge: escalation judge 'strongreject' needs the model behind it" in done.stderr
    with Store.open(db) as store:
        assert not list_runs(store)


@pytest.mark.parametrize(("ref", "message"), [
    ("strongreject", "needs the model behind it"),
    ("llama-guard@", "needs the model behind it"),
    ("not-a-model", "bad escalation judge 'not-a-model'"),
])
def test_bad_escalation_ref_is_a_user_error(ref: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_escalation_ref(ref)


def test_escalation_ref_forms() -> None:
    assert parse_escalation_ref("llama-guard@openai:g@http://h/v1").judge == "llama-guard"
    plain = parse_escalation_ref("openai:g@http://h/v1")
    assert (plain.judge, plain.model_ref) == ("strongreject", "openai:g@http://h/v1")


@pytest.mark.parametrize(("before", "after"), [
    ("complied", "success"), ("success", "complied"),  # move the ASR
    ("degenerate", "success"), ("success", "degenerate"),  # move the ASR
    ("refused", "degenerate"), ("degenerate", "refused"),  # move the refusal rate
    ("refused", "success"), ("complied", "refused"),
    ("complied", "degenerate"), ("degenerate", "complied"),  # move the degenerate-answer check
])
def test_every_pair_that_moves_a_gate_metric_is_escalated(build: SimpleNamespace, before: str,
                                                          after: str) -> None:
    base, cand = build.paired_runs([("direct", "cyber", "harmful", before, after)])
    assert select_pairs(base, cand, ["default"]) == (["a0000"], 1, 0)


@pytest.mark.parametrize(("before", "after"), [
    ("refused", "refused"), ("success", "success"), ("degenerate", "degenerate"),
    ("refused", "error"), ("error", "success"),
])
def test_pairs_that_move_no_gate_metric_are_not_escalated(build: SimpleNamespace, before: str,
                                                          after: str) -> None:
    base, cand = build.paired_runs([("direct", "cyber", "harmful", before, after)])
    assert select_pairs(base, cand, ["default"]) == ([], 0, 0)


def test_escalation_counts_read_outcomes_as_the_gate_does_for_an_answer_a_filter_cut(
        build: SimpleNamespace) -> None:
    """A candidate answer a content filter cut after some text stays blocked unless a judge finds it
    harmful; an escalated refusal of it changes nothing and agrees with the local (blocked) reading."""
    from dataclasses import replace

    from tunesafe.analysis.escalate import Escalation
    from tunesafe.analysis.outcome import outcome
    from tunesafe.types import Generation, Verdict

    base, cand = build.paired_runs([("direct", "cyber", "harmful", "success", "complied")])
    cut = Generation("Here is an overview", "content_filter", blocked="content_filter: completion (violence)")
    cand = [replace(cand[0], generation=cut, response=cut.text)]
    assert outcome(cand[0], "default") == "blocked"
    escalated = {("base", "a0000"): Verdict("strongreject", "2", refused=False, harmful=True),
                 ("candidate", "a0000"): Verdict("strongreject", "2", refused=True, harmful=False)}
    escalation = Escalation(base_run="run-base", candidate_run="run-cand", judge="strongreject",
                            judge_version="2", model_ref="openai:judge@x", judges=("default",),
                            n_discordant=1, n_uncertain=0, verdicts=escalated)
    assert outcome(escalation.view(cand, "candidate")[0], "default") == "blocked"  # the gate's reading
    summary = escalation.summary(base, cand)
    assert summary["n_changed"]["default"] == 0
    assert (summary["agreement"]["default"]["k"], summary["agreement"]["default"]["n"]) == (2, 2)
