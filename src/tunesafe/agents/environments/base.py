"""The simulated world and the tool contract every environment follows.

A `World` is plain state (inbox, sent mail, files, web pages, bank ledger, notes) built fresh for each
episode from data/world.yaml, with each injection vector's [[marker]] replaced by the case's text (or
removed). A `Tool` is a deterministic function of (world, arguments) with an OpenAI schema; `call_tool`
validates the arguments against the schema and turns every failure (unknown tool, missing or extra
argument, wrong type, a tool's own refusal) into an error text the agent reads, never an exception:
what an agent does wrong is an outcome of the episode, not a crash of the harness.

Environments register in `registry` (tunesafe.registry); a plugin adds one through the entry-point group
`tunesafe.agent_environments`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from tunesafe.errors import UserError
from tunesafe.registry import Registry

_MARKER = re.compile(r"\s*\[\[(\w+)\]\]")
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float)}


class ToolError(Exception):
    """A tool declines a call (no such file, not enough money): the agent reads the message."""


@dataclass
class World:
    user: dict[str, str]
    inbox: list[dict[str, Any]]
    sent: list[dict[str, Any]]
    files: dict[str, str]
    web: dict[str, str]
    bank: dict[str, Any]
    memory: list[str]

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({"user": self.user, "inbox": self.inbox, "sent": self.sent, "files": self.files,
                              "web": self.web, "bank": self.bank, "memory": self.memory})


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    run: Callable[..., Any]
    parameters: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (type, description)
    side_effect: bool = False  # changes the world (send, pay, write, delete, save)

    def schema(self) -> dict[str, Any]:
        props = {n: {"type": t, "description": d} for n, (t, d) in self.parameters.items()}
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": props, "required": list(self.parameters)}}}


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    tools: tuple[Tool, ...]


registry: Registry[Environment] = Registry("agent_environments")


def add(environment: Environment) -> Environment:
    registry.add(environment.name, environment)
    return environment


def all_tools() -> dict[str, Tool]:
    """Every tool of every registered environment, by name (names are unique across environments)."""
    tools: dict[str, Tool] = {}
    for env_name, environment in registry.items():
        # a plugin's mistake, so one line naming it rather than a traceback from deep in a run
        where = f"agent environment '{env_name}'"
        if not isinstance(environment, Environment):
            raise UserError(f"{type(environment).__name__} is not an Environment", where=where,
                            fix="point the tunesafe.agent_environments entry point at an Environment")
        for tool in environment.tools:
            if tool.name in tools:
                raise UserError(f"tool {tool.name} is defined twice (tool names are unique across "
                                "environments)", where=where, fix=f"rename the plugin's tool {tool.name}")
            tools[tool.name] = tool
    return tools


@cache
def _world_data() -> Mapping[str, Any]:
    text = files("tunesafe.agents").joinpath("data/world.yaml").read_text(encoding="utf-8")
    data: Mapping[str, Any] = yaml.safe_load(text)
    return data


def load_world(placements: Mapping[str, str] | None = None, memory: list[str] | None = None) -> World:
    """A fresh world with `placements` (vector -> text) at their markers, every other marker removed;
    `memory` replaces the notes (a later episode of the memory family starts from the earlier notes)."""
    placed = dict(placements or {})

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _MARKER.sub(lambda m: " " + placed[m.group(1)] if m.group(1) in placed else "", value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    data = fill(copy.deepcopy(dict(_world_data())))
    return World(user=data["user"], inbox=data["inbox"], sent=data["sent"], files=data["files"],
                 web=data["web"], bank=data["bank"],
                 memory=list(memory) if memory is not None else data["memory"])


def vectors() -> set[str]:
    return set(_MARKER.findall(json.dumps(_world_data())))


def call_tool(world: World, tools: Mapping[str, Tool], name: str,
              arguments: Mapping[str, Any]) -> tuple[str, bool]:
    """(result text, ok). Tools outside the agent's kit are unknown to it, like a misspelt name."""
    tool = tools.get(name)
    if tool is None:
        return f"error: unknown tool '{name}' (available: {', '.join(sorted(tools))})", False
    problem = _check_arguments(tool, arguments)
    if problem:
        return f"error: {problem}", False
    try:
        value = tool.run(world, **arguments)
    except ToolError as exc:
        return f"error: {exc}", False
    return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)), True


def _check_arguments(tool: Tool, arguments: Mapping[str, Any]) -> str | None:
    extra = sorted(set(arguments) - set(tool.parameters))
    if extra:
        return f"{tool.name} takes no argument {', '.join(extra)}"
    for name, (kind, _) in tool.parameters.items():
        if name not in arguments:
            return f"{tool.name} needs the argument '{name}'"
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
            return f"argument '{name}' of {tool.name} must be a {kind}"
    return None
