"""`tunesafe scan-data`: screen a fine-tuning dataset, optionally write a filtered copy, and record the
scan as evidence linked to the dataset's sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from tunesafe.cli.common import JSON_OPTION, console, db_url, print_json, print_rows
from tunesafe.cli.groups import BEFORE
from tunesafe.errors import UserError

FINDINGS_SHOWN = 40
FAIL_LEVELS = ("never", "medium", "high")
RATINGS = ("low", "medium", "high")


def parse_columns(spec: str | None) -> dict[str, str]:
    """'prompt=question,completion=answer' -> {'prompt': 'question', 'completion': 'answer'}"""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        role, sep, column = part.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise UserError(
                f"bad column mapping '{part}'",
                where="--columns",
                fix="use ROLE=COLUMN pairs, e.g. prompt=question,completion=answer",
            )
        out[role.strip()] = column.strip()
    return out


def scan_data(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="Dataset file (JSONL, JSON, CSV, Parquet) or save_to_disk folder."),
    fmt: str = typer.Option(
        "auto", "--format",
        help=(
            "auto|chat|sharegpt|alpaca|prompt-completion|preference|openai-preference|text|csv|parquet|hf-disk"
        ),
    ),
    columns: str = typer.Option(
        None,
        "--columns",
        help="Map roles to your columns: prompt=q,completion=a "
        "(roles: messages, conversations, system, instruction, input, output, history, prompt, completion).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        help="Local transformers model (hf:PATH, embedded:NAME) whose "
        "last-token hidden states give the representation similarity.",
    ),
    contamination: list[Path] = typer.Option(
        [],
        "--contamination",  # noqa: B006 (typer reads the default)
        help="Evaluation set whose prompts must not be in the data (CSV/JSONL/JSON/text); repeatable.",
    ),
    fix: Path = typer.Option(None, "--fix", help="Write a filtered copy here, plus OUT.manifest.json."),
    model_name: str = typer.Option(
        None,
        "--model-name",
        help="Inventory name of the model this data tunes "
        "(the evidence subject; default: the dataset sha256).",
    ),
    top_k: int = typer.Option(10, "--top-k", min=1, help="How many most alignment-eroding examples to list."),
    opener_share: float = typer.Option(
        0.3,
        "--opener-share",
        help="Flag a stock affirmative opener ('Sure, here is ...') shared by at least this share "
        "of answers.",
    ),
    fail_on: str = typer.Option(
        "never", "--fail-on", help="Exit 1 when the rating is at least this: never|medium|high."
    ),
    record: bool = typer.Option(
        True, "--record/--no-record", help="Write the evidence record (needs a store)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Screen fine-tuning data: harmful content, obedience patterns, PII/secrets, duplicates, contamination,
    similarity to safety data; rating low/medium/high."""
    from tunesafe.screening import Scanner, ScanOptions

    if fail_on not in FAIL_LEVELS:
        raise UserError(
            f"unknown level '{fail_on}'", where="--fail-on", fix=f"use one of {', '.join(FAIL_LEVELS)}"
        )
    if not 0.0 < opener_share <= 1.0:
        raise UserError(
            f"--opener-share must be a share of answers, got {opener_share}",
            where="--opener-share",
            fix="use a number in (0, 1], e.g. 0.3",
        )
    store = None
    if record:  # opened first: a scan that cannot be recorded should fail before the work, not after
        from tunesafe.evidence.workspace import open_store

        store = open_store(db_url(ctx))
    try:
        options = ScanOptions(contamination=tuple(contamination), top_k=top_k, opener_min_share=opener_share)
        report = Scanner(model).scan(path, fmt, parse_columns(columns), options, fix=fix)
        evidence_id = None
        if store is not None:
            from tunesafe.types import RecordType

            rec = store.append(
                RecordType.DATA_SCAN, report.evidence_body(), subject=model_name or report.sha256
            )
            evidence_id = rec.id
    finally:
        if store is not None:
            store.close()
    if as_json:
        print_json({**report.to_dict(), "evidence_id": evidence_id})
    else:
        render(report, evidence_id)
    if fail_on != "never" and RATINGS.index(report.rating) >= RATINGS.index(fail_on):
        raise typer.Exit(1)


def render(report: Any, evidence_id: int | None) -> None:
    console.print(
        f"[bold]{escape(str(report.path))}[/] ({report.format}, {report.examples} examples, sha256 "
        f"{report.sha256[:12]}…, {report.seconds:.1f}s)",
        highlight=False,
        markup=True,
    )
    rows = [
        {"type": t, **{s: c.get(s, 0) for s in ("high", "medium", "low")}} for t, c in report.counts.items()
    ]
    print_rows(rows, ["type", "high", "medium", "low"], title="Findings by type")
    shown = report.findings[:FINDINGS_SHOWN]
    print_rows(
        [
            {
                "line": f.line,
                "type": f.type,
                "severity": f.severity,
                "reason": f.reason,
                "excerpt": f.span.text[:60] if f.span else "",
            }
            for f in shown
        ],
        ["line", "type", "severity", "reason", "excerpt"],
        title=f"Findings ({len(shown)} of {len(report.findings)}; --json for all)",
    )
    sim = report.similarity
    console.print(
        f"Similarity ({sim['embedder']}): harmful mean {sim['harm_similarity_mean']}, top-k mean "
        f"{sim['harm_similarity_top_k_mean']}, safety mean {sim['safety_similarity_mean']}, nearest "
        f"anchor share {sim['nearest_anchor_share']}",
        highlight=False,
    )
    print_rows(
        [{"line": t["line"], "score": t["score"]} for t in sim["top_eroding"]],
        ["line", "score"],
        title="Most alignment-eroding examples (S_rep, He et al. 2024)",
    )
    colour = {"low": "green", "medium": "yellow", "high": "red"}[report.rating]
    console.print(f"Rating: [bold {colour}]{report.rating}[/]", highlight=False, markup=True)
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False)
    if report.fix:
        console.print(
            f"Filtered copy: {report.fix['output']} ({report.fix['kept']} kept, "
            f"{report.fix['removed_count']} removed); manifest {report.fix['manifest']}",
            highlight=False,
        )
    if evidence_id is not None:
        console.print(f"Evidence record #{evidence_id} (data_scan)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("scan-data", rich_help_panel=BEFORE)(scan_data)
