"""The `tunesafe` command: a thin Typer app. Each area registers its commands from its own module;
no logic lives here beyond global options and turning UserError into exit code 2."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.markup import escape
from typer import BadParameter
from typer.core import TyperGroup

from tunesafe import __version__
from tunesafe.cli import (
    attack_cmds,
    backend_cmds,
    eval_cmds,
    gate_cmds,
    governance_cmds,
    governance_docs_cmds,
    guardrail_cmds,
    incident_cmds,
    judge_cmds,
    monitor_cmds,
    redteam_cmds,
    scan_cmds,
    serve_cmds,
    store_cmds,
    suite_cmds,
    training_cmds,
)
from tunesafe.cli.common import err_console
from tunesafe.cli.groups import (
    AFTER,
    AUDIT,
    BEFORE,
    DURING,
    PRODUCTION,
    attacks_app,
    models_app,
    policy_app,
    runs_app,
    suite_app,
)
from tunesafe.cli.param_errors import ranged_param_error
from tunesafe.errors import UserError
from tunesafe.models.refs import redact_ref

HELP = """tunesafe: the safety gate for fine-tuned LLMs.

Lifecycle of a fine-tune:
  before      baseline evaluation (eval), data screening (scan-data), policy (policy init)
  during      fine-tuning under the safety callback (train-lora), mitigations (mix-safety, safelora)
  after       adversarial evaluation and the paired pre/post gate (gate, compare, judge, runs rejudge)
  production  inventory (models), guardrails, incidents, scheduled red-teaming (redteam), monitor
  audit       evidence chain (verify), documents (docs, export), bundles (bundle, verify-bundle)
"""

PANELS = (BEFORE, DURING, AFTER, PRODUCTION, AUDIT)


class _LifecycleGroup(TyperGroup):
    """Lists commands panel by panel in lifecycle order: Typer lists all plain commands before all
    sub-groups, which put the Audit panel before Production in `--help`."""

    def list_commands(self, ctx: Any) -> list[str]:  # Any: Typer vendors its own click
        def panel(name: str) -> int:
            command = self.get_command(ctx, name)
            title = getattr(command, "rich_help_panel", None)
            return PANELS.index(title) if title in PANELS else len(PANELS)

        return sorted(super().list_commands(ctx), key=panel)  # stable: registration order within a panel

    def invoke(self, ctx: Any) -> Any:
        # Sub-commands parse their options in here; a ranged option's bad value leaves as a UserError,
        # which main() prints as the one line every other bad input gets.
        try:
            return super().invoke(ctx)
        except BadParameter as exc:
            if (error := ranged_param_error(exc)) is None:
                raise
            raise error from None


# Locals are never shown in tracebacks: they can hold API keys.
app = typer.Typer(cls=_LifecycleGroup, help=HELP, no_args_is_help=True, rich_markup_mode="rich",
                  add_completion=False, pretty_exceptions_show_locals=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tunesafe {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: str = typer.Option(None, "--db", envvar="TUNESAFE_DB", help="SQLAlchemy URL of the store "
                           "(default: the .tunesafe/ workspace found from the current folder)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    ctx.obj = {"db": db}


# Within a panel, commands are listed in registration order.
app.add_typer(suite_app, name="suite", rich_help_panel=BEFORE)
app.add_typer(policy_app, name="policy", rich_help_panel=BEFORE)
for module in (scan_cmds, training_cmds, eval_cmds, gate_cmds, judge_cmds, backend_cmds):
    module.register(app)
app.add_typer(attacks_app, name="attacks", rich_help_panel=AFTER)
app.add_typer(runs_app, name="runs", rich_help_panel=AFTER)
app.add_typer(models_app, name="models", rich_help_panel=PRODUCTION)
for module in (store_cmds, suite_cmds, attack_cmds, guardrail_cmds):
    module.register(app)
incident_cmds.register(app)
redteam_cmds.register(app)
governance_cmds.register(app)
serve_cmds.register(app)
governance_docs_cmds.register(app)
monitor_cmds.register(app)


def main() -> None:
    # Standalone mode lets click handle --help, usage errors (exit 2) and Exit; only our own UserError
    # needs turning into one clean line.
    try:
        app()
    except UserError as exc:
        # escaped: a fix such as "pip install 'tunesafe[screen]'" is text, not Rich markup
        err_console.print(f"[bold red]error:[/] {escape(exc.render(redact_ref))}", highlight=False,
                          soft_wrap=True, markup=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
