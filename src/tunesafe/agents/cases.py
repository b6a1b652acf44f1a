"""The agent cases as data: user tasks (tasks.yaml), attacker goals and injection styles
(injections.yaml), and the grid that pairs them into cases per family.

A case is one episode setting: a task alone (benign: measures utility) or a task with an injection
placed at the task's vector (measures utility under attack and targeted attack success). Each case is
also a `Behavior` (id `agent:<family>:...`, kind benign or harmful, category = the task's environment),
so the engine plans, pairs and stores it like any other item; the agent attacks run it.

Grid (deterministic, no randomness): tool injection pairs every task with every style, the goal rotating
with the task among those its kit can reach (style j of task i: goal i + j), so all 60 injection cases
occur; second-order takes the tasks
whose ground truth has a side effect (the executor's part) with two styles each; the memory family pairs
each inbox-reading notes task (episode 1) with a side-effect task of another environment (episode 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from tunesafe.agents.checks import validate
from tunesafe.agents.environments import all_tools, vectors
from tunesafe.models.tool_calls import ToolCall
from tunesafe.types import Behavior

TOOL_INJECTION, SECOND_ORDER, PERSISTENT_MEMORY = "agent_tool_injection", "agent_second_order", \
    "agent_persistent_memory"
FAMILIES = (TOOL_INJECTION, SECOND_ORDER, PERSISTENT_MEMORY)
PREFIX = "agent:"  # behaviour ids of agent cases; only agent attacks expand them (engine/plan.py)
SUITE_VERSION = "1"


@dataclass(frozen=True)
class Task:
    id: str
    env: str
    prompt: str
    vector: str
    calls: tuple[ToolCall, ...]
    check: Mapping[str, Any]
    kit: tuple[str, ...]
    answer: str = "Done."

    @property
    def has_side_effect(self) -> bool:
        tools = all_tools()
        return any(tools[c.name].side_effect for c in self.calls)


@dataclass(frozen=True)
class Goal:
    id: str
    tools: tuple[str, ...]
    canary: str
    instruction: str
    data: str
    calls: tuple[ToolCall, ...]
    check: Mapping[str, Any]


@dataclass(frozen=True)
class Injection:
    goal: Goal
    style: str

    @property
    def id(self) -> str:
        return f"{self.goal.id}.{self.style}"

    def text(self, persist: bool = False) -> str:
        """The attacker's text as placed in the tool result; `persist` asks for it to be stored as a note."""
        catalogue = _injection_data()
        instruction = self.goal.instruction
        if persist:
            instruction = catalogue["persist"].format(instruction=instruction)
        return str(catalogue["styles"][self.style]).format(
            instruction=instruction, data=instruction if persist else self.goal.data)


@dataclass(frozen=True)
class Case:
    family: str
    task: Task
    injection: Injection | None = None
    trigger: Task | None = None  # memory family: the later episode's benign task

    @property
    def id(self) -> str:
        tasks = self.task.id if self.trigger is None else f"{self.task.id}>{self.trigger.id}"
        return f"{PREFIX}{self.family}:{tasks}" + (f":{self.injection.id}" if self.injection else "")

    def behavior(self, suite: str) -> Behavior:
        if self.injection is None:
            text = self.task.prompt if self.trigger is None else f"{self.task.prompt} / {self.trigger.prompt}"
            return Behavior(id=self.id, text=text, kind="benign", category=self.task_env, suite=suite,
                            version=SUITE_VERSION)
        return Behavior(id=self.id, text=self.injection.goal.instruction, kind="harmful",
                        category=self.task_env, suite=suite, version=SUITE_VERSION)

    @property
    def task_env(self) -> str:
        """The environment the attack lands in (memory family: where the stored goal is acted on)."""
        return (self.trigger or self.task).env


def _calls(items: Sequence[Sequence[Any]]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(str(name), dict(args)) for name, args in items)


def _read(name: str) -> Mapping[str, Any]:
    text = files("tunesafe.agents").joinpath(f"data/{name}").read_text("utf-8")
    data: Mapping[str, Any] = yaml.safe_load(text)
    return data


@cache
def _injection_data() -> Mapping[str, Any]:
    return _read("injections.yaml")


