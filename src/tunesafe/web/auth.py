"""Who may use the dashboard, and how that is checked.

Rules (docs/dashboard.md):
- On a loopback address the dashboard may run without a token; on any other address `check_bind`
  refuses to start without one (a UserError: exit 2, nothing served). Without a token, requests whose
  Host header is not a loopback name are refused (DNS rebinding).
- With a token, every request must be signed in: an `Authorization: Bearer TOKEN` header, or the session
  cookie that POST /login sets after checking the token, good for SESSION_SECONDS (12 hours) or until
  its session signs out (POST /logout revokes it in the store: tunesafe.web.sessions). Every
  comparison is `hmac.compare_digest`.
- Without a token the dashboard is read-only: writes are refused, because an unauthenticated write would
  be evidence with no accountable actor.
- A write needs the token and a CSRF token (form field `csrf_token` or header `X-CSRF-Token`) bound to
  the session; the actor recorded in the evidence is the name given at sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request

from tunesafe.errors import UserError, read_user_text

TOKEN_ENV = "TUNESAFE_TOKEN"
COOKIE = "tunesafe_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
ACTOR_HEADER = "x-tunesafe-actor"
MIN_TOKEN_CHARS = 16
SESSION_SECONDS = 12 * 3600  # a sign-in lasts a working day
BEARER_SESSION = "bearer"  # the session id of header-authenticated clients (no cookie to bind to)
_ACTOR = re.compile(r"^[\w.@+ -]{1,80}$")


@dataclass(frozen=True)
class Identity:
    """A signed-in caller: the actor name written into evidence, and the session its CSRF token binds to."""

    actor: str
    session: str
    named: bool = True  # False: an API client that sent no (valid) X-Tunesafe-Actor, so "api client"

    @property
    def evidence_actor(self) -> str:
        """The actor written into evidence records: the name given at sign-in, marked as a dashboard write."""
        return f"{self.actor} (dashboard)"


@dataclass(frozen=True)
class Access:
    token: str | None  # None: open reads, no writes (loopback only)
    # whether a session id signed out (create_app binds it to the store); None: no sign-out is known
    signed_out: Callable[[str], bool] | None = field(default=None, compare=False)
    # why the store behind this dashboard cannot be written (create_app sets it); None: it can
    writes_off: str | None = None

    @property
    def writable(self) -> bool:
        return self.token is not None

    # ---- checking requests ---------------------------------------------------------------------------

    def identify(self, request: Request) -> Identity | None:
        """The caller, when signed in; None when not (always None without a token)."""
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given:
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return None
            actor = request.headers.get(ACTOR_HEADER, "").strip()
            if _ACTOR.match(actor):
                return Identity(actor, BEARER_SESSION)
            return Identity("api client", BEARER_SESSION, named=False)
        return self._from_cookie(request.cookies.get(COOKIE))

    def host_allowed(self, request: Request) -> bool:
        """Without a token only loopback names are served: a page on another site that rebinds its own
        DNS name to 127.0.0.1 would otherwise read the open dashboard (its Host header gives it away)."""
        return self.token is not None or is_loopback(request.url.hostname or "")

    def can_read(self, request: Request) -> bool:
        return self.token is None or self.identify(request) is not None

    def require_writer(self, request: Request, csrf: str | None) -> Identity:
        """The identity behind a write; HTTPException 403 when there is no token, the caller is not signed
        in or the CSRF token does not match the caller's session; 409 when the store cannot be written."""
        if self.token is None:
            raise HTTPException(
                403,
                "read-only dashboard: start `tunesafe serve` with --token-file or "
                f"{TOKEN_ENV} to allow writes",
            )
        if self.writes_off is not None:
            # every write (form, API, sign-out) passes here, so none reaches the store to fail there as 503
            raise HTTPException(409, f"this store is read-only: {self.writes_off}; nothing can be recorded "
                                "here. Serve a copy of the store that can be written to record updates")
        who = self.identify(request)
        if who is None:
            raise HTTPException(401, "sign in with the dashboard token first")
        given = csrf or request.headers.get(CSRF_HEADER) or ""
        if not hmac.compare_digest(given.encode(), self.csrf_token(who.session).encode()):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page and submit again")
        return who

    # ---- sessions ------------------------------------------------------------------------------------

    def sign_in(self, given_token: str, actor: str, now: float | None = None) -> str:
        """The session cookie value for a correct token; HTTPException 401 otherwise."""
        if self.token is None or not hmac.compare_digest(given_token.encode(), self.token.encode()):
            raise HTTPException(401, "wrong token")
        name = check_actor(actor)
        nonce = secrets.token_hex(16)
        issued = int(time.time() if now is None else now)
        payload = f"{_b64(name)}.{nonce}.{issued}"
        return f"{payload}.{self._mac('session', payload)}"

    def csrf_token(self, session: str) -> str:
        return self._mac("csrf", session)

    def _from_cookie(self, value: str | None) -> Identity | None:
        if not value or value.count(".") != 3:
            return None
        encoded, nonce, issued, mac = value.split(".")
        payload = f"{encoded}.{nonce}.{issued}"
        if not hmac.compare_digest(mac.encode(), self._mac("session", payload).encode()):
            return None
        # a copied cookie must not stay good for as long as the token does
        if not issued.isdigit() or not 0 <= time.time() - int(issued) <= SESSION_SECONDS:
            return None
        try:
            actor = base64.urlsafe_b64decode(encoded.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if self.signed_out is not None and self.signed_out(nonce):  # a copy outlives no sign-out
            return None
        return Identity(actor, nonce)

    def _mac(self, purpose: str, message: str) -> str:
        assert self.token is not None
        key = hashlib.sha256(f"tunesafe-dashboard:{purpose}:{self.token}".encode()).digest()
        return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def check_actor(actor: str) -> str:
    actor = actor.strip()
    if not _ACTOR.match(actor):
        raise HTTPException(400, "name: 1-80 letters, digits, spaces and . @ + - _")
    return actor


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


# ---- starting the server -----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def read_token(token_file: Path | None) -> str | None:
    """The token from --token-file, else TUNESAFE_TOKEN, else None. UserError for an unreadable file or
    a token too short to resist guessing."""
    if token_file is not None:
        fix = "pass a readable file holding the token (e.g. `openssl rand -hex 32 > F`)"
        token = read_user_text(token_file, "token file", fix=fix).strip()
        where = str(token_file)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        where = TOKEN_ENV
        if not token:
            return None
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError(
            f"the token has {len(token)} characters; at least {MIN_TOKEN_CHARS} are needed",
            where=where,
            fix="generate one with `openssl rand -hex 32`",
        )
    return token


def check_bind(host: str, token: str | None) -> Access:
    """The access rules for serving on `host`: refuses a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise UserError(
            f"refusing to serve on {host} without a token: anyone who reaches it could read "
            "every model answer in the store",
            where="--host",
            fix=f"pass --token-file FILE or set {TOKEN_ENV}, or serve on 127.0.0.1",
        )
    return Access(token)
