"""Options shared by the commands that run evaluations (`eval`, `gate`), declared once so their names,
defaults and help cannot drift apart."""

from __future__ import annotations

import typer

SUITE = typer.Option("default", "--suite", help="default, smoke, or a .jsonl/.csv/.parquet path.")
ATTACKS = typer.Option("all", "--attacks", help="all, template, or a comma list of families/attacks.")
ATTACKER = typer.Option(None, "--attacker", help="Model ref of the attacker model for attacker-driven "
                        "attacks.")
LIMIT = typer.Option(None, "--limit", help="At most N behaviours (spread over kinds).")
SEED = typer.Option(0, "--seed")
CONCURRENCY = typer.Option(8, "--concurrency", help="Attempts in flight at once.")
MAX_NEW_TOKENS = typer.Option(256, "--max-new-tokens")
TEMPERATURE = typer.Option(0.0, "--temperature", help="0 = greedy (reproducible).")
NO_CACHE = typer.Option(False, "--no-cache", help="Do not reuse or store cached responses.")
MAX_PAUSE = typer.Option(600.0, "--max-pause", help="Seconds an HTTP endpoint may fail every request "
                         "(the run waits, paused) before the run stops, resumable (exit 3).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr.")
EXECUTOR = typer.Option("local", "--executor", help="local, or ray: attempts split over Ray actors "
                        "(pip install 'tunesafe[ray]'; results stream to this process, the only writer).")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="With --executor ray: a running cluster (auto, "
                           "ray://HOST:10001); default: start a local one.")
WORKERS = typer.Option(2, "--workers", help="With --executor ray: actors (each holds its own model or "
                       "endpoint client; a local model takes one GPU each where there are GPUs).")
