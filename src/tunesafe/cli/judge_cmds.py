"""`tunesafe judge FILE.jsonl`: re-judge logged (request, response) pairs without re-running a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from tunesafe.cli.common import JSON_OPTION, console, print_rows


def judge(
    file: Path = typer.Argument(..., help="JSONL with `request`, `response`, optional `id` and `kind` "
                                "(harmful / benign / borderline; decided from the request when missing)."),
    judge_names: list[str] = typer.Option(["default"], "--judge", "-j",
                                          help="Judge to run (repeatable): default, refusal, classifier, "
                                               "harm, strongreject, llama-guard, ensemble."),
    judge_model: str = typer.Option(None, "--judge-model", help="Model ref for LLM judges "
                                    "(e.g. openai:NAME@URL)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write one verdict per line (JSONL) to this file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Judge existing (request, response) pairs; one verdict per pair and judge."""
    from tunesafe.judges.base import get_judge
    from tunesafe.judges.pairs import iter_jsonl, judge_pairs, read_pairs
    from tunesafe.screening.request_kind import fill_kinds

    items = read_pairs(file)
    opts = {"model_ref": judge_model} if judge_model else {}
    judges = [get_judge(name, **opts) for name in dict.fromkeys(judge_names)]
    # without a kind every non-refusal would count as harmful: decide it from the request first
    items, kinds = fill_kinds(items)
    rows = judge_pairs(judges, items, kinds)
    if out is not None:
        with out.open("w", encoding="utf-8") as fh:
            fh.writelines(iter_jsonl(rows))
    if as_json:
        sys.stdout.writelines(iter_jsonl(rows))
        return
    print_rows([{**row, "request": _request_cell(row)} for row in rows],
               ["id", "request", "judge", "refused", "harmful", "degenerate", "score", "error"])
    errors = sum(row["error"] is not None for row in rows)
    decided = sum(k["kind_from"] != "given" for k in kinds)
    console.print(f"{len(items)} pairs ({decided} kind(s) decided from the request), {len(judges)} judge(s), "
                  f"{errors} error verdict(s)"
                  + (f"; verdicts written to {out}" if out else ""))


def _request_cell(row: dict[str, Any]) -> str:
    """request_harmful and its score in one narrow column: "harmful 0.82", "benign 0.07", "benign (given)"."""
    label = "harmful" if row["request_harmful"] else "benign"
    if row["kind_from"] == "given":
        return f"{row['kind']} (given)"
    return f"{label} {row['request_harm_score']:.2f}"


def register(app: typer.Typer) -> None:
    app.command("judge", rich_help_panel="After fine-tuning")(judge)
