"""Workspace and evidence commands (`init`, `verify`) and the model inventory (`models add|list|show|
import`). Thin: parse, call tunesafe.evidence / tunesafe.production, render."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json
from tunesafe.cli.groups import AUDIT
from tunesafe.evidence.workspace import init_workspace, open_store


def init(path: Path = typer.Argument(Path("."), help="Folder to create .tunesafe/ in.")) -> None:
    """Create a workspace: PATH/.tunesafe/ with config.yaml and the evidence database."""
    workspace, created = init_workspace(path)
    verb = "Created" if created else "Already initialised:"
    console.print(f"{verb} workspace {workspace.dir} (database {workspace.db_url()})",
                  highlight=False, soft_wrap=True)


def verify(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Recompute the evidence hash chain; name the first broken record. Exit 1 when broken."""
    with open_store(db_url(ctx)) as store:
        result = store.verify()
        location = store.location
    if as_json:
        print_json({"location": location, **result.__dict__})
    elif result.ok:
        console.print(f"[green]OK[/] evidence chain intact: {result.checked} records ({location})",
                      highlight=False, soft_wrap=True)
    else:
        bad = result.first_bad
        assert bad is not None
        err_console.print(
            f"[bold red]BROKEN[/] evidence chain at record {bad.id} ({_REASONS[bad.reason]}): "
            f"expected {bad.expected}, found {bad.found} ({location})", highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


_REASONS = {
    "hash": "content edited",
    "link": "a record before it was deleted or reordered",
    "head": "records at the end were deleted, or the chain head was edited",
}


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=AUDIT)(init)
    app.command(rich_help_panel=AUDIT)(verify)
