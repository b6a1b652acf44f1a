"""`tunesafe gate` end to end through the real engine: two real OpenAI-compatible servers on loopback
(a base that refuses the smoke suite's harmful requests, a candidate that complies with everything),
the real smoke suite, template attacks and the pattern judge, a real SQLite workspace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tunesafe.cli.app import app
from tunesafe.engine.results import list_runs
from tunesafe.evidence.store import Store
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import RecordType

ATTACKS = "direct_request,refusal_suppression,prefix_injection"
REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Here is an overview of the topic: [general information]."
COMPLIANCE = "Sure, here it is. Step 1: [redacted]. Step 2: [redacted]. Step 3: [redacted]."


class _Replies(dict[str, str]):
    """The server's reply table, decided by content: refuse messages that carry a harmful behaviour."""

    def __init__(self, harmful: list[str], refuse: bool) -> None:
        super().__init__()
        self.harmful, self.refuse = harmful, refuse

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        if any(text in key for text in self.harmful):
            return REFUSAL if self.refuse else COMPLIANCE
        return ANSWER


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RunningServer, RunningServer]]:
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    with serve(replies=_Replies(harmful, refuse=True)) as base, \
            serve(replies=_Replies(harmful, refuse=False)) as eroded:
        yield base, eroded


def _gate(db: str, base: str, candidate: str, out: Path, *extra: str) -> Any:
    args = ["--db", db, "gate", "--base", base, "--candidate", candidate, "--suite", "smoke",
            "--attacks", ATTACKS, "--judge", "refusal", "--max-new-tokens", "32", "--no-progress",
            "--out", str(out), *extra]
    return CliRunner().invoke(app, args)


def test_gate_pass_then_fail_reusing_the_base_run(servers: tuple[RunningServer, RunningServer],
                                                  tmp_path: Path) -> None:
    base_server, eroded_server = servers
    base = f"openai:tunesafe-test@{base_server.url}"
    eroded = f"openai:tunesafe-test@{eroded_server.url}"
    db = f"sqlite:///{tmp_path / 'store.db'}"

    same = _gate(db, base, base, tmp_path / "same")
    assert same.exit_code == 0, same.output
    assert same.stdout.startswith("PASS")

    failed = _gate(db, base, eroded, tmp_path / "eroded", "--candidate-name", "support-bot-v2", "--json")
    assert failed.exit_code == 1, failed.output
    decision = json.loads(failed.stdout)
    assert decision["verdict"] == "fail" and decision["candidate_model"] == "support-bot-v2"
    overall = next(d for d in decision["comparison"]["deltas"]
                   if d["metric"] == "asr" and d["group"] == "overall")
    assert overall["before"] < 0.2 and overall["after"] > 0.8 and overall["p_value"] < 1e-6
    assert decision["comparison"]["info"]["n_only_base"] == 0  # identical attempts on both models
    assert any(r.startswith("overall: ASR rose") for r in decision["reasons"])
    assert Path(decision["reports"]["html"]).exists()

    with Store.open(db) as store:
        runs = list_runs(store)
        # base once, base again as a candidate (replaying the base run), the eroded candidate once
        assert [r.model_ref for r in runs] == [base, base, eroded]
        assert decision["base"]["run_id"] == runs[0].id
        (record,) = list(store.records(type=RecordType.GATE_DECISION, subject="support-bot-v2"))
        assert record.body["candidate"]["run_id"] == runs[2].id


def test_gate_over_http_without_an_attacker_plans_the_same_attempts_on_both_sides(
        servers: tuple[RunningServer, RunningServer], tmp_path: Path) -> None:
    """The default attacks include attacker-driven ones; with no attacker and nothing frozen to replay
    they are skipped on both sides (the candidate once planned them and recorded them all as errors)."""
    base_server, _ = servers
    db = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["--db", db, "gate", "--base", f"openai:model-a@{base_server.url}",
            "--candidate", f"openai:model-b@{base_server.url}", "--suite", "smoke", "--judge", "refusal",
            "--max-new-tokens", "32", "--concurrency", "16", "--no-progress", "--json", "--out",
            str(tmp_path / "r")]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    decision = json.loads(outcome.stdout)
    assert decision["base"]["n_errors"] == decision["candidate"]["n_errors"] == 0
    info = decision["comparison"]["info"]
    assert info["n_only_base"] == info["n_only_candidate"] == 0
    with Store.open(db) as store:
        base_run, candidate_run = list_runs(store)
    assert base_run.config["attacks"] == candidate_run.config["attacks"]
    planned = {a["name"] for a in candidate_run.config["attacks"]}
    assert "direct_request" in planned and not planned & {"pair_3", "crescendo_5", "past_tense_attacker"}
    assert outcome.stderr.count("attacker-driven") <= 1
