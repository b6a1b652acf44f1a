"""Gate reports rendered from the gate-decision evidence body: a self-contained HTML page, a Markdown
summary for pull-request comments, and the JSON itself."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.types import EvidenceRecord, canonical_json

FILES = {"html": "report.html", "markdown": "summary.md", "json": "decision.json"}


def decision_json(body: Mapping[str, Any], record: EvidenceRecord | None = None) -> dict[str, Any]:
    evidence = None if record is None else {"id": record.id, "hash": record.hash,
                                            "created_at": record.created_at}
    data: dict[str, Any] = json.loads(canonical_json({**body, "evidence": evidence}))
    return data


def write_reports(body: Mapping[str, Any], out_dir: Path, *,
                  record: EvidenceRecord | None = None) -> dict[str, Path]:
    """Write report.html, summary.md and decision.json into out_dir; returns format -> path."""
    from tunesafe.reports.html import render_html
    from tunesafe.reports.markdown import render_markdown

    return write_files(out_dir, FILES, html=render_html(body, record), markdown=render_markdown(body),
                       data=decision_json(body, record))


def write_files(out_dir: Path, names: Mapping[str, str], *, html: str, markdown: str,
                data: Mapping[str, Any]) -> dict[str, Path]:
    """One report's three renderings (`names`: format -> file name) into out_dir, for every report kind
    (gate, training, guardrails); a folder that cannot be written is one clear error."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {fmt: out_dir / name for fmt, name in names.items()}
        paths["html"].write_text(html, encoding="utf-8")
        paths["markdown"].write_text(markdown, encoding="utf-8")
        paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the reports: {exc}", where=str(out_dir),
                        fix="pass a writable folder with --out") from None
    return paths
