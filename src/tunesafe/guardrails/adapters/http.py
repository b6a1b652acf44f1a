"""The HTTP plumbing the URL-based guards share: one client, an optional bearer key from an
environment variable (`?key_env=VAR`, never in the ref), JSON in and out, and errors that say what the
server answered (credentials redacted)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl

import httpx

from tunesafe.errors import UserError
from tunesafe.models.refs import redact_ref

TIMEOUT_S = 30.0


class GuardHTTPError(RuntimeError):
    pass


def split_url(target: str, what: str) -> tuple[str, dict[str, str]]:
    """`http://host/v1?a=b` -> (`http://host/v1`, {a: b}); UserError unless it is an http(s) URL."""
    url, _, query = target.partition("?")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"{what} needs an http(s) URL, got {redact_ref(target)!r}", where="--guard",
                        fix=f"use {what}:http://HOST:PORT/v1")
    return url.rstrip("/"), dict(parse_qsl(query))


def timeout_s(options: dict[str, str], fix: str = "e.g. ?timeout=10") -> float:
    """`?timeout=`; a bad value is one user error (exit 2), not a traceback whose exit 1 reads as a fail."""
    try:
        timeout = float(options.get("timeout", TIMEOUT_S))
        if not timeout > 0:
            raise ValueError
    except ValueError:
        raise UserError(f"timeout={options['timeout']!r} is not a positive number of seconds",
                        where="--guard", fix=fix) from None
    return timeout


class JsonClient:
    def __init__(self, options: dict[str, str]) -> None:
        headers = {}
        if key_env := options.get("key_env"):
            key = os.environ.get(key_env)
            if not key:
                raise UserError(f"environment variable {key_env} is not set", where="--guard",
                                fix=f"export {key_env}=... (the guard's API key)")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.AsyncClient(timeout=timeout_s(options), headers=headers)

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        try:
            resp = await self.client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise GuardHTTPError(redact_ref(f"{type(exc).__name__} from {url}: {exc}")) from None
        if resp.status_code != 200:
            raise GuardHTTPError(redact_ref(f"HTTP {resp.status_code} from {url}: {resp.text[:300]}"))
        try:
            return resp.json()
        except ValueError:
            raise GuardHTTPError(f"non-JSON answer from {redact_ref(url)}: {resp.text[:200]!r}") from None

    async def aclose(self) -> None:
        await self.client.aclose()
