"""Request parameters an OpenAI-compatible server refuses, and how the client adapts for the rest of a run.

OpenAI's reasoning models (o1, o3, o4-mini, the gpt-5 family, and fine-tunes of them) answer a chat body
with `max_tokens` with HTTP 400 "Unsupported parameter: 'max_tokens' is not supported with this model.
Use 'max_completion_tokens' instead.", and refuse `stop` the same way; some providers refuse `seed`.
Mistral's API (and Azure AI Foundry's Mistral deployments) refuse fields their schema lacks, `seed`
among them, with pydantic's HTTP 422 `extra_forbidden` (`loc: ["body", "seed"]`): read the same way.
Without adapting, every attempt of a run against such a model is an error. The client renames or drops
the parameter the server named and sends the request again; later requests are built the same way.

Two refusals are not adapted to, because the adapted run would measure something else than asked:
- a temperature the model does not take (reasoning models take only their default, 1): greedy answers
  cannot be had, so each attempt is an error that says to rerun with `--temperature 1`;
- the rest (any other parameter, or a value of one) stay the plain 400 errors they are.

Dropping `stop` loses nothing: the client cuts answers at the stop strings itself (models/base.apply_stop).
Hidden reasoning (`usage.completion_tokens_details.reasoning_tokens`) counts against
`max_completion_tokens`; an answer it crowded out entirely is an error (`hidden_reasoning_error`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any

RENAMED = {"max_tokens": "max_completion_tokens"}
DROPPABLE = {"stop": "not sent; answers are cut at the stop strings by tunesafe",
             "seed": "not sent; the server takes no seed, so sampled answers are not reproducible"}
_NAMED = re.compile(r"unsupported (?:parameter|value)s?:? *'([A-Za-z_]+)'", re.IGNORECASE)


class UnsupportedTemperature(Exception):
    """The model takes only its own temperature; the message says what to do."""


class RequestShape:
    """What this client renames or leaves out of its request bodies, learnt from the server's 400s.
    Shared by the concurrent requests of one client; it only ever grows, so a body is resent at most
    once per parameter."""

    def __init__(self) -> None:
        self._renamed: dict[str, str] = {}
        self._dropped: set[str] = set()
        self._lock = threading.Lock()

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        if not self._renamed and not self._dropped:  # every server but a few: no copy per request
            return payload
        with self._lock:
            renamed, dropped = dict(self._renamed), set(self._dropped)
        shaped = {}
        for key, value in payload.items():
            if key not in dropped:
                shaped[renamed.get(key, key)] = value
        return shaped

    def adapt(self, status: int, text: str, sent: Mapping[str, Any]) -> bool:
        """Whether the server's answer refused a parameter of `sent` that the client now renames or
        drops (send again). Raises UnsupportedTemperature when it refused the temperature."""
        if status not in (400, 422):
            return False
        param = refused_param(text)
        if param is None or param not in sent:
            return False
        if param == "temperature":
            raise UnsupportedTemperature(
                f"the server refused temperature {sent['temperature']:g} ({_message(text)[:160]}): this "
                "model samples at its own default temperature only; rerun with --temperature 1 (its "
                "answers are then sampled, not greedy: give the other side of a gate the same)")
        with self._lock:
            if param in RENAMED and RENAMED[param] not in sent:
                self._renamed[param] = RENAMED[param]
                return True
            if param in DROPPABLE:
                self._dropped.add(param)
                return True
        return False

    def summary(self) -> dict[str, str]:
        """For the run record: each parameter adapted and how."""
        with self._lock:
            out = {k: f"sent as {v}" for k, v in sorted(self._renamed.items())}
            out.update({k: DROPPABLE[k] for k in sorted(self._dropped)})
        return out


def refused_param(text: str) -> str | None:
    """The request parameter an error body says the server does not support, or None."""
    error: Any = None
    try:
        body = json.loads(text)
        error = body.get("error", body) if isinstance(body, dict) else None
    except ValueError:
        pass
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        param = error.get("param")
        if isinstance(param, str) and code.startswith("unsupported_"):
            return param
        if (extra := _extra_forbidden(error)) is not None:
            return extra
    match = _NAMED.search(_message(text))
    return match.group(1) if match else None


def _extra_forbidden(error: Mapping[str, Any]) -> str | None:
    """The top-level body field a pydantic 422 calls an extra input ("extra_forbidden" at loc ["body",
    FIELD]), or None. FastAPI servers put the list at `detail` (Azure AI Foundry's Mistral deployments
    refuse `seed` so); Mistral's API nests it under `message`, as an object or as a JSON string."""
    holder: Any = error
    message = error.get("message")
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            message = json.loads(message)
        except ValueError:
            message = None
    if "detail" not in error and isinstance(message, dict):
        holder = message
    detail = holder.get("detail")
    for item in detail if isinstance(detail, list) else ():
        loc = item.get("loc") if isinstance(item, dict) else None
        if item.get("type") == "extra_forbidden" and isinstance(loc, list) and len(loc) == 2 \
                and loc[0] == "body" and isinstance(loc[1], str):
            return loc[1]
    return None


def hidden_reasoning_tokens(usage: Any) -> int:
    """The reasoning tokens a reply's usage counts (OpenAI's reasoning models return no trace), or 0."""
    details = usage.get("completion_tokens_details") if isinstance(usage, Mapping) else None
    reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    return reasoning if isinstance(reasoning, int) and not isinstance(reasoning, bool) else 0


def hidden_reasoning_error(usage: Mapping[str, Any], answer: str, finish: str) -> str | None:
    """Why a reply is no answer when hidden reasoning used up the budget, or None when it left one."""
    reasoning = hidden_reasoning_tokens(usage)
    if answer.strip() or reasoning <= 0:
        return None
    return (f"the model spent {reasoning} tokens reasoning (hidden) and gave no answer (finish_reason "
            f"{finish}): raise --max-new-tokens; for reasoning models it bounds reasoning and answer "
            "together")


def _message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return text
