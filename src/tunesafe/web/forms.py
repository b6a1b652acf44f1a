"""Reading a posted HTML form (application/x-www-form-urlencoded) without a multipart dependency: the
dashboard's forms carry a few short text fields and never files."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import HTTPException, Request

MAX_FORM_BYTES = 64 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "post the form as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    parsed = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}