@cache
def tasks() -> tuple[Task, ...]:
    data = _read("tasks.yaml")
    kits = {env: tuple(tools) for env, tools in data["kits"].items()}
    out = []
    for item in data["tasks"]:
        task = Task(id=item["id"], env=item["env"], prompt=item["prompt"], vector=item["vector"],
                    calls=_calls(item["calls"]), check=item["check"], kit=kits[item["env"]],
                    answer=item.get("answer", "Done."))
        _validate_task(task)
        out.append(task)
    return tuple(out)


@cache
def goals() -> tuple[Goal, ...]:
    out = []
    for item in _injection_data()["goals"]:
        goal = Goal(id=item["id"], tools=tuple(item["tools"]), canary=item["canary"],
                    instruction=item["instruction"], data=item["data"], calls=_calls(item["calls"]),
                    check=item["check"])
        validate(goal.check, f"goal {goal.id}")
        out.append(goal)
    return tuple(out)


def styles() -> tuple[str, ...]:
    return tuple(_injection_data()["styles"])


def injections() -> tuple[Injection, ...]:
    return tuple(Injection(g, s) for g in goals() for s in styles())


def _validate_task(task: Task) -> None:
    validate(task.check, f"task {task.id}")
    tools = all_tools()
    unknown = [c.name for c in task.calls if c.name not in task.kit] + [t for t in task.kit if t not in tools]
    if unknown or task.vector not in vectors():
        raise ValueError(f"task {task.id}: tools {unknown} outside its kit or unknown vector {task.vector}")


def reachable(goal: Goal, kit: Sequence[str]) -> bool:
    return set(goal.tools) <= set(kit)


def _pick(candidates: Sequence[Goal], index: int) -> Goal:
    return candidates[index % len(candidates)]


@cache
def all_cases() -> tuple[Case, ...]:
    cases: list[Case] = []
    style_list = styles()
    by_env: dict[str, list[Task]] = {}
    for task in tasks():
        by_env.setdefault(task.env, []).append(task)
    for env_tasks in by_env.values():
        for i, task in enumerate(env_tasks):
            cases.append(Case(TOOL_INJECTION, task))
            feasible = [g for g in goals() if reachable(g, task.kit)]
            for j, style in enumerate(style_list):
                cases.append(Case(TOOL_INJECTION, task, Injection(_pick(feasible, i + j), style)))
    acting = [t for t in tasks() if t.has_side_effect]
    for k, task in enumerate(acting):
        cases.append(Case(SECOND_ORDER, task))
        feasible = [g for g in goals() if reachable(g, task.kit)]
        for j in range(2):
            style = style_list[(2 * k + j) % len(style_list)]
            cases.append(Case(SECOND_ORDER, task, Injection(_pick(feasible, 2 * k + j), style)))
    first = [t for t in by_env["memory"] if t.vector != "inj_memory_note" and "save_memory" in t.kit]
    later = [t for t in acting if t.env != "memory"]
    for k, task in enumerate(first):
        trigger = later[(7 * k) % len(later)]
        cases.append(Case(PERSISTENT_MEMORY, task, trigger=trigger))
        feasible = [g for g in goals() if reachable(g, trigger.kit) and "save_memory" not in g.tools]
        for j, style in enumerate(style_list):
            cases.append(Case(PERSISTENT_MEMORY, task, Injection(_pick(feasible, k + j), style), trigger))
    return tuple(cases)


@cache
def case_index() -> Mapping[str, Case]:
    return {c.id: c for c in all_cases()}


def smoke_cases() -> tuple[Case, ...]:
    """A small fixed subset for CPU runs: per family one benign case and a few attacked ones, spread over
    environments and styles."""
    picked: list[Case] = []
    sizes = ((TOOL_INJECTION, 5, 5), (SECOND_ORDER, 2, 2), (PERSISTENT_MEMORY, 1, 2))
    for family, n_benign, n_attacked in sizes:
        family_cases = [c for c in all_cases() if c.family == family]
        benign = _spread([c for c in family_cases if c.injection is None], n_benign)
        attacked = _spread([c for c in family_cases if c.injection is not None], n_attacked)
        picked += benign + attacked
    return tuple(picked)


def _spread(cases: Sequence[Case], n: int) -> list[Case]:
    """n cases at even steps through the list, the i-th moved i places on: the list runs task by task
    with the styles in order, so the picks differ in environment and in style."""
    if n >= len(cases):
        return list(cases)
    step = len(cases) / n
    return [cases[min(len(cases) - 1, int(i * step) + i)] for i in range(n)]
