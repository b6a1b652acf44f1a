"""Sub-command groups shared by several CLI modules (e.g. `models add` and `models probe` live in
different modules but one group)."""

from __future__ import annotations

import typer

BEFORE = "Before fine-tuning"
DURING = "During fine-tuning"
AFTER = "After fine-tuning"
PRODUCTION = "Production"
AUDIT = "Audit"
PHASES = (BEFORE, DURING, AFTER, PRODUCTION, AUDIT)

models_app = typer.Typer(help="Model inventory, lineage and reachability.", no_args_is_help=True)
suite_app = typer.Typer(help="Behaviour suites: list, show, validate.", no_args_is_help=True)
attacks_app = typer.Typer(help="The attack library.", no_args_is_help=True)
runs_app = typer.Typer(help="Evaluation runs stored in the workspace.", no_args_is_help=True)
policy_app = typer.Typer(help="Gate policy files.", no_args_is_help=True)
