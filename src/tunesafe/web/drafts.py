"""Keeping what a user typed into a dashboard form when the write is refused for a session reason: the
session expired while they typed (the sign-in link brings them back to the page with the form filled in
from query parameters) or they signed in again since loading the form (a new CSRF token: the page comes
back filled in, 403). Filling a form in never records anything; that still takes the signed-in POST with
this session's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import HTTPException, Request

from tunesafe.errors import StoreUnavailable, UserError
from tunesafe.web.auth import CSRF_FIELD, Access, Identity
from tunesafe.web.forms import form_fields

# The draft travels back in the sign-in link: past this, that link would be longer than servers accept.
MAX_DRAFT_CHARS = 4000
UNSENT = "Your update is not recorded yet: check it below and submit it again."
STALE_CSRF = f"The form's CSRF token is not this sign-in's (it was loaded before). {UNSENT}"
UNSENT_ERROR = (
    "Your session ended before the update was recorded. Copy your note from below, sign in, and submit "
    "it again."
)


@dataclass(frozen=True)
class DraftForm:
    action: re.Pattern[str]  # the form's POST path; its one group names what the form writes to
    page: Callable[[str], str]  # that page's path, from the group (UserError when it names nothing)
    keeps: Callable[[str], bool]  # the posted fields that come back to fill the form in


async def unsent_draft(request: Request, forms: Sequence[DraftForm]) -> tuple[str, str | None] | None:
    """For one of `forms` posted without a valid session: the page to come back to after signing in, with
    the typed fields as query parameters (plus unsent=true) that only fill the form in, and the text to copy
    when the draft is too long to travel in that link. None for any other request."""
    if request.method != "POST":
        return None
    for form in forms:
        if (found := form.action.fullmatch(request.url.path)) is not None:
            break
    else:
        return None
    try:
        back = form.page(found.group(1))
        fields = await form_fields(request)
    except StoreUnavailable:  # the store failing is a 503 like on every page, never "sign in first"
        raise
    except (UserError, HTTPException):
        return None
    draft = {k: v for k, v in fields.items() if k != CSRF_FIELD and v and form.keeps(k)}
    if sum(len(v) for v in draft.values()) > MAX_DRAFT_CHARS:
        return back, _to_copy(draft)
    return f"{back}?{urlencode({**draft, 'unsent': 'true'})}", None


def _to_copy(draft: dict[str, str]) -> str:
    named = [f"{k.removeprefix('field_').replace('_', ' ')}: {v}" for k, v in draft.items() if k != "note"]
    return "\n\n".join(part for part in (*named, draft.get("note")) if part)


def writer_or_refill(request: Request, fields: dict[str, str]) -> Identity | None:
    """The identity behind a form's write; None when the caller is signed in but the form's CSRF token is
    from an earlier sign-in, so the page comes back filled in (STALE_CSRF) rather than a bare refusal."""
    access: Access = request.app.state.access
    try:
        return access.require_writer(request, fields.get(CSRF_FIELD))
    except HTTPException as refused:
        if refused.status_code != 403 or access.identify(request) is None:
            raise
        return None
