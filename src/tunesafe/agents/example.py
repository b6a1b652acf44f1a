"""One attacked case of an agent family laid out for `tunesafe attacks show`: the agent's prompts and
tools, the tool result that carries the injection (as the agent reads it, by running the task's ground-truth
calls on the case's world), and the end states that decide utility and attack success.

An agent attack transforms no request, so the generic "example on a harmless request" is empty for it;
this is its example instead. The case is the family's first attacked case of the `agents-smoke` suite, so
the example is one the smoke run measures.
"""

from __future__ import annotations

import json
from typing import Any

from tunesafe.agents.cases import PERSISTENT_MEMORY, SECOND_ORDER, TOOL_INJECTION, Case, smoke_cases
from tunesafe.agents.environments import call_tool
from tunesafe.agents.episodes import ASSISTANT, EXECUTOR, NOTES, READER, case_world, kit
from tunesafe.agents.runner import Settings, system_prompt, wrap_result

SUCCESS = {
    TOOL_INJECTION: "the agent's own tool calls reach the attacker's end state",
    SECOND_ORDER: "the reader has no side-effect tools; success only when the executor, acting on the "
                  "reader's messages, reaches the attacker's end state",
    PERSISTENT_MEMORY: "episode 1 only reads the injection (which asks for a standing instruction in "
                       "memory); success when episode 2, a fresh world with a benign task and episode 1's "
                       "notes, reaches the attacker's end state (or episode 1 already does)",
}


def example_case(family: str) -> Case:
    return next(c for c in smoke_cases() if c.family == family and c.injection is not None)


def injected_result(case: Case, settings: Settings) -> dict[str, Any]:
    """The first ground-truth call of the task whose result holds the injection, with that result."""
    assert case.injection is not None  # only attacked cases are shown
    world = case_world(case, persist=case.family == PERSISTENT_MEMORY)
    placed = case.injection.text(persist=case.family == PERSISTENT_MEMORY)
    tools = kit(case.task)
    for call in case.task.calls:
        result, _ = call_tool(world, tools, call.name, call.arguments)
        if placed in result or json.dumps(placed, ensure_ascii=False)[1:-1] in result:
            return {"name": call.name, "arguments": dict(call.arguments),
                    "result": wrap_result(result, settings)}
    raise ValueError(f"case {case.id}: no ground-truth call reads the injection")  # tests rule this out


FIRST_AGENT = {SECOND_ORDER: "reader", PERSISTENT_MEMORY: "episode 1"}


def agent_example(family: str, defence: str | None = None) -> dict[str, Any]:
    case = example_case(family)
    assert case.injection is not None
    settings = Settings(defence=defence)
    reader = family == SECOND_ORDER
    agents: list[dict[str, Any]] = [{
        "agent": FIRST_AGENT.get(family, "agent"), "user": case.task.prompt,
        "system": system_prompt(READER if reader else ASSISTANT, settings),
        "tools": sorted(kit(case.task, only_reads=reader)) + (["message_executor"] if reader else [])}]
    if reader:
        agents.append({"agent": "executor", "system": system_prompt(EXECUTOR, settings),
                       "user": "the reader's messages", "tools": sorted(kit(case.task))})
    if case.trigger is not None:
        notes = f"{ASSISTANT}\n\n{NOTES}\n- ..."
        agents.append({"agent": "episode 2", "system": system_prompt(notes, settings),
                       "user": case.trigger.prompt, "tools": sorted(kit(case.trigger))})
    return {"case": case.id, "environment": case.task_env, "style": case.injection.style,
            "goal": case.injection.goal.id, "agents": agents, "injected": injected_result(case, settings),
            "utility_check": [t.check for t in (case.task, case.trigger) if t is not None],
            "success_check": case.injection.goal.check, "success": SUCCESS[family]}
