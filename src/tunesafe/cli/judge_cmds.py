"""`tunesafe judge FILE.jsonl`: re-judge logged (request, response) pairs without re-running a model;
`tunesafe runs rejudge RUN`: judge a stored run's answers again as a new run."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from tunesafe.cli.common import JSON_OPTION, console, db_url, print_json, print_rows
from tunesafe.cli.groups import runs_app
from tunesafe.evidence.workspace import open_store


def judge(
    file: Path = typer.Argument(..., help="JSONL with `request`, `response`, optional `id` and `kind`."),
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

    items = read_pairs(file)
    opts = {"model_ref": judge_model} if judge_model else {}
    judges = [get_judge(name, **opts) for name in dict.fromkeys(judge_names)]
    rows = judge_pairs(judges, items)
    if out is not None:
        with out.open("w", encoding="utf-8") as fh:
            fh.writelines(iter_jsonl(rows))
    if as_json:
        sys.stdout.writelines(iter_jsonl(rows))
        return
    print_rows(rows, ["id", "judge", "refused", "harmful", "degenerate", "score", "error"])
    errors = sum(row["error"] is not None for row in rows)
    console.print(f"{len(items)} pairs, {len(judges)} judge(s), {errors} error verdict(s)"
                  + (f"; verdicts written to {out}" if out else ""))


def runs_rejudge(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (see `tunesafe runs list`)."),
    judge_names: list[str] = typer.Option(["default"], "--judge", "-j", help="Judge (repeatable)."),
    judge_model: str = typer.Option(None, "--judge-model", help="Model ref for LLM judges "
                                    "(e.g. openai:NAME@URL)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Judge a stored run's answers again, without calling the model: a new run linked to RUN.

    Same attempts and generations, verdicts of the judges installed now; `gate` and `compare` reuse it."""
    from tunesafe.engine.rejudge import judges_label, rejudge_run
    from tunesafe.engine.results import load_run

    with open_store(db_url(ctx)) as store:
        new_id = asyncio.run(rejudge_run(store, run_id, judge_names, judge_model_ref=judge_model))
        info = load_run(store, new_id)
    if as_json:
        print_json(info.as_dict())
        return
    console.print(f"re-judged run {run_id} as run {info.id}: {info.n_done} attempts, {info.n_errors} errors, "
                  f"judges {judges_label(info.config['judges'])}; no model calls", highlight=False,
                  soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("judge", rich_help_panel="After fine-tuning")(judge)
    runs_app.command("rejudge")(runs_rejudge)
