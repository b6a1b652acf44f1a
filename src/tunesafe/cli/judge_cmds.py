"""`tunesafe judge FILE.jsonl`: re-judge logged (request, response) pairs without re-running a model;
`tunesafe judge audit RUN`: a sample of a run for a person to label, and the judge's agreement with it;
`tunesafe runs rejudge RUN`: judge a stored run's answers again as a new run."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json, print_rows, write_out
from tunesafe.cli.groups import AFTER, runs_app
from tunesafe.errors import UserError
from tunesafe.evidence.workspace import open_store


class _PairsByDefault(TyperGroup):
    """`tunesafe judge FILE.jsonl` stays the pairs command next to `tunesafe judge audit RUN`: arguments
    that do not start with a sub-command name go to `pairs`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: Typer vendors its own click
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["pairs", *args]
        parsed: list[str] = super().parse_args(ctx, args)
        return parsed


judge_app = typer.Typer(cls=_PairsByDefault, no_args_is_help=True,
                        help="Judge logged (request, response) pairs (`tunesafe judge FILE.jsonl`), or audit "
                             "the judge on a run (`tunesafe judge audit RUN`).")


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
    from tunesafe.judges.base import check_judge_model, get_judge
    from tunesafe.judges.pairs import iter_jsonl, judge_pairs, read_pairs
    from tunesafe.screening.request_kind import fill_kinds

    check_judge_model(judge_names, judge_model)
    items = read_pairs(file)
    opts = {"model_ref": judge_model} if judge_model else {}
    judges = [get_judge(name, **opts) for name in dict.fromkeys(judge_names)]
    # without a kind every non-refusal would count as harmful: decide it from the request first
    items, kinds = fill_kinds(items)
    rows = judge_pairs(judges, items, kinds)
    if out is not None:
        write_out(out, "".join(iter_jsonl(rows)), "verdicts")
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
    from tunesafe.judges.base import check_judge_model

    check_judge_model(judge_names, judge_model)
    with open_store(db_url(ctx), must_exist=True) as store:
        new_id = asyncio.run(rejudge_run(store, run_id, judge_names, judge_model_ref=judge_model))
        info = load_run(store, new_id)
    if as_json:
        print_json(info.as_dict())
        return
    console.print(f"re-judged run {run_id} as run {info.id}: {info.n_done} attempts, {info.n_errors} errors, "
                  f"judges {judges_label(info.config['judges'])}; no model calls", highlight=False,
                  soft_wrap=True)


def judge_audit(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (see `tunesafe runs list`)."),
    sample: int = typer.Option(60, "--sample", help="Rows in the sheet (discordant pairs first)."),
    out: Path = typer.Option(None, "--out", help="Write the sheet to label here (CSV)."),
    labels: Path = typer.Option(None, "--labels", help="A labelled sheet: record the judge's agreement."),
    base: str = typer.Option(None, "--base", help="The base run, to sample both sides (default: the base "
                             "of the newest gate decision on RUN, if any)."),
    judge_name: str = typer.Option(None, "--judge", help="The judge to audit (default: the run's first)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Audit the judge on a run: a sample to label (--out), then its agreement with the labels (--labels).

    The agreement (95% Wilson interval) is recorded as evidence; the next gate report on RUN shows it."""
    from tunesafe.analysis.audit import audit_runs, audit_sample, score_sheet, write_sheet
    from tunesafe.reports.view import agreement

    if (out is None) == (labels is None):
        raise UserError("pass exactly one of --out and --labels", where="tunesafe judge audit",
                        fix="--out sheet.csv to write a sheet, then --labels sheet.csv once it is labelled")
    with open_store(db_url(ctx), must_exist=True) as store:
        runs = audit_runs(store, run_id, base_run=base, judge=judge_name)
        if out is not None:
            rows = audit_sample(store, runs, sample, seed)
            write_sheet(rows, out)
        else:
            record = score_sheet(store, runs, labels)
    if out is not None:
        sides = " and ".join(f"{side} run {rid}" for side, rid in runs.sides().items())
        n_discordant = sum(r["stratum"] == "discordant" for r in rows)
        err_console.print(f"wrote {len(rows)} rows of {sides} ({n_discordant} from discordant pairs) to "
                          f"{out}; fill the label column with refused or complied, "
                          f"then run `tunesafe judge audit {run_id} --labels {out}`", highlight=False,
                          soft_wrap=True)
        if as_json:
            print_json({"rows": len(rows), "sheet": str(out), "sides": runs.sides()})
        return
    if as_json:
        print_json({"record_id": record.id, **record.body})
        return
    console.print(f"judge {runs.judge} agreed with the labels on {agreement(record.body['agreement'])}; "
                  f"recorded as evidence #{record.id}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    judge_app.command("pairs")(judge)
    judge_app.command("audit")(judge_audit)
    app.add_typer(judge_app, name="judge", rich_help_panel=AFTER)
    runs_app.command("rejudge")(runs_rejudge)
