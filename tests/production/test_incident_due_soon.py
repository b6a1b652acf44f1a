"""The last day before an Art. 73 deadline reads as DUE SOON in `incidents list` (and wherever the clock is
shown), as PROD-04 asks ("alert at T-1d"); a real SQLite store through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tunesafe.cli.app import app


def _list(db: str, now: str) -> dict[str, object]:
    done = CliRunner().invoke(app, ["--db", db, "incidents", "list", "--now", now, "--json"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.stdout)
    return dict(row)


def test_the_last_day_before_the_deadline_reads_due_soon(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    opened = CliRunner().invoke(app, ["--db", db, "incidents", "open", "support-bot", "--title", "t",
                                      "--severity", "high", "--kind", "widespread", "--aware-at",
                                      "2026-12-01T09:30:00Z", "--now", "2026-12-01T10:00:00Z"])
    assert opened.exit_code == 0, opened.output
    assert _list(db, "2026-12-02T09:29:59Z")["clock"] == "1d 0h left"
    assert _list(db, "2026-12-02T09:30:00Z")["clock"] == "DUE SOON: 1d 0h left"
    assert _list(db, "2026-12-03T08:00:00Z")["clock"] == "DUE SOON: 1h 30m left"
    assert str(_list(db, "2026-12-03T09:30:01Z")["clock"]).startswith("OVERDUE by")
