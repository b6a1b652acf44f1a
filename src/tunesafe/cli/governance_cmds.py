"""Audit: `tunesafe controls list/status/attest`, `tunesafe role decide` and `tunesafe lineage`. Thin: parse,
call tunesafe.governance, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from tunesafe.cli.common import (
    JSON_OPTION,
    console,
    db_url,
    err_console,
    print_json,
    print_rows,
    write_out,
)
from tunesafe.cli.groups import AUDIT
from tunesafe.errors import UserError

controls_app = typer.Typer(help="The controls catalogue (EU AI Act, NIST AI RMF / 600-1, OWASP, ATLAS, "
                                "ISO 42001) and each control's status for a model version.",
                           no_args_is_help=True)
role_app = typer.Typer(help="The EU AI Act role of a fine-tuned model version (control PRE-00).",
                       no_args_is_help=True)

VERSION_OPTION = typer.Option(None, "--version", help="Inventory version of the model (default: the newest).")
STATUS_STYLE = {"satisfied": "green", "missing": "yellow", "failing": "bold red", "needs_attestation": "cyan"}


def controls_list(catalogue: Path = typer.Option(None, "--catalogue", help="A controls YAML of your own "
                                                 "(default: the shipped catalogue)."),
                  as_json: bool = JSON_OPTION) -> None:
    """The controls with their phase, checks, sign-offs and mapped references."""
    from tunesafe.governance.controls import load_catalogue

    cat = load_catalogue(catalogue)
    if as_json:
        print_json(cat.to_json())
        return
    rows = [{"id": c.id, "phase": c.phase, "required": "yes" if c.required else "",
             "checks": ", ".join(c.checks) or "(attestation only)", "sign-off": ", ".join(c.attestation),
             "refs": " ".join(c.refs)} for c in cat.controls]
    print_rows(rows, ["id", "phase", "required", "checks", "sign-off", "refs"],
               title=f"Controls catalogue {cat.schema}@{cat.version}")


def controls_status(ctx: typer.Context, model: str = typer.Argument(..., help="Inventory name."),
                    version: str = VERSION_OPTION,
                    policy: Path = typer.Option(None, "--policy", help="Policy file: its `governance:` "
                                                "section names the required controls and time windows."),
                    catalogue: Path = typer.Option(None, "--catalogue", help="A controls YAML of your own."),
                    as_json: bool = JSON_OPTION) -> None:
    """Each control for one model version: satisfied / missing / failing / needs attestation, with the
    records that satisfy it. Exit 1 when a required control is not satisfied."""
    from tunesafe.evidence.workspace import open_store
    from tunesafe.governance.controls import control_status, load_catalogue
    from tunesafe.policy import load_policy

    loaded = load_policy(policy) if policy is not None else None
    cat = load_catalogue(catalogue)
    with open_store(db_url(ctx), read_only=True) as store:
        report = control_status(store, model, version, policy=loaded, catalogue=cat)
    if as_json:
        print_json(report.to_json())
    else:
        rows = [{"control": c.control.id + (" *" if c.required else ""),
                 "status": Text(c.status, style=STATUS_STYLE[c.status]),
                 "records": ", ".join(f"#{r}" for r in c.records),
                 "missing": "; ".join(c.missing)} for c in report.controls]
        print_rows(rows, ["control", "status", "records", "missing"],
                   title=f"Controls for {report.model} v{report.version} (* required)")
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
        failed = [c.control.id for c in report.failed_required]
        console.print(f"{counts}; evidence chain {'verified' if report.chain_ok else 'BROKEN'}; "
                      + (f"[bold red]required not satisfied: {escape(', '.join(failed))}[/]" if failed
                         else "[green]every required control satisfied[/]"), highlight=False, markup=True)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def controls_attest(ctx: typer.Context, model: str = typer.Argument(..., help="Inventory name."),
                    control: str = typer.Argument(..., help="Control id, e.g. POST-05."),
                    by: str = typer.Option(..., "--by", help="Who signs off (name, role)."),
                    note: str = typer.Option(..., "--note", help="What was checked, where the documents "
                                             "are."),
                    field: list[str] = typer.Option([], "--field", help="KEY=VALUE for the control's "  # noqa: B006
                                                    "sign-off fields (see `tunesafe controls list`); "
                                                    "repeatable."),
                    version: str = VERSION_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Record a person's sign-off on one control for one model version, as evidence."""
    from tunesafe.evidence.workspace import open_store
    from tunesafe.governance.controls import attest_control, parse_fields

    fields = parse_fields(field)
    # a sign-off is on an inventory model: a store that is not there (a mistyped --db) holds none
    with open_store(db_url(ctx), must_exist=True) as store:
        record = attest_control(store, model, control, by=by, note=note, fields=fields, version=version)
    if as_json:
        print_json({"record_id": record.id, "hash": record.hash, **record.body})
        return
    console.print(f"attested {record.body['control']} for {model} v{record.body['version']} by "
                  f"{record.body['by']}: evidence record #{record.id}", highlight=False)


