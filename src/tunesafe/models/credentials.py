"""API keys that expire (Azure Entra ID access tokens live about an hour): a token source the HTTP client
asks for its key, and asks again when the endpoint answers 401.

Two kinds of provider, one refresh mechanism: a ref's `?key_cmd=COMMAND` (run without a shell; its
stdout, stripped, is the token), or a callable given to the client in Python (`token_provider=`).
The first token is fetched at first use, where a failure is a UserError (the run has not started).
A refresh is made by one request of a burst: requests that got 401 with the same token wait on one lock,
and only the first finds the token unchanged since it was sent (`generation`) and runs the provider.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Callable

from tunesafe.errors import UserError
from tunesafe.models.refs import redact_ref

KEY_CMD_TIMEOUT_S = 30.0
_STDERR_TAIL = 300

TokenProvider = Callable[[], str]


class TokenError(Exception):
    """No token could be had (the command failed, timed out or printed nothing; the callable raised)."""


def command_provider(command: str) -> TokenProvider:
    """The provider of `?key_cmd=COMMAND`. A command that cannot be split is a UserError at once."""
    shown = redact_ref(command)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UserError(f"key_cmd {shown!r} cannot be split into a command: {exc}", where="key_cmd",
                        fix="quote the command's arguments as a shell would, then URL-encode it") from None
    if not argv:
        raise UserError("key_cmd is empty", where="key_cmd",
                        fix="give the command that prints the token, e.g. key_cmd=az%20account%20get-access-"
                            "token%20--query%20accessToken%20-o%20tsv")

    def run() -> str:
        timeout_s = KEY_CMD_TIMEOUT_S
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TokenError(f"key_cmd {shown!r} printed no token within {timeout_s:g} s") from None
        except OSError as exc:
            raise TokenError(f"key_cmd {shown!r} could not be started: {exc.strerror or exc}") from None
        tail = _tail(done.stderr)
        if done.returncode != 0:
            raise TokenError(f"key_cmd {shown!r} failed with exit status {done.returncode}" +
                             (f": {tail}" if tail else ""))
        token = done.stdout.strip()
        if not token:
            raise TokenError(f"key_cmd {shown!r} printed no token" + (f" (stderr: {tail})" if tail else ""))
        return token

    return run


class TokenSource:
    """The current token of a provider; `generation` counts refreshes (failed ones too, so the requests
    of a burst never run a failing provider once each)."""

    def __init__(self, provider: TokenProvider, name: str = "token_provider") -> None:
        self.name = name
        self._provider = provider
        self.token: str | None = None
        self.generation = 0
        self.issued: list[str] = []  # every token handed out: a server may echo an old one back
        self.last_error: str | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def current(self) -> str:
        """The token, fetched at first use: a provider that fails then is a UserError."""
        if self.token is None:
            try:
                token = self._fetch()
            except TokenError as exc:
                raise UserError(str(exc), where=self.name,
                                fix="make it give a valid token (try it by hand), then run again") from None
            self._set(token)
            return token
        return self.token

    async def refresh(self, seen: int) -> None:
        """A new token, unless another request refreshed it since the token of generation `seen` was
        sent. Raises TokenError when the provider fails (the old token is kept)."""
        async with self._lock_of_loop():
            if self.generation != seen:
                return
            try:
                token = await asyncio.to_thread(self._fetch)
            except TokenError as exc:
                self.last_error = str(exc)
                raise
            else:
                self.last_error = None
                self._set(token)
            finally:  # counted once the fetch is over: a request sent meanwhile carried the old token
                self.generation += 1

    def _set(self, token: str) -> None:
        self.token = token
        if token not in self.issued:
            self.issued.append(token)

    def _fetch(self) -> str:
        try:
            token = self._provider()
        except TokenError:
            raise
        except Exception as exc:  # a user's callable: its failure is the token's, not the run's crash
            raise TokenError(f"{self.name} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(token, str) or not token.strip():
            raise TokenError(f"{self.name} returned no token")
        return token.strip()

    def _lock_of_loop(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop, and a CLI may run several in turn.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock


# what a client takes for its key: a callable, or a source shared with other clients (replicas)
KeySource = TokenProvider | TokenSource


def _tail(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]
