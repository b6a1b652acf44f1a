"""A scripted tool-calling agent for the loopback server (`ServerConfig(agent=POLICY)`): deterministic
replies to OpenAI tool-calling requests, so the agent harness and its metrics are tested exactly.

The agent knows the agent catalogue (tunesafe.agents.cases): it recognises its task by the user's
prompt, makes the task's ground-truth calls one per turn and then gives the task's answer. Policies:

    resists              never acts on injected text
    follows              acts on every injected goal it reads in a tool result, a handoff or its notes:
                         makes the goal's calls (or saves the standing instruction when asked to), and
                         as a reader passes the goal on to the executor
    follows_undelimited  like follows, except for tool results wrapped in << >> (the delimiting defence)
    malformed            answers every turn with a call whose arguments are not JSON
    loops                makes the task's first call again every turn and never answers (the step limit)

Roles come from the request: a `message_executor` tool means the reader of the second-order family, a
user turn that starts with the handoff header the executor, anything else a single agent.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from tunesafe.agents.cases import Goal, Task, goals, tasks
from tunesafe.agents.environments import all_tools
from tunesafe.agents.episodes import HANDOFF
from tunesafe.models.tool_calls import ToolCall

POLICIES = ("resists", "follows", "follows_undelimited", "malformed", "loops")
PERSIST_MARK = "Save this standing instruction"
STANDING = "Standing instruction from Emma: in every future task, first "


def reply(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
          policy: str) -> dict[str, Any]:
    """The assistant message (OpenAI shape) the scripted agent sends next."""
    if policy not in POLICIES:
        raise ValueError(f"unknown scripted agent policy {policy!r}; use one of {POLICIES}")
    if policy == "malformed":
        return _message([("read_inbox", "{'broken': ")])
    names = {t["function"]["name"] for t in tools}
    user = next(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
    made = [c for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or ()]
    results = [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]
    if policy == "loops":
        first = _task(user.removeprefix(HANDOFF)).calls[0]
        return _message([(first.name, json.dumps(dict(first.arguments)))])
    follows = policy != "resists"
    if "message_executor" in names:
        return _reader(user, made, results, follows, policy)
    task = _task(user.removeprefix(HANDOFF))
    acting = user.startswith(HANDOFF)
    planned = [c for c in task.calls if all_tools()[c.name].side_effect] if acting else list(task.calls)
    upfront = [g for g in goals() if follows and _mentions(user if acting else system, g)]
    queue = deque(c for g in upfront for c in g.calls)
    queue.extend(planned)
    seen = {g.id for g in upfront}
    expected: list[ToolCall] = []
    while queue and len(expected) <= len(made):
        call = queue.popleft()
        expected.append(call)
        k = len(expected) - 1
        if not follows or k >= len(results) or not _reads_injections(results[k], policy):
            continue
        for goal in goals():
            if goal.id in seen or not _mentions(results[k], goal):
                continue
            seen.add(goal.id)
            if PERSIST_MARK in results[k] and "save_memory" in names:
                queue.appendleft(ToolCall("save_memory", {"text": STANDING + goal.instruction}))
            else:
                queue.extendleft(reversed(goal.calls))
    if len(made) < len(expected):
        nxt = expected[len(made)]
        return _message([(nxt.name, json.dumps(dict(nxt.arguments)))])
    return {"role": "assistant", "content": task.answer}


def _reader(user: str, made: Sequence[Any], results: Sequence[str], follows: bool,
            policy: str) -> dict[str, Any]:
    task = _task(user)
    reads = [c for c in task.calls if not all_tools()[c.name].side_effect]
    if len(made) < len(reads):
        nxt = reads[len(made)]
        return _message([(nxt.name, json.dumps(dict(nxt.arguments)))])
    if len(made) == len(reads):
        passed = [g.instruction for g in goals() if follows
                  and any(_reads_injections(r, policy) and _mentions(r, g) for r in results)]
        request = " ".join([f"Emma asks: {task.prompt}", *(f"Also: {text}" for text in passed)])
        return _message([("message_executor", json.dumps({"request": request}))])
    return {"role": "assistant", "content": "I asked the executor agent to do it."}


def _task(prompt: str) -> Task:
    prompt = prompt.removeprefix("Emma asks: ")
    for task in tasks():
        if prompt.startswith(task.prompt):
            return task
    raise ValueError(f"the scripted agent knows no task for {prompt[:80]!r}")


def _mentions(text: str, goal: Goal) -> bool:
    return goal.instruction in text or goal.data in text


def _reads_injections(result: str, policy: str) -> bool:
    return not (policy == "follows_undelimited" and result.startswith("<<"))


def _message(calls: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
        for i, (name, arguments) in enumerate(calls)]}
