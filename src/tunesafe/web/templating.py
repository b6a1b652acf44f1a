"""Rendering pages: one Jinja environment with autoescape on for every template and string, so model
answers, prompts and names are always text, never markup. Charts come from tunesafe.reports.charts as
markup built with html.escape; nothing else is marked safe."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from tunesafe.evidence.store import Store
from tunesafe.production import inventory as inv
from tunesafe.reports import view

# Bidi embeddings, overrides and isolates: one in a stored name (a suite's category, an incident title)
# reorders everything after it up to the end of the line, the figures of a gate reason included.
# Left-to-right/right-to-left marks reorder the neutral characters beside them (a figure's sign), and
# zero-width characters (spaces, joiners, word joiner, BOM) make two different names look the same.
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2060\ufeff]")


class Exact(str):
    """Text that goes back to the server as it is (a filter's option value, a hidden field): no marks."""


def _shown(value: Any) -> Any:
    """Every printed value: bidi controls, directional marks and zero-width characters become visible
    marks ("[U+202E]") that reorder and hide nothing."""
    if isinstance(value, str) and not isinstance(value, Exact) and _INVISIBLE.search(value):
        shown = _INVISIBLE.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
        return Markup(shown) if isinstance(value, Markup) else shown  # a chart stays markup: marks are text
    return value


ENV = Environment(
    loader=PackageLoader("tunesafe.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_shown,
)
ENV.filters.update(
    pct=view.pct, points=view.points, pvalue=view.pvalue, interval=view.interval, mde=view.mde, name=view.name
)


def _with_query(request: Request, path: str | None = None, **changes: Any) -> str:
    """This page's URL (or `path` with this page's query) with some query parameters changed (None removes
    one): paging and sort links."""
    params = {k: v for k, v in request.query_params.items()}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    path = path or request.url.path
    return f"{path}?{urlencode(params)}" if params else path


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)  # escaped by autoescape


ENV.globals["with_query"] = _with_query
ENV.filters["pretty_json"] = _pretty_json
ENV.filters["exact"] = Exact


class _Inventory:
    """`name in inventory` in a template: whether a name has a model page. Runs, gates and incidents may
    carry a name that was never added to the inventory; linking it would be a 404. Read once per page,
    on first use."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._names: set[str] | None = None

    def __contains__(self, name: object) -> bool:
        if self._names is None:
            self._names = set(inv.inventory(self._store))
        return name in self._names


def page(request: Request, template: str, context: Mapping[str, Any], status_code: int = 200, *,
         anonymous: bool = False) -> HTMLResponse:
    """`anonymous`: render without asking who is signed in (that asks the store: not when it failed)."""
    access = request.app.state.access
    who = None if anonymous else access.identify(request)
    body = ENV.get_template(template).render(
        request=request,
        who=who,
        writable=access.writable,
        writes_off=access.writes_off if access.writable else None,
        csrf=access.csrf_token(who.session) if who is not None else None,
        inventory=_Inventory(request.app.state.store),
        **context,
    )
    return HTMLResponse(body, status_code=status_code)
