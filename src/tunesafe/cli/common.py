"""Helpers every CLI module uses: the store from --db / TUNESAFE_DB / the workspace, and output as a
Rich table for people or JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tunesafe.errors import UserError
from tunesafe.types import canonical_json

if TYPE_CHECKING:
    from tunesafe.evidence.store import Store

# No emoji codes: ":child_safety" in a category name must print as written. No markup either, unless a
# print asks for it: most lines carry names, titles, notes and paths from the user or the store, and "[/INST]"
# in one is a MarkupError (or "[bold]" vanishes). A styled line passes markup=True and escapes its values.
console = Console(emoji=False, markup=False)
err_console = Console(stderr=True, emoji=False, markup=False)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def db_url(ctx: typer.Context) -> str | None:
    """The --db given on the root command (or TUNESAFE_DB); None means 'find the workspace'."""
    root = ctx.find_root()
    obj = root.obj or {}
    return obj.get("db")


def write_out(path: Path, text: str, what: str) -> None:
    """Write a command's --out file; an unwritable path is one clear error (exit 2)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the {what}: {exc.strerror or exc}", where=str(path),
                        fix="pass a writable path with --out") from None


def check_out_folder(path: Path, option: str) -> None:
    """Refuse, before any long work, an output folder that cannot be made: the path or one of its parents
    is a file. Nothing is created here; the command makes the folder when it writes into it."""
    for place in (path, *path.parents):
        if place.is_dir():
            return
        if place.exists():
            raise UserError(f"{place} is a file, not a folder", where=option,
                            fix=f"choose another {option} folder")


def warn_if_not_in_inventory(store: Store, *names: str | None) -> None:
    """A record is made against the name either way; an unknown name is most likely a typo."""
    from tunesafe.production.inventory import inventory

    known = inventory(store)
    for name in names:
        if name and name not in known:
            err_console.print(f"warning: model {name!r} is not in the inventory; add it with "
                              "`tunesafe models add` so `tunesafe models` tracks this record",
                              highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(json.loads(canonical_json(value)), indent=2, ensure_ascii=False) + "\n")


def print_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None,
               as_json: bool = False) -> None:
    if as_json:
        print_json(list(rows))
        return
    # Cells are plain text: a name or prompt from the data ("[/INST]", "model[v2]") is no Rich markup.
    # A caller that styles a cell passes a Text.
    table = Table(title=None if title is None else Text(title))
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))
