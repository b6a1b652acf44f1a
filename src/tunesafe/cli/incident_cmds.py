"""`tunesafe incidents open|list|show|update|close|due|report|to-suite`. Thin: parse, call
tunesafe.production.incidents / regression / incident_report, render. Every change is an appended record."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from tunesafe.cli.common import (
    JSON_OPTION,
    console,
    db_url,
    err_console,
    print_json,
    print_rows,
    warn_if_not_in_inventory,
    write_out,
)
from tunesafe.cli.groups import PRODUCTION
from tunesafe.errors import UserError, read_user_text
from tunesafe.evidence.workspace import open_store
from tunesafe.json_lines import json_line, numbered_lines
from tunesafe.production import incidents as inc
from tunesafe.production.clocks import KIND_DAYS, iso, parse_duration, parse_time, utcnow

incidents_app = typer.Typer(help="Incidents with their EU AI Act Art. 73 reporting clocks.",
                            no_args_is_help=True)

KIND_HELP = ("Art. 73 clock (repeatable; the earliest deadline counts): " +
             ", ".join(f"{k} ({d} days)" for k, d in KIND_DAYS.items()) + ".")
NOW_OPTION = typer.Option(None, "--now", help="Evaluate the clocks at this ISO 8601 time "
                          "(default: now, UTC).")
CONVERSATION_OPTION = typer.Option([], "--conversation", help="JSONL file of conversations to attach, one "
                                   'per line: {"messages": [...], "category": ...} or '
                                   '{"request": {"messages": [...]}} (repeatable). Only the request side is '
                                   "kept.")
FIELD_OPTION = typer.Option([], "--field", metavar="KEY=VALUE", help="A report field (repeatable), e.g. "
                            "member_states=DE,FR; see `tunesafe incidents report`.")


def _now(text: str | None) -> datetime:
    return parse_time(text, "--now") if text else utcnow()


def _read_conversations(paths: list[Path]) -> list[dict[str, Any]]:
    fix = 'one JSON object per line, e.g. {"messages": [{"role": "user", "content": "..."}]}'
    out: list[dict[str, Any]] = []
    for path in paths:
        lines = list(numbered_lines(read_user_text(path, "conversation file", fix=fix)))
        if not lines:  # attaching nothing would open the incident as though the conversations were on it
            raise UserError("no conversation in the file", where=str(path), fix=fix)
        for number, line in lines:
            where = f"{path}:{number}"
            item = json_line(line, where, fix=fix)
            if not isinstance(item, dict):
                raise UserError("not a JSON object", where=where, fix=fix)
            try:
                out += inc.check_conversations([item])
            except UserError as exc:  # its own "#1" would not say which file or line
                raise UserError(exc.message, where=where, fix=exc.fix) from None
    return out


def _fields(items: list[str]) -> dict[str, str]:
    from tunesafe.production.incident_report import check_field

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise UserError(f"bad field {item!r}", where="--field",
                            fix="write KEY=VALUE, e.g. member_states=DE")
        out[check_field(key.strip())] = value.strip()
    return out


def _row(incident: inc.Incident, now: datetime) -> dict[str, Any]:
    return {**incident.as_dict(now), "due_at": iso(incident.deadline.due_at), "kind": incident.deadline.kind}


COLUMNS = ["label", "model", "severity", "status", "owner", "kind", "due_at", "clock", "title"]


def _print_one(incident: inc.Incident, now: datetime, as_json: bool) -> None:
    if as_json:
        print_json(incident.as_dict(now))
        return
    row = _row(incident, now)
    style = "bold red" if incident.overdue(now) else "bold"
    console.print(f"[{style}]{incident.label}[/] {escape(incident.title)}", highlight=False, soft_wrap=True,
                  markup=True)
    for key in ("model", "severity", "status", "owner", "source", "aware_at", "opened_at"):
        value = "-" if row[key] is None else row[key]
        console.print(f"  {key}: {value}", highlight=False, soft_wrap=True)
    for d in incident.deadlines:
        console.print(f"  deadline {d.kind}: {iso(d.due_at)} ({d.days} days from {iso(d.start)}, "
                      f"{d.article})", highlight=False, soft_wrap=True)
    console.print(f"  clock: {row['clock']}", highlight=False)
    if incident.links:
        console.print(f"  evidence: {', '.join(map(str, incident.links))}", highlight=False)
    if incident.conversations:
        console.print(f"  conversations: {len(incident.conversations)}", highlight=False)
    for note in incident.notes:
        console.print(f"  note {note['at']} {note['actor']}: {note['text']}", highlight=False, soft_wrap=True)
    if incident.resolution:
        console.print(f"  resolution: {incident.resolution}", highlight=False, soft_wrap=True)


@incidents_app.command("open")
def open_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Inventory name of the model concerned."),
    title: str = typer.Option(..., "--title", help="One line: what happened."),
    severity: str = typer.Option(..., "--severity", help=f"One of {', '.join(inc.SEVERITIES)}."),
    kind: list[str] = typer.Option(["general"], "--kind", help=KIND_HELP),
    aware_at: str = typer.Option(None, "--aware-at", help="When you became aware (ISO 8601 with its "
                                 "offset: Z or e.g. +01:00; default now). The Art. 73 clock runs from here."),
    owner: str = typer.Option(None, "--owner", help="Who handles the incident."),
    evidence: list[int] = typer.Option([], "--evidence", help="Evidence record id to link (repeatable)."),
    conversation: list[Path] = CONVERSATION_OPTION,
    field: list[str] = FIELD_OPTION,
    source: str = typer.Option("manual", "--source", help="What detected it: manual, monitor, redteam, ..."),
    now: str = NOW_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Open an incident (an evidence record) and start its Art. 73 clock."""
    when = _now(now)
    conversations = _read_conversations(conversation)
    details = _fields(field)
    # checked before the store is opened: bad input must not leave a new, empty store at a new --db path
    body = inc.incident_body(model=model, title=title, severity=severity, source=source, details=details,
                             aware_at=aware_at or None, kind=",".join(kind), owner=owner,
                             conversations=conversations, now=when)
    with open_store(db_url(ctx), must_exist=bool(evidence)) as store:  # --evidence names stored records
        incident = inc.record_incident(store, body, evidence=evidence)
        warn_if_not_in_inventory(store, model)
    if as_json:
        print_json(incident.as_dict(when))
    else:
        first = incident.deadline
        console.print(f"Opened {incident.label} on {incident.model}: earliest deadline "
                      f"{iso(first.due_at)} ({first.kind}, {first.days} days)",
                      highlight=False, soft_wrap=True)


