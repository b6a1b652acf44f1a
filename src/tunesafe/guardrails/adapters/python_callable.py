"""`python:MODULE:FUNCTION`: a team's own filter as a plain callable `(text, side) -> GuardDecision`
(a bool is accepted too: True blocks). Input side gets the user's message, output side the answer. A
raised exception is an error decision, never a pass; a sync callable runs in a worker thread. A check
that does not answer within `?timeout=SECONDS` (default 30) is an error decision too: a filter stuck on
a dead backend must not stall the run."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from tunesafe.errors import UserError
from tunesafe.guardrails.adapters.http import TIMEOUT_S
from tunesafe.guardrails.adapters.http import timeout_s as timeout_option
from tunesafe.guardrails.base import FailMode, GuardDecision, Side, last_user, registry, timed
from tunesafe.types import Message


class PythonGuard:
    name = "python"
    sides: frozenset[Side] = frozenset({"input", "output"})

    def __init__(self, target: str, function: Callable[..., Any], fail_mode: FailMode = "closed",
                 timeout_s: float = TIMEOUT_S) -> None:
        self.ref = f"python:{target}"
        self.function = function
        self.fail_mode = fail_mode
        self.timeout_s = timeout_s

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision:
        return await timed(lambda: self._call(last_user(messages), "input"))

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision:
        return await timed(lambda: self._call(answer, "output"))

    async def _call(self, text: str, side: Side) -> GuardDecision:
        if inspect.iscoroutinefunction(self.function):
            pending = self.function(text, side)
        else:  # a hung thread cannot be stopped; the check gives up on it and the run goes on
            pending = asyncio.to_thread(self.function, text, side)
        try:
            result = await asyncio.wait_for(pending, self.timeout_s)
        except TimeoutError:
            return GuardDecision.failed(f"{self.ref} did not answer within {self.timeout_s:g} s")
        if isinstance(result, GuardDecision):
            return result
        if isinstance(result, bool):
            return GuardDecision(blocked=result)
        return GuardDecision.failed(f"{self.ref} returned {type(result).__name__}, not a GuardDecision")

    async def aclose(self) -> None:
        return None


@registry.register("python")
def _factory(ref_target: str, fail_mode: FailMode) -> PythonGuard:
    target, _, query = ref_target.partition("?")
    options = dict(parse_qsl(query))
    timeout_s = timeout_option(options, fix="e.g. python:my_package.filters:check?timeout=10")
    options.pop("timeout", None)
    if options:
        raise UserError(f"python guard {ref_target!r}: unknown option(s) {', '.join(options)}",
                        where="--guard", fix="python guards take timeout= and on_error= only")
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"python guard {target!r} is not MODULE:FUNCTION", where="--guard",
                        fix="use python:my_package.filters:check")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load {target}: {exc}", where="--guard",
                        fix="check the module is importable (PYTHONPATH) and defines the function") from None
    if not callable(function):
        raise UserError(f"{target} is not callable", where="--guard", fix="name a function")
    guard = PythonGuard(target, function, fail_mode, timeout_s)
    guard.ref = f"python:{ref_target}"  # the timeout is part of what was verified
    return guard