def role_decide(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Inventory name of the fine-tune."),
    intended_purpose: str = typer.Option(None, "--intended-purpose", help="What the fine-tuned system is "
                                         "for."),
    annex_iii: str = typer.Option(None, "--annex-iii", help="Annex III area of that purpose, or none: "
                                  "biometrics, critical_infrastructure, education, employment, "
                                  "essential_services, law_enforcement, migration_border, "
                                  "justice_democracy."),
    annex_i: bool = typer.Option(None, "--annex-i/--no-annex-i", help="A safety component of an Annex I "
                                 "product (or such a product)?"),
    own_name: bool = typer.Option(None, "--own-name/--no-own-name", help="Placed under our name or "
                                  "trademark?"),
    base_gpai: bool = typer.Option(None, "--base-gpai/--base-not-gpai", help="Is the base a general-purpose "
                                   "AI model?"),
    base_systemic: bool = typer.Option(False, "--base-systemic-risk", help="The base is a GPAI model with "
                                       "systemic risk."),
    base_flop: str = typer.Option(None, "--base-flop", help="The base model's training compute in FLOP, or "
                                  "'unknown' (a documented fallback then applies)."),
    base_flop_source: str = typer.Option(None, "--base-flop-source", help="Where that figure comes from."),
    params: float = typer.Option(None, "--params", help="Parameters N of the fine-tuned model (all of them, "
                                 "also for LoRA: the estimate is conservative)."),
    tokens: float = typer.Option(None, "--tokens", help="Training tokens D, over all epochs."),
    base_high_risk: bool = typer.Option(None, "--base-high-risk-on-market/--base-not-high-risk",
                                        help="Was the system already on the market as high-risk?"),
    purpose_changed: bool = typer.Option(None, "--purpose-changed/--purpose-unchanged",
                                         help="Did the fine-tune change the intended purpose?"),
    compliance_affected: bool = typer.Option(None, "--compliance-affected/--compliance-unaffected",
                                             help="Does it affect compliance with Chapter III Section 2?"),
    predetermined: str = typer.Option(None, "--predetermined-change", help="Annex IV 2(f) reference that "
                                      "foresaw this change (then it is not substantial)."),
    original_provider: str = typer.Option(None, "--original-provider", help="Provider of the base system."),
    reviewer: str = typer.Option(None, "--reviewer", help="Who reviewed the decision (signs PRE-00)."),
    note: str = typer.Option(None, "--note", help="Anything else the reviewer should read."),
    version: str = VERSION_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Walk the EU AI Act role decision for a fine-tuned model version and record it (control PRE-00).
    Every answer is an option; one the decision needs and does not have is an error, never a guess."""
    from tunesafe.evidence.workspace import open_store
    from tunesafe.governance.role import RoleAnswers, record_role

    asked = {"--intended-purpose": intended_purpose, "--annex-iii": annex_iii,
             "--annex-i/--no-annex-i": annex_i, "--own-name/--no-own-name": own_name,
             "--base-gpai/--base-not-gpai": base_gpai,
             "--base-flop": base_flop, "--params": params, "--tokens": tokens}
    unanswered = [name for name, value in asked.items() if value is None]
    if unanswered:
        raise UserError(f"the role decision needs {len(unanswered)} answer(s) it will not guess",
                        where=", ".join(unanswered),
                        fix="pass each of them (see tunesafe role decide --help)")
    answers = RoleAnswers(
        intended_purpose=intended_purpose, annex_iii=annex_iii.strip().lower(),
        annex_i_safety_component=annex_i,
        own_name=own_name, base_gpai=base_gpai, base_systemic_risk=base_systemic,
        base_training_flop=_flop(base_flop), base_flop_source=base_flop_source, params=params, tokens=tokens,
        base_high_risk_on_market=base_high_risk, purpose_changed=purpose_changed,
        compliance_affected=compliance_affected, predetermined_change=predetermined,
        original_provider=original_provider, reviewer=reviewer, notes=note)
    # a decision on an inventory model: a store that is not there (a mistyped --db) holds none
    with open_store(db_url(ctx), must_exist=True) as store:
        record = record_role(store, model, answers, version=version)
    body = record.body
    if as_json:
        print_json({"record_id": record.id, "hash": record.hash, **body})
        return
    for step in body["steps"]:
        mark = "[bold]yes[/]" if step["answer"] else "no"
        console.print(f"{mark:>12}  {escape(step['question'])} "
                      f"[dim]({escape(step['hook'])}; {escape(step['because'])})[/]", highlight=False,
                      markup=True)
    substantial = {None: "not applicable", True: "yes", False: "no"}[body["substantial_modification"]]
    console.print(f"role: [bold]{escape(body['eu_role'])}[/]; substantial modification: {substantial}; "
                  f"evidence record #{record.id}"
                  + ("" if body["reviewer"] else " (not reviewed: pass --reviewer or attest PRE-00)"),
                  highlight=False, markup=True)


def lineage_command(ctx: typer.Context, model: str = typer.Argument(..., help="Inventory name."),
                    version: str = VERSION_OPTION,
                    svg: Path = typer.Option(None, "--svg", help="Also write the graph as an SVG file."),
                    html: Path = typer.Option(None, "--html", help="Also write a one-page HTML with the "
                                              "graph."),
                    as_json: bool = JSON_OPTION) -> None:
    """The safety lineage of a model version, every node naming its evidence record.

    base -> datasets (scans) -> training runs -> adapter -> evaluations -> gates -> deployments ->
    guardrail verifications -> incidents, as a tree, JSON, SVG or one HTML page."""
    from tunesafe.evidence.workspace import open_store
    from tunesafe.governance.lineage import collect_lineage
    from tunesafe.governance.lineage_svg import render_html, render_svg

    with open_store(db_url(ctx), read_only=True) as store:
        lineage = collect_lineage(store, model, version)
    for path, text in ((svg, render_svg), (html, render_html)):
        if path is not None:
            write_out(path, text(lineage), "lineage graph")
            err_console.print(f"wrote {path}", highlight=False)  # stdout may be the JSON
    if as_json:
        print_json(lineage.to_json())
        return
    console.print(_tree(lineage))


def _tree(lineage: Any) -> Tree:
    """Each node under its first parent; a node with more parents says where else it hangs."""
    root = Tree(Text.from_markup(f"[bold]{escape(lineage.model)}[/] v{lineage.version} (model version record "
                                 f"#{lineage.model_record})"))
    branches: dict[str, Tree] = {}
    known = {n.node_id for n in lineage.nodes}
    for node in lineage.nodes:
        parents = [p for p in node.parents if p in known]
        under = branches.get(parents[0], root) if parents else root
        also = f" [dim](also from {escape(', '.join(parents[1:]))})[/]" if len(parents) > 1 else ""
        branches[node.node_id] = under.add(Text.from_markup(
            f"{escape(node.label)} [dim]{escape(node.kind)} · record #{node.record_id} · "
            f"{node.created_at}[/]{also}"))
    return root


def _flop(text: str) -> float | None:
    if text.strip().lower() == "unknown":
        return None
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--base-flop must be a number of FLOP or 'unknown', got {text!r}",
                        where="--base-flop", fix="e.g. --base-flop 3.8e25, or --base-flop unknown") from None


def register(app: typer.Typer) -> None:
    controls_app.command("list")(controls_list)
    controls_app.command("status")(controls_status)
    controls_app.command("attest")(controls_attest)
    role_app.command("decide")(role_decide)
    app.add_typer(controls_app, name="controls", rich_help_panel=AUDIT)
    app.add_typer(role_app, name="role", rich_help_panel=AUDIT)
    app.command("lineage", rich_help_panel=AUDIT)(lineage_command)
