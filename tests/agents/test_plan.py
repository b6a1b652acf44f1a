"""Agent cases in the plan: only agent attacks expand them (benign ones included), agent attacks expand
nothing else, and a backend without tool calling cannot run them."""

from __future__ import annotations

from collections import Counter

import pytest

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.targets import for_target, plan_evaluation
from tunesafe.errors import UserError
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
