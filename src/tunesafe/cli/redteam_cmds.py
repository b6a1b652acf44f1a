"""`tunesafe redteam schedule add|list|remove` and `tunesafe redteam run-due`. Thin: parse, call
tunesafe.production.schedules / tunesafe.production.redteam, render. run-due exits 0 when everything due
ran without regression (or nothing was due, or another runner holds it), 1 when a regression opened an
incident, 4 when a scheduled run could not finish (the next run-due resumes it), 3 when a run's
comparison was inconclusive, 2 for bad input."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer

from tunesafe.cli import eval_options as opts
from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json, print_rows
from tunesafe.cli.groups import PRODUCTION
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.evidence.workspace import open_store
from tunesafe.production.schedules import (
    Schedule,
    add_schedule,
    current_period,
    iso,
    next_start,
    parse_instant,
    period_state,
    remove_schedule,
    schedules,
)

redteam_app = typer.Typer(help="Scheduled red-teaming of production models (for cron or a CronJob).",
                          no_args_is_help=True)
schedule_app = typer.Typer(help="Red-team schedules: add, list, remove.", no_args_is_help=True)

NOW_OPTION = typer.Option(None, "--now", help="Take this ISO-8601 time (UTC unless zoned) as now.")
COLUMNS = ("id", "model", "every", "suite", "attacks", "judges", "limit", "period", "state", "next")


def schedule_add(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Inventory name of the model (its ref comes from the inventory)."),
    every: str = typer.Option(..., "--every", help="Interval: 12h, 7d, 30d, 2w."),
    suite: str = opts.SUITE,
    attacks: str = opts.ATTACKS,
    judge: list[str] = typer.Option(["default"], "--judge", help="Judge name; repeat for several."),
    limit: int = opts.LIMIT,
    start: str = typer.Option(None, "--start", help="ISO-8601 time the first period begins (default: now)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Schedule red-teaming of an inventory model: every period, run-due evaluates it once and compares
    it with its previous scheduled run."""
    begin = parse_instant(start, "--start") if start else None
    # a schedule of an inventory model: a store that is not there (a mistyped --db) holds none
    with open_store(db_url(ctx), must_exist=True) as store:
        schedule = add_schedule(store, model, every=every, suite=suite, attacks=attacks, judges=judge,
                                limit=limit, start=begin)
    if as_json:
        print_json(schedule.as_dict())
        return
    console.print(f"added schedule {schedule.id}: {schedule.model} every {schedule.every} from "
                  f"{schedule.start} (suite {schedule.suite}, attacks {schedule.attacks})", highlight=False)


def schedule_list(ctx: typer.Context, now: str = NOW_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Active schedules, with the state of their current period and when the next one begins."""
    moment = _now(now)
    with open_store(db_url(ctx), read_only=True) as store:
        states = _states(store)
        rows = [_row(states, s, moment) for s in schedules(store).values()]
    print_rows(rows, COLUMNS, title="red-team schedules", as_json=as_json)


def schedule_remove(ctx: typer.Context, schedule_id: str = typer.Argument(..., metavar="ID"),
                    as_json: bool = JSON_OPTION) -> None:
    """Stop a schedule (recorded as evidence; its past runs stay)."""
    with open_store(db_url(ctx), must_exist=True) as store:
        schedule = remove_schedule(store, schedule_id)
    if as_json:
        print_json({"removed": schedule.as_dict()})
        return
    console.print(f"removed schedule {schedule.id} ({schedule.model} every {schedule.every})",
                  highlight=False)


MAX_LEASE_S = 7 * 24 * 3600  # a week: a live runner renews its claim long before


def run_due_command(
    ctx: typer.Context,
    now: str = NOW_OPTION,
    max_runs: int = typer.Option(None, "--max", help="Run at most N schedules now; the rest stay due."),
    policy_file: Path = typer.Option(None, "--policy", help="Policy YAML deciding a regression (default: "
                                     "the built-in policy)."),
    lease: float = typer.Option(1800.0, "--lease", help="Seconds a claim stands without renewal; a runner "
                                "renews it while it runs, so only a crashed runner's claim lapses."),
    max_pause: float = opts.MAX_PAUSE,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run every schedule that is due, once per period however often it is called; two runners at once
    never run one schedule twice. Exit 0 ok (also when another runner took a period over from this one and
    records it), 1 regression (incident opened), 4 a run could not finish, 3 a run could not be compared
    with the previous one (or too weakly to rule a regression out)."""
    from tunesafe.policy import default_policy, load_policy
    from tunesafe.production.redteam import run_due

    # written so NaN fails too; the ceiling keeps now + lease inside datetime's range
    if not 0 < lease <= MAX_LEASE_S:
        raise UserError(f"--lease must be between 0 and {MAX_LEASE_S} seconds, got {lease:g}",
                        where="--lease", fix="pass e.g. --lease 1800")
    policy = default_policy() if policy_file is None else load_policy(policy_file)
    # a store that is not there (a mistyped --db) has no schedules: "nothing due" would hide it
    with open_store(db_url(ctx), must_exist=True) as store:
        result = run_due(store, now=_now(now), max_runs=max_runs, policy=policy, max_pause=max_pause,
                         lease=timedelta(seconds=lease), notify=None if as_json else _note)
    if as_json:
        print_json({"now": result.now, "ran": result.ran, "held_elsewhere": result.held_elsewhere,
                    "not_run": result.not_run, "exit_code": result.exit_code})
    else:
        if not (result.ran or result.held_elsewhere or result.not_run):
            console.print("nothing due", highlight=False)
        for run in result.ran:
            what = {"recorded": f"verdict {run.verdict}, run {run.run_id}, evidence #{run.record_id}",
                    "taken_over": f"taken over by another runner: {run.error}"}.get(run.status,
                                                                                      f"FAILED: {run.error}")
            console.print(f"{run.schedule_id} {run.model} [{run.period}]: {what}", highlight=False,
                          soft_wrap=True)
            for note in run.notes:
                console.print(f"  note: {note}", highlight=False, soft_wrap=True)
            if run.incident_id is not None:
                console.print(f"  incident #{run.incident_id} opened", highlight=False)
        for entry in result.held_elsewhere:
            console.print(f"{entry['schedule_id']} {entry['model']}: held by another runner",
                          highlight=False)
        for entry in result.not_run:
            console.print(f"{entry['schedule_id']} {entry['model']}: still due (--max reached)",
                          highlight=False)
    raise typer.Exit(result.exit_code)


def _now(text: str | None) -> datetime:
    return parse_instant(text, "--now") if text else datetime.now(timezone.utc)


def _states(store: Store) -> dict[tuple[str, str], Any]:
    from tunesafe.production.claims import claim_states

    return claim_states(store)


def _row(states: dict[tuple[str, str], Any], schedule: Schedule, now: datetime) -> dict[str, Any]:
    period = current_period(schedule, now)
    state = states.get((schedule.id, period.key)) if period else None
    return {**schedule.as_dict(), "judges": ",".join(schedule.judges),
            "period": period.key if period else None,
            "state": period_state(period, state.state if state else None),
            "next": iso(next_start(schedule, now))}


def _note(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    schedule_app.command("add")(schedule_add)
    schedule_app.command("list")(schedule_list)
    schedule_app.command("remove")(schedule_remove)
    redteam_app.add_typer(schedule_app, name="schedule")
    redteam_app.command("run-due")(run_due_command)
    app.add_typer(redteam_app, name="redteam", rich_help_panel=PRODUCTION)
