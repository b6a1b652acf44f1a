"""Guardrail commands (`guardrails verify`) and production endpoints in the inventory (`models endpoint`,
`models endpoints`, `models list --missing-guardrail`). Thin: parse, call tunesafe.guardrails /
tunesafe.production.endpoints, render."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.markup import escape

from tunesafe.cli.common import JSON_OPTION, check_out_folder, console, db_url, print_json, print_rows
from tunesafe.cli.groups import PRODUCTION, models_app
from tunesafe.evidence.workspace import open_store
from tunesafe.policy import default_policy, load_policy
from tunesafe.production import endpoints as ep

guardrails_app = typer.Typer(help="Guardrails in front of a model: verify block rates, false positives, "
                             "latency and fail mode against the policy.", no_args_is_help=True)


def verify(
    ctx: typer.Context,
    guard: str = typer.Option(..., "--guard", help="Guardrail ref: llama-guard:MODEL_REF, "
                              "nemo:URL?config_id=ID, moderation:URL, guarded-chat:openai:MODEL@URL or "
                              "python:MODULE:FUNCTION; "
                              "?on_error=closed|open states what the deployment does when it errors."),
    model: str = typer.Option(None, "--model", help="Also generate with this model and check its answers "
                              "(output side)."),
    suite: str = typer.Option("smoke", "--suite", help="Behaviour suite (built-in name or file)."),
    attacks: str = typer.Option("direct_request", "--attacks", help="Attacks on the harmful items."),
    policy: Path = typer.Option(None, "--policy", help="Policy file (its `guardrails:` section "
                                "has the SLOs)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Inventory endpoint this guard protects: the "
                                 "evidence is linked to it (see `models endpoint`)."),
    out: Path = typer.Option(None, "--out", help="Write guardrail.html, guardrail.md and "
                             "guardrail.json here."),
    limit: int = typer.Option(None, "--limit", help="At most this many behaviours."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Checks in flight at once."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Answer length with --model."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify a guardrail: exit 0 pass, 1 fail, 3 inconclusive, 2 bad input."""
    from tunesafe.guardrails.report import write_reports
    from tunesafe.guardrails.verify import check_verification, verify_guard

    slo_policy = default_policy() if policy is None else load_policy(policy)
    if out is not None:
        check_out_folder(out, "--out")
    check_verification(guard, suite=suite, attacks=attacks, model_ref=model, limit=limit)
    with open_store(db_url(ctx), must_exist=endpoint is not None) as store:  # an endpoint is a stored one
        if endpoint is not None:
            ep.get_endpoint(store, endpoint)  # exit 2 before any request when the name is wrong
        result = asyncio.run(verify_guard(guard, suite=suite, attacks=attacks, model_ref=model,
                                          policy=slo_policy, endpoint=endpoint, store=store, limit=limit,
                                          concurrency=concurrency, max_new_tokens=max_new_tokens))
        record = store.get(result.record_id) if result.record_id is not None else None
    if out is not None:
        write_reports(result.body, out, record)
    if as_json:
        print_json({**result.body, "record_id": result.record_id})
    else:
        figs = result.body["figures"]
        overall = figs["block_rate"].get("overall", {}).get(figs["primary_side"], {})
        rest = (f"{result.body['guard_ref']}: block rate {overall.get('k', 0)}/{overall.get('n', 0)} "
                f"({figs['primary_side']}), errors {figs['errors']['attempts']}, fails "
                f"{figs['fail_mode']['declared']} (record {result.record_id})")
        console.print(f"[bold]{result.verdict.upper()}[/] {escape(rest)}", highlight=False, soft_wrap=True,
                      markup=True)
        for reason in result.body["reasons"]:
            console.print(f"  - {reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


def endpoint_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Endpoint name."),
    model: str = typer.Option(..., "--model", help="Inventory name of the model it serves."),
    url: str = typer.Option(None, "--url", help="Where it is served (credentials are redacted)."),
    guard: list[str] = typer.Option([], "--guard", help="Guardrail ref in front of it (repeatable)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record a production endpoint: the model version it serves and its guardrails."""
    # an endpoint serves an inventory model: a store that is not there (a mistyped --db) holds none
    with open_store(db_url(ctx), must_exist=True) as store:
        found = ep.add_endpoint(store, name, model=model, url=url, guardrails=guard)
    if as_json:
        print_json(found.as_dict())
    else:
        console.print(f"Recorded endpoint {found.name} -> {found.model} (record {found.record_id}, "
                      f"{len(found.guardrails)} guardrails)", highlight=False, soft_wrap=True)


def print_endpoints(ctx: typer.Context, *, missing_guardrail: bool, as_json: bool) -> None:
    with open_store(db_url(ctx), read_only=True) as store:
        found = ep.list_endpoints(store, missing_guardrail=missing_guardrail)
    rows = [{**e.as_dict(), "guardrails": ", ".join(e.guardrails) or "none",
             "verified": f"#{e.verification['id']}" if e.verification else "missing"} for e in found]
    if as_json:
        print_json([e.as_dict() for e in found])
        return
    title = "Endpoints without a verified guardrail" if missing_guardrail else "Endpoints"
    print_rows(rows, ["name", "model", "url", "guardrails", "verified"], title=title)


def endpoints_list(ctx: typer.Context,
                   missing_guardrail: bool = typer.Option(False, "--missing-guardrail",
                                                          help="Only those without a verified guardrail."),
                   as_json: bool = JSON_OPTION) -> None:
    """List production endpoints and whether a guardrail in front of each passed verification."""
    print_endpoints(ctx, missing_guardrail=missing_guardrail, as_json=as_json)


def register(app: typer.Typer) -> None:
    guardrails_app.command("verify")(verify)
    models_app.command("endpoint")(endpoint_add)
    models_app.command("endpoints")(endpoints_list)
    app.add_typer(guardrails_app, name="guardrails", rich_help_panel=PRODUCTION)
