"""`tunesafe monitor ingest|daily`. Thin: parse, call tunesafe.production.monitor / monitor_aggregate,
render. Malformed log lines are reported, never fatal; bad options are one error (exit 2)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json, print_rows
from tunesafe.cli.groups import PRODUCTION
from tunesafe.evidence.workspace import open_store
from tunesafe.production.monitor_formats import FORMATS

monitor_app = typer.Typer(help="Monitor logged production traffic: judge it, aggregate it per day, open "
                          "incidents past the policy's thresholds.", no_args_is_help=True)

SHOWN_MALFORMED = 10


def ingest_command(
    ctx: typer.Context,
    path: str = typer.Argument(..., metavar="PATH|-", help="A JSONL log (OpenAI chat completions, or OTLP "
                               "JSON GenAI spans or log events), or - for stdin."),
    model: str = typer.Option(..., "--model", help="Inventory name of the model that served the traffic."),
    follow: bool = typer.Option(False, "--follow", help="Keep reading as the file grows, committing every "
                                "10 s (Ctrl-C stops; what was not committed is read again next time)."),
    idle_exit: float = typer.Option(None, "--idle-exit", min=0.1, help="With --follow: stop after this many "
                                    "seconds without new lines."),
    fmt: str = typer.Option("auto", "--format", help=f"One of {', '.join(FORMATS)} (auto: per line)."),
    sample: float = typer.Option(1.0, "--sample", help="Share of records to judge, chosen by record hash "
                                 "(deterministic); the others are counted as sampled out."),
    judge: str = typer.Option("default", "--judge", help="Local judge: default, refusal, classifier, harm."),
    triage: bool = typer.Option(True, "--triage/--no-triage", help="Clear plainly everyday requests with the "
                                "n-gram triage model before the embedding classifier (--no-triage: embed "
                                "every answered request: exact, and slower the more everyday the traffic)."),
    detector: list[str] = typer.Option(["attack_library"], "--detector", help="Jailbreak-shape detector "
                                       "(repeatable)."),
    policy_file: Path = typer.Option(None, "--policy", help="Policy YAML whose `monitor:` section sets the "
                                     "incident thresholds (default: the built-in values)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ingest a log: judge each record, store per-day aggregates, open incidents over the thresholds.
    Resumes where the last ingest of the file stopped; records already stored are never counted twice."""
    from tunesafe.policy import default_policy, load_policy
    from tunesafe.production.monitor import ingest, open_log

    policy = load_policy(policy_file) if policy_file else default_policy()
    if path != "-":
        open_log(Path(path)).close()
    with open_store(db_url(ctx), must_exist=True) as store:  # --model names a model of its inventory
        summary = ingest(store, path, model=model, fmt=fmt, sample=sample, judge=judge, triage=triage,
                         detectors=tuple(detector), policy=policy.monitor, follow=follow,
                         idle_exit_s=idle_exit, stream=sys.stdin.buffer if path == "-" else None)
        result = summary.as_dict(store)
    if as_json:
        print_json(result)
    else:
        _print_summary(result)
    if result["malformed"] and not result["records"]:
        # a log in a format this reader does not know must not pass a cron job as "monitored"
        err_console.print(f"warning: no line of {result['source']} could be read as a log record; "
                          "check --format and the reasons above (exit 3)", style="yellow", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(3)


def _print_summary(result: dict[str, Any]) -> None:
    counts = result["counts"]
    resumed = f" (resumed after line {result['start_line']})" if result["start_line"] else ""
    console.print(f"{result['source']}: {result['lines']} line(s) read{resumed}, {result['records']} "
                  f"record(s), {result['new']} new, {result['duplicates']} already stored",
                  highlight=False, soft_wrap=True)
    if result["new"]:
        shown = ("judged", "blocked", "error", "sampled_out", "refused", "harmful", "jailbreaks",
                 "successful_jailbreaks")
        console.print("  " + ", ".join(f"{k} {counts[k]}" for k in shown if counts.get(k)),
                      highlight=False, soft_wrap=True)
    if result["untimed"]:
        console.print(f"  {result['untimed']} record(s) without a time in the log: counted for the day of "
                      "this ingest (UTC); log a `timestamp` to count them for their own day", style="yellow",
                      highlight=False, soft_wrap=True)
    if result["naive_times"]:
        console.print(f"  {result['naive_times']} record(s) with a time without an offset: read as UTC; log "
                      "an offset or Z if that time is local", style="yellow", highlight=False, soft_wrap=True)
    if result["skipped_spans"]:
        console.print(f"  {result['skipped_spans']} span(s) or log record(s) without GenAI content skipped",
                      highlight=False)
    if result["malformed"]:
        console.print(f"  {result['malformed']} malformed line(s) skipped:", style="yellow", highlight=False)
        for item in result["malformed_lines"][:SHOWN_MALFORMED]:
            console.print(f"    line {item['line']}: {item['reason']}", highlight=False, soft_wrap=True)
        if result["malformed"] > SHOWN_MALFORMED:
            console.print(f"    ... (--json lists up to {len(result['malformed_lines'])})", highlight=False)
    if result["restarted_after_line"] is not None:
        console.print(f"  the file was rotated, replaced or truncated since the last ingest (which "
                      f"read {result['restarted_after_line']} line(s)): read from its start. Lines the old "
                      "file got after that are not in it: ingest the rotated file too (records already "
                      "stored are skipped).", style="yellow", highlight=False, soft_wrap=True)
    if result["pending_calls"]:
        console.print(f"  {result['pending_calls']} call(s) in OTLP log events whose answer is not in the "
                      "file yet: left for the next ingest", highlight=False, soft_wrap=True)
    if result["incomplete_tail"]:
        console.print("  the last line is incomplete: left for the next ingest", highlight=False)
    for incident in result["incidents"]:
        console.print(f"[bold red]Opened INC-{incident}[/] (see `tunesafe incidents show {incident}`)",
                      highlight=False, markup=True)
    if result["daily"]:
        print_rows([_day_row(d) for d in result["daily"]], DAY_COLUMNS, title="Days touched")


DAY_COLUMNS = ["model", "day", "records", "decided", "harmful", "harmful_rate", "blocked_rate", "errors",
               "jailbreaks", "top_categories"]


def _pct(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "-"
    return f"{rate['rate']:.1%} [{rate['low']:.1%}, {rate['high']:.1%}]"


def _day_row(day: dict[str, Any]) -> dict[str, Any]:
    return {**day, "decided": day["judged"] + day["blocked"], "harmful_rate": _pct(day["harmful_rate"]),
            "blocked_rate": _pct(day["blocked_rate"]),
            "top_categories": ", ".join(f"{name} {n}" for name, n in day["top_categories"]) or "-"}


def daily_command(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Only this model."),
    since: str = typer.Option(None, "--since", help="Only days from this UTC date on (YYYY-MM-DD)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Per model and day: records, harmful-completion and blocked rates with 95% intervals, errors,
    jailbreak-shaped inputs, top categories."""
    from tunesafe.production.monitor_aggregate import daily

    with open_store(db_url(ctx), must_exist=True) as store:
        days = [d.as_dict() for d in daily(store, model=model, since=_day(since))]
    if as_json:
        print_json(days)
    else:
        print_rows([_day_row(d) for d in days], DAY_COLUMNS, title="Monitored traffic per day")


def _day(text: str | None) -> str | None:
    from datetime import date

    from tunesafe.errors import UserError

    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise UserError(f"not a date: {text!r}", where="--since",
                        fix="write YYYY-MM-DD, e.g. 2026-12-01") from None


def register(app: typer.Typer) -> None:
    monitor_app.command("ingest")(ingest_command)
    monitor_app.command("daily")(daily_command)
    app.add_typer(monitor_app, name="monitor", rich_help_panel=PRODUCTION)
