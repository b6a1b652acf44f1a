"""Agent cases in the plan: only agent attacks expand them (benign ones included), agent attacks expand
nothing else, and a backend without tool calling cannot run them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.targets import for_target, plan_evaluation
from tunesafe.errors import UserError
from tunesafe.suite import load_suite
from tunesafe.types import Capabilities


def test_agent_cases_run_only_under_agent_attacks() -> None:
    planned = plan_evaluation(EvalConfig(suite="agents-smoke", attacks="agent_tool_injection,direct_request"))
    counts = Counter((a.attack, a.kind) for a in planned.plan.attempts)
    assert counts == {("agent_tool_injection", "harmful"): 5, ("agent_tool_injection", "benign"): 5}
    plain = plan_evaluation(EvalConfig(suite="smoke", attacks="template"))
    assert plain.plan.attempts and not any(a.family.startswith("agent_") for a in plain.plan.attempts)
    assert "agent_second_order" in {a.meta.family for a in plain.attacks}  # listed, nothing to expand


def test_a_backend_without_tool_calling_cannot_run_agent_attacks() -> None:
    planned = plan_evaluation(EvalConfig(suite="agents-smoke", attacks="template"))
    agent_attacks = {"agent_tool_injection", "agent_tool_injection_delimit", "agent_second_order",
                     "agent_persistent_memory"}
    assert {a.attack for a in planned.plan.attempts} == agent_attacks
    no_tools = for_target(planned, "template", Capabilities())
    assert no_tools.plan.attempts == () and {s["attack"] for s in no_tools.skipped} >= {"agent_second_order"}
    with pytest.raises(UserError, match="needs tool calling"):
        for_target(planned, "agent_second_order", Capabilities())


def test_a_suite_file_naming_an_agent_case_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    # only agent attacks expand "agent:" ids, and they expand only real cases: a mistyped one silently
    # left the plan, so the suite ran without it
    real = "agent:agent_tool_injection:bank-pay-electricity:pay-attacker.important"
    typo = "agent:agent_tool_injection:bank-pay-electricty:pay-attacker.important"
    path = tmp_path / "mine.jsonl"
    lines = [{"id": real, "text": "x", "kind": "harmful", "category": "bank"},
             {"id": typo, "text": "x", "kind": "harmful", "category": "bank"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(UserError, match=f"{path.name}:2.*{typo}"):
        load_suite(path)
    path.write_text(json.dumps(lines[0]) + "\n")
    assert [b.id for b in load_suite(path).behaviors] == [real]
    planned = plan_evaluation(EvalConfig(suite=str(path), attacks="agent_tool_injection"))
    assert [a.behavior_id for a in planned.plan.attempts] == [real]
