"""`tunesafe attacks list|show`: the attack library with versions and framework ids."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape

from tunesafe import attacks
from tunesafe.agents.attacks import AgentAttack
from tunesafe.agents.example import agent_example
from tunesafe.attacks import AttackImpl
from tunesafe.cli.common import JSON_OPTION, console, print_json, print_rows
from tunesafe.cli.groups import attacks_app
from tunesafe.errors import UserError
from tunesafe.types import Behavior

# Shown by `attacks show`: a harmless request, so the example can be printed anywhere.
EXAMPLE = Behavior(id="example", text="Explain how to bake a loaf of bread", kind="benign",
                   category="example")


def _row(attack: AttackImpl) -> dict[str, Any]:
    meta = attack.meta
    needs = [n for n, on in (("attacker", meta.needs_attacker), ("white-box", meta.needs_white_box),
                             ("prefill", meta.needs_prefill)) if on]
    return {"family": meta.family, "name": meta.name, "version": meta.version, "needs": ", ".join(needs),
            "owasp": ", ".join(meta.owasp), "atlas": ", ".join(meta.atlas), "description": meta.description}


@attacks_app.command("list")
def list_attacks(
    family: str = typer.Option(None, "--family", help="Only the attacks of this family."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every attack with its family, version, needs and OWASP / ATLAS ids."""
    chosen = attacks.all_attacks()
    if family is not None:
        known = sorted({a.meta.family for a in chosen})
        if family not in known:
            raise UserError(f"unknown family '{family}'", where="--family",
                            fix=f"use one of: {', '.join(known)}")
        chosen = [a for a in chosen if a.meta.family == family]
    rows = [_row(a) for a in chosen]
    print_rows(rows, ["family", "name", "version", "needs", "owasp", "atlas"], as_json=as_json,
               title=f"{len(rows)} attacks in {len({r['family'] for r in rows})} families")


@attacks_app.command("show")
def show(name: str = typer.Argument(..., help="An attack name (see `tunesafe attacks list`)."),
         as_json: bool = JSON_OPTION) -> None:
    """An attack's description, sources and an example transformation of a harmless request."""
    attack = attacks.get(name)
    family = attacks.families().get(attack.meta.family, {})
    attempts = attack.expand(EXAMPLE, 0)
    info = {**_row(attack), "family_summary": family.get("summary", ""), "sources": family.get("sources", []),
            "example_request": EXAMPLE.text,
            "example": [{"messages": [{"role": m.role, "content": m.content} for m in a.messages],
                         "prefill": a.prefill, "params": dict(a.params), "attempt_id": a.id}
                        for a in attempts]}
    if isinstance(attack, AgentAttack):  # transforms no request: its example is an attacked case
        info["agent_example"] = agent_example(attack.case_family, attack.defence)
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]{escape(info['name'])}[/] v{info['version']}  (family {escape(info['family'])})",
                  highlight=False, markup=True)
    console.print(info["description"], highlight=False)
    labels = (("Family", "family_summary"), ("Needs", "needs"), ("OWASP", "owasp"), ("ATLAS", "atlas"))
    for label, key in labels:
        if info[key]:
            console.print(f"{label}: {info[key]}", highlight=False)
    for source in info["sources"]:
        console.print(f"Source: {source}", highlight=False)
    if "agent_example" in info:
        _print_agent_example(info["agent_example"])
        return
    console.print(f"\nExample on a harmless request: {EXAMPLE.text!r}", highlight=False)
    if attack.meta.needs_attacker:
        console.print("(attacker-driven: the attacker model writes the turns at run time; the attempt holds "
                      "the goal below)", highlight=False)
    for example in info["example"]:
        for message in example["messages"]:
            # Prompts contain brackets ("[redacted]") that Rich would read as markup: escape them.
            console.print(f"[bold]{escape(message['role'])}:[/] {escape(message['content'])}",
                          highlight=False, markup=True)
        if example["prefill"]:
            console.print(f"[bold]assistant (prefilled):[/] {escape(example['prefill'])}", highlight=False,
                          markup=True)


def _print_agent_example(example: dict[str, Any]) -> None:
    console.print(f"\nExample case: {example['case']} (environment {example['environment']}, style "
                  f"{example['style']})", highlight=False)
    for agent in example["agents"]:
        console.print(f"[bold]{escape(agent['agent'])}[/] (tools: {escape(', '.join(agent['tools']))})",
                      highlight=False, markup=True)
        console.print(f"  [bold]system:[/] {escape(agent['system'])}", highlight=False, markup=True)
        console.print(f"  [bold]user:[/] {escape(agent['user'])}", highlight=False, markup=True)
    injected = example["injected"]
    call = f"{injected['name']}({json.dumps(injected['arguments'])})"
    console.print(f"[bold]tool result carrying the injection[/] ({escape(call)}):", highlight=False,
                  markup=True)
    console.print(f"  {injected['result']}", highlight=False)
    console.print(f"[bold]Attack success:[/] {escape(example['success'])}: "
                  f"{escape(json.dumps(example['success_check']))}", highlight=False, markup=True)
    checks = " and ".join(json.dumps(c) for c in example["utility_check"])
    console.print(f"[bold]Utility:[/] the user's task done: {escape(checks)}", highlight=False, markup=True)


def register(app: typer.Typer) -> None:
    """Commands attach to the shared `attacks` group on import."""
    return None
