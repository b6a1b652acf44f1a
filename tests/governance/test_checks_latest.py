"""Checks that read "the latest" record where several sources record side by side: POST-03 takes the
latest verification of each guardrail in front of an endpoint, PROD-02 the latest run of each red-team
schedule, so a failure of one is not hidden by a later pass of another."""

from __future__ import annotations

from pathlib import Path

from tunesafe.evidence.store import Store
from tunesafe.governance.controls import control_status
from tunesafe.production import endpoints, inventory
from tunesafe.types import RecordType

INPUT, OUTPUT = "python:filters:input_guard", "python:filters:output_guard"


def _post03(store: Store) -> str:
    report = control_status(store, "ft")
    return next(c for c in report.controls if c.control.id == "POST-03").status


def _verified(store: Store, guard: str, verdict: str) -> None:
    body = {"endpoint": "chat", "guard_ref": guard, "verdict": verdict}
    store.append(RecordType.GUARDRAIL_VERIFICATION, body, subject="chat")


def test_a_failing_guard_is_not_hidden_by_a_later_pass_of_another(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "e.db")) as store:
        inventory.add_model(store, inventory.ModelSpec(name="base", ref="openai:b@http://127.0.0.1:1/v1"))
        inventory.add_model(store, inventory.ModelSpec(name="ft", ref="openai:f@http://127.0.0.1:1/v1",
                                                       base="base"))
        endpoints.add_endpoint(store, "chat", model="ft", url=None, guardrails=[INPUT, OUTPUT])
        _verified(store, INPUT, "pass")
        _verified(store, OUTPUT, "pass")
        assert _post03(store) == "satisfied"
        _verified(store, INPUT, "fail")  # the input filter now lets attacks through
        _verified(store, OUTPUT, "pass")  # a later check of the other guard says nothing about it
        assert _post03(store) == "failing"
        _verified(store, INPUT, "pass")
        assert _post03(store) == "satisfied"


def _redteam(store: Store, schedule: str, verdict: str) -> None:
    body = {"schedule_id": schedule, "period": "2025-01-01T00:00:00+00:00", "model": "ft", "verdict": verdict}
    store.append(RecordType.REDTEAM_RUN, body, subject="ft")


def _prod02(store: Store) -> str:
    report = control_status(store, "ft")
    return next(c for c in report.controls if c.control.id == "PROD-02").status


def test_a_failing_red_team_schedule_is_not_hidden_by_a_later_run_of_another(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "e.db")) as store:
        inventory.add_model(store, inventory.ModelSpec(name="base", ref="openai:b@http://127.0.0.1:1/v1"))
        inventory.add_model(store, inventory.ModelSpec(name="ft", ref="openai:f@http://127.0.0.1:1/v1",
                                                       base="base"))
        _redteam(store, "rt-monthly", "baseline")
        _redteam(store, "rt-weekly", "baseline")
        assert _prod02(store) == "satisfied"
        _redteam(store, "rt-monthly", "fail")  # the full monthly run found a regression
        _redteam(store, "rt-weekly", "pass")  # the weekly smoke run passing does not clear it
        assert _prod02(store) == "failing"
        _redteam(store, "rt-monthly", "pass")
        assert _prod02(store) == "satisfied"
