"""Rendering of the governance documents: the same Jinja setup as the reports (tunesafe.reports), with
this package's templates first and the reports' shared style reachable, so documents look like reports."""

from __future__ import annotations

from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape

from tunesafe.reports import view

_ENV = Environment(loader=ChoiceLoader([PackageLoader("tunesafe.governance", "templates"),
                                        PackageLoader("tunesafe.reports", "templates")]),
                   autoescape=select_autoescape(["html.j2"]), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENV.filters.update(pct=view.pct)


def render_template(name: str, **context: Any) -> str:
    """Templates ending in .html.j2 are HTML-escaped; Markdown ones are not (they escape by hand)."""
    return _ENV.get_template(name).render(**context)