@incidents_app.command("list")
def list_command(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Only incidents on this model."),
    status: str = typer.Option(None, "--status", help=f"Only this status: {', '.join(inc.STATUSES)}."),
    now: str = NOW_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Incidents with their earliest deadline; overdue ones are flagged."""
    when = _now(now)
    with open_store(db_url(ctx), read_only=True) as store:
        found = inc.list_incidents(store, model=model, status=status)
    print_rows([_row(i, when) for i in found], COLUMNS, title="Incidents", as_json=as_json)


@incidents_app.command("show")
def show_command(ctx: typer.Context, incident_id: str = typer.Argument(..., metavar="ID"),
                 now: str = NOW_OPTION, as_json: bool = JSON_OPTION) -> None:
    """One incident: state, every deadline, notes, links."""
    when = _now(now)
    with open_store(db_url(ctx), read_only=True) as store:
        incident = inc.get_incident(store, incident_id)
    _print_one(incident, when, as_json)


@incidents_app.command("update")
def update_command(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    status: str = typer.Option(None, "--status", help=f"One of {', '.join(inc.UPDATE_STATUSES)} (close with "
                               "`incidents close`)."),
    owner: str = typer.Option(None, "--owner", help="New owner."),
    severity: str = typer.Option(None, "--severity", help=f"One of {', '.join(inc.SEVERITIES)}."),
    note: str = typer.Option(None, "--note", help="A note for the timeline."),
    kind: list[str] = typer.Option([], "--kind", help="Replace the kinds: " + KIND_HELP),
    link: list[int] = typer.Option([], "--link", help="Evidence record id to link (repeatable)."),
    conversation: list[Path] = CONVERSATION_OPTION,
    field: list[str] = FIELD_OPTION,
    reported_at: str = typer.Option(None, "--reported-at", help="When the Art. 73 report was submitted "
                                    "(ISO 8601 with its offset); stops the clock and sets status reported."),
    aware_at: str = typer.Option(None, "--aware-at", help="With --kind: when the new facts became known "
                                 "(ISO 8601 with its offset; default now). An added kind's clock runs "
                                 "from here."),
    now: str = NOW_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Change an incident (an appended record; the history is kept)."""
    when = _now(now)
    conversations = _read_conversations(conversation)
    details = _fields(field)
    with open_store(db_url(ctx), must_exist=True) as store:
        incident = inc.update_incident(store, incident_id, status=status, owner=owner, severity=severity,
                                       note=note, kind=kind or None, links=link, conversations=conversations,
                                       reported_at=reported_at, details=details, aware_at=aware_at,
                                       now=when)
    _print_one(incident, when, as_json)


@incidents_app.command("close")
def close_command(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    resolution: str = typer.Option(..., "--resolution", help="Root cause and corrective action."),
    now: str = NOW_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Close an incident with its resolution (final)."""
    when = _now(now)
    with open_store(db_url(ctx), must_exist=True) as store:
        incident = inc.close_incident(store, incident_id, resolution=resolution, now=when)
    _print_one(incident, when, as_json)


@incidents_app.command("due")
def due_command(
    ctx: typer.Context,
    within: str = typer.Option("3d", "--within", help="How near a deadline must be to count: 3d, 12h, 30m."),
    now: str = NOW_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Incidents whose reporting deadline is past or within --within. Exit 1 when there is any (for cron
    and CI alerts), 0 otherwise."""
    span = parse_duration(within, "--within")
    when = _now(now)
    with open_store(db_url(ctx), read_only=True) as store:
        found = inc.due_incidents(store, within=span, now=when)
    if as_json:
        print_json([i.as_dict(when) for i in found])
    elif found:
        print_rows([_row(i, when) for i in found], COLUMNS, title=f"Art. 73 deadlines within {within}")
    else:
        console.print(f"No reporting deadline within {within} of {iso(when)}", highlight=False)
    if found:
        raise typer.Exit(1)


@incidents_app.command("report")
def report_command(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    out: Path = typer.Option(None, "--out", help="Write the Markdown here (default: print it)."),
    now: str = NOW_OPTION,
) -> None:
    """A Markdown draft of the Art. 73 serious-incident report; unknown fields read TO FILL."""
    from tunesafe.production.incident_report import render_report

    when = _now(now)
    with open_store(db_url(ctx), read_only=True) as store:
        text = render_report(store, inc.get_incident(store, incident_id), when)
    if out is None:
        typer.echo(text, nl=False)
        return
    write_out(out, text, "report")
    err_console.print(f"Wrote {out}", highlight=False)


@incidents_app.command("to-suite")
def to_suite_command(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    out: Path = typer.Option(None, "--out", help="Suite JSONL file (default: incident-ID.jsonl)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Turn the incident's conversations into a regression suite and register it: every later
    `tunesafe gate --candidate-name MODEL` adds these items to its suite."""
    from tunesafe.production.regression import to_suite

    with open_store(db_url(ctx), must_exist=True) as store:
        incident = inc.get_incident(store, incident_id)
        path = out or Path(f"incident-{incident.id}.jsonl")
        record = to_suite(store, incident, path)
    rows = record.body["rows"]
    if as_json:
        print_json({"path": str(path), "record": record.id, "model": incident.model, "items": len(rows)})
    else:
        console.print(f"Wrote {len(rows)} regression item(s) to {path}; registered for the gates of "
                      f"{incident.model} (record {record.id})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(incidents_app, name="incidents", rich_help_panel=PRODUCTION)
