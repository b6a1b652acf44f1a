"""The one interface every guardrail adapter implements, and the registry that builds them from refs.

A ref is `SCHEME:TARGET`, e.g. `llama-guard:openai:guard@http://host/v1`, `moderation:http://host/v1`,
`nemo:http://host/v1?config_id=prod`, `guarded-chat:openai:MODEL@URL`, `python:pkg.module:function`.
One option belongs to every adapter and is taken off the ref before the adapter sees it:
`on_error=closed|open` (default closed), what the deployment does with a request when this guard
errors: blocks it (fails closed) or lets it through (fails open).

Errors are explicit: a check that failed returns a decision with `error` set and `blocked` None. It is
never counted as a block; the verification reports errors on their own and states the fail mode.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from tunesafe.errors import UserError
from tunesafe.registry import Registry
from tunesafe.types import Message

Side = Literal["input", "output"]
FailMode = Literal["closed", "open"]
FAIL_MODES: tuple[FailMode, ...] = ("closed", "open")


@dataclass(frozen=True)
class GuardDecision:
    """One check. `blocked` None means undecided (`error` says why): never a block, never a pass."""

    blocked: bool | None
    categories: tuple[str, ...] = ()
    latency_s: float = 0.0
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, message: str, latency_s: float = 0.0, **detail: Any) -> GuardDecision:
        return cls(blocked=None, latency_s=latency_s, error=message, detail=detail)


@runtime_checkable
class Guard(Protocol):
    """A guardrail. `sides` are the checks it has (a guarded chat endpoint has only `input`: the whole
    system answers or declines, so its decision covers both sides). Checks never raise."""

    ref: str
    name: str
    fail_mode: FailMode
    sides: frozenset[Side]

    async def check_input(self, messages: Sequence[Message]) -> GuardDecision: ...

    async def check_output(self, messages: Sequence[Message], answer: str) -> GuardDecision: ...

    async def aclose(self) -> None: ...


GuardFactory = Callable[[str, FailMode], Guard]
registry: Registry[GuardFactory] = Registry("guardrails")


def last_user(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


async def timed(check: Callable[[], Awaitable[GuardDecision]]) -> GuardDecision:
    """Run one check, time it, and turn an exception into an error decision (fail closed: an adapter
    bug is never a pass)."""
    start = time.perf_counter()
    try:
        decision = await check()
    except Exception as exc:
        return GuardDecision.failed(f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    return settled(GuardDecision(blocked=decision.blocked, categories=decision.categories, latency_s=elapsed,
                                 error=decision.error, detail=decision.detail))


def settled(decision: GuardDecision) -> GuardDecision:
    """The decision held to the contract above. A guard (a team's callable, a plugin) can hand back
    `blocked` None without an error, or an error with `blocked` set: the first would pass uncounted (not
    a block, not an error, and the deployment lets the request through), the second would count a
    failed check as decided. Both are errors."""
    if decision.blocked is None and decision.error is None:
        return GuardDecision(blocked=None, latency_s=decision.latency_s, detail=decision.detail,
                             error="the guard returned no decision (blocked is None) and no error")
    if decision.error is not None and decision.blocked is not None:
        return GuardDecision(blocked=None, latency_s=decision.latency_s, error=decision.error,
                             detail={**decision.detail, "reported_blocked": decision.blocked})
    return decision


def split_options(target: str) -> tuple[str, FailMode]:
    """Take `on_error` off the ref's query string; the rest stays for the adapter (e.g. key_env)."""
    from tunesafe.models.refs import take_option

    target, mode = take_option(target, "on_error")
    mode = mode or "closed"
    if mode not in FAIL_MODES:
        raise UserError(f"on_error={mode!r} is not a fail mode", where="--guard",
                        fix="use on_error=closed (errors block) or on_error=open (errors pass)")
    return target, mode  # type: ignore[return-value]


def canonical_ref(ref: str) -> str:
    """The ref as inventories and evidence name it: `on_error` shown only when it is `open` (closed is
    the default), so `X` and `X?on_error=closed` are one guard and `X?on_error=open` another."""
    scheme, sep, target = ref.partition(":")
    target, mode = split_options(target)
    if mode == "closed":
        return f"{scheme}{sep}{target}"
    return f"{scheme}{sep}{target}{'&' if '?' in target else '?'}on_error=open"


def check_guard_ref(ref: str) -> None:
    """A ref names a known scheme and a target; nothing is built, imported or reached."""
    from tunesafe.guardrails import adapters  # noqa: F401  (registers the built-ins)

    scheme, sep, target = ref.partition(":")
    fix = f"use SCHEME:TARGET with a scheme from: {', '.join(registry.names())}"
    if not sep or not target.strip():
        raise UserError(f"guardrail ref {ref!r} has no target", where="--guard", fix=fix)
    if scheme not in registry:
        raise UserError(f"unknown guardrail scheme {scheme!r} in {ref!r}", where="--guard", fix=fix)


def load_guard(ref: str) -> Guard:
    """Build the adapter a ref names (built-ins, or plugins in the `tunesafe.guardrails` group)."""
    check_guard_ref(ref)
    scheme, _, target = ref.partition(":")
    target, mode = split_options(target)
    return registry.get(scheme)(target, mode)
