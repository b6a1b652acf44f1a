"""`tunesafe chat REF PROMPT` and `tunesafe models probe REF`: quick checks of a model backend.
Thin: parse, call tunesafe.models.probe, render."""

from __future__ import annotations

import typer
from rich.markup import escape

from tunesafe.cli.common import JSON_OPTION, console, print_json
from tunesafe.cli.groups import AFTER, models_app


def chat(
    ref: str = typer.Argument(..., help="Model ref, e.g. embedded:qwen2.5-coder-0.5b or openai:MODEL@URL."),
    prompt: str = typer.Argument(..., help="The user message."),
    system: str = typer.Option(None, "--system", help="System message."),
    prefill: str = typer.Option(None, "--prefill", help="Text forced at the start of the answer."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (deterministic)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send one chat message to a model and print its answer."""
    from tunesafe.models.probe import chat as run_chat
    from tunesafe.models.probe import request_for

    request = request_for(prompt, system=system, prefill=prefill, max_new_tokens=max_new_tokens,
                          temperature=temperature, seed=seed)
    generation = run_chat(ref, request)
    if as_json:
        print_json(generation)
    else:
        typer.echo((prefill or "") + generation.text)


def probe(
    ref: str = typer.Argument(..., help="Model ref to check."),
    max_new_tokens: int = typer.Option(24, "--max-new-tokens", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a model: reachability/loading, content hash, capabilities, and a short timed generation."""
    from tunesafe.models.probe import probe as run_probe

    result = run_probe(ref, max_new_tokens=max_new_tokens)
    if as_json:
        print_json(result.as_dict())
        return
    gen = result.generation
    caps = ", ".join(name for name, on in result.capabilities.items() if on) or "none"
    console.print(f"[green]OK[/] {escape(result.ref)} (backend {escape(result.backend)})", highlight=False,
                  soft_wrap=True, markup=True)
    console.print(f"  content hash  {result.content_hash}", highlight=False)
    console.print(f"  load / reach  {result.load_s:.2f} s", highlight=False)
    console.print(f"  capabilities  {caps}", highlight=False)
    console.print(f"  generation    {gen.latency_s:.2f} s, {gen.completion_tokens} tokens, "
                  f"finish={gen.finish_reason}: {gen.text!r}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("chat", rich_help_panel=AFTER)(chat)
    models_app.command("probe")(probe)
