"""Dashboard sign-outs, kept in the evidence store. A session cookie is signed, not stored, so a copy of
it (another browser, a proxy log) would stay good until it expires; signing out appends a
`dashboard_sign_out` record naming a hash of the session, and every later request with that session is
refused, by this server and by any other serving the same store, before or after a restart. The record
also says who signed out and when, like any other dashboard action."""

from __future__ import annotations

from tunesafe.evidence.store import Store
from tunesafe.types import RecordType, sha256_hex

SUBJECT_PREFIX = "dashboard-session:"


def session_subject(session: str) -> str:
    """The record subject for a session: a hash (the id itself never leaves the cookie), so the lookup on
    every request is one indexed query."""
    return SUBJECT_PREFIX + sha256_hex(f"tunesafe-dashboard-session:{session}")


def sign_out(store: Store, session: str, actor: str) -> None:
    store.append(RecordType.DASHBOARD_SIGN_OUT, {"session": session_subject(session)}, actor=actor,
                 subject=session_subject(session))


def signed_out(store: Store, session: str) -> bool:
    return next(store.records(type=RecordType.DASHBOARD_SIGN_OUT, subject=session_subject(session)),
                None) is not None
