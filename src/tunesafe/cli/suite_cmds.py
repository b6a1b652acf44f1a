"""`tunesafe suite list|show|validate`: thin wrappers over tunesafe.suite."""

from __future__ import annotations

from dataclasses import asdict

import typer

from tunesafe.cli.common import JSON_OPTION, console, print_json, print_rows
from tunesafe.cli.groups import suite_app
from tunesafe.errors import UserError
from tunesafe.suite import Suite, builtin_names, load_suite, parse_mapping
from tunesafe.suite.layouts import KINDS

MAP_OPTION = typer.Option(None, "--map", help="Column mapping and options for files, e.g. "
                          "'text=prompt,kind=label,default_category=misc' (see docs/suites.md).")


def _summary(suite: Suite) -> dict[str, object]:
    return {"name": suite.name, "version": suite.version, **suite.counts(),
            "categories": len(suite.categories()), "content_hash": suite.content_hash, "source": suite.source,
            "left_out": suite.left_out}


@suite_app.command("list")
def list_suites(as_json: bool = JSON_OPTION) -> None:
    """The built-in suites with their sizes."""
    rows = [_summary(load_suite(name)) for name in builtin_names()]
    print_rows(rows, ["name", "version", "items", "harmful", "borderline", "benign", "categories"],
               title="Built-in suites", as_json=as_json)


@suite_app.command("show")
def show(
    name: str = typer.Argument(..., help="A built-in suite name or a file path."),
    kind: str = typer.Option(None, "--kind", help="Only items of this kind (harmful/borderline/benign)."),
    category: str = typer.Option(None, "--category", help="Only items of this category."),
    mapping: str = MAP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The items of a suite, optionally filtered."""
    if kind is not None and kind not in KINDS:
        raise UserError(f"unknown kind '{kind}'", where="--kind", fix=f"use one of {', '.join(KINDS)}")
    suite = load_suite(name, **parse_mapping(mapping))
    items = suite.select(kind=kind, category=category)
    if as_json:
        print_json([{**asdict(b), **({"extra": suite.extra[b.id]} if b.id in suite.extra else {})}
                    for b in items])
        return
    print_rows([asdict(b) for b in items], ["id", "kind", "category", "language", "text"],
               title=f"{suite.name} {suite.version}: {len(items)} of {len(suite.behaviors)} items")


@suite_app.command("validate")
def validate(
    path: str = typer.Argument(..., help="The suite file (.jsonl/.csv/.parquet)."),
    mapping: str = MAP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Load a suite file and report its size, or the first problem (file:line, exit 2)."""
    suite = load_suite(path, **parse_mapping(mapping))
    summary = _summary(suite)
    if as_json:
        print_json(summary)
        return
    console.print(f"ok: {path}: {summary['items']} items ({summary['harmful']} harmful, "
                  f"{summary['borderline']} borderline, {summary['benign']} benign) in "
                  f"{summary['categories']} categories; content hash {suite.content_hash[:16]}"
                  + (f"; {suite.left_out} rows left out ({suite.left_out_why})" if suite.left_out else ""),
                  highlight=False, soft_wrap=True)  # a wrapped path cannot be copied


def register(app: typer.Typer) -> None:
    # The commands hang on the shared suite_app, which app.py mounts as `tunesafe suite`.
    return None
