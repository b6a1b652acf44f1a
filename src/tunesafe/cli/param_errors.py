"""Bad values of options whose range Typer checks itself (`typer.Option(min=, max=)`) as the project's one
error line: Typer reports them as a multi-line boxed usage error, unlike every other bad input."""

from __future__ import annotations

from typing import Any

from tunesafe.errors import UserError


def ranged_param_error(exc: Exception) -> UserError | None:
    """A UserError naming the option, the value and its allowed range, for a bad value of a ranged option;
    None for any other usage error (Typer reports those itself)."""
    param = getattr(exc, "param", None)
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if param is None or (low is None and high is None):
        return None
    name = max(param.opts, key=len) if param.opts else str(param.name)
    value = _given_value(exc)
    kind = "an integer" if _annotation(param) is int else "a number"
    return UserError(f"invalid value {'' if value is None else value}".rstrip(), where=name,
                     fix=f"pass {kind} {_range(low, high)}")


def _given_value(exc: Exception) -> Any:
    # Typer validates with pydantic and chains its ValidationError, which keeps the value as typed.
    errors = getattr(exc.__cause__, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            return found[0].get("input")
    return None


def _annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "annotation", None)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low} to {high}"
    return f">= {low}" if low is not None else f"<= {high}"
