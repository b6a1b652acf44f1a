"""The model id an OpenAI-compatible server says answered (each reply's `model`), end to end: counted per
run, shown for each side of a gate, and a note when two refs naming different models were both answered
by one model id (the candidate endpoint may be serving the base model). Never the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tunesafe.cli.app import app
from tunesafe.engine.results import list_runs, reported_models
from tunesafe.evidence.store import Store
from tunesafe.testing.openai_server import serve

NOTE = "the candidate endpoint may be serving the base model"


def gate(tmp_path: Path, **server: Any) -> tuple[dict[str, Any], Path]:
    """`tunesafe gate` of two models on one loopback server (the base and a second served name)."""
    db, out = str(tmp_path / "store.db"), tmp_path / "report"
    with serve(served=("support-ft",), **server) as running:
        result = CliRunner().invoke(app, [
            "--db", db, "gate", "--base", f"openai:tunesafe-test@{running.url}",
            "--candidate", f"openai:support-ft@{running.url}", "--suite", "smoke", "--attacks",
            "direct_request", "--judge", "refusal", "--max-new-tokens", "16", "--no-progress", "--json",
            "--out", str(out)])
    assert result.exit_code in (0, 1, 3), result.output
    return json.loads(result.stdout), out


def test_one_model_id_answering_both_sides_is_a_note(tmp_path: Path) -> None:
    decision, out = gate(tmp_path, reported_model="tunesafe-test-2024-08-06")
    notes = [r for r in decision["reasons"] if NOTE in r]
    assert len(notes) == 1 and "'tunesafe-test-2024-08-06'" in notes[0]
    plain, _ = gate(tmp_path / "plain")  # the same answers, each reply naming the requested model
    assert (decision["verdict"], decision["exit_code"]) == (plain["verdict"], plain["exit_code"])
    assert [r for r in decision["reasons"] if NOTE not in r] == plain["reasons"]  # a note, not a reason
    n = decision["base"]["n_attempts"]
    for side in ("base", "candidate"):
        assert decision[side]["reported_models"] == {"tunesafe-test-2024-08-06": n}
    assert NOTE in (out / "summary.md").read_text() and NOTE in (out / "report.html").read_text()
    assert f"tunesafe-test-2024-08-06 ({n})" in (out / "report.html").read_text()


def test_each_side_named_by_its_own_model_id_has_no_note(tmp_path: Path) -> None:
    decision, out = gate(tmp_path)
    assert not [r for r in decision["reasons"] if NOTE in r]
    n = decision["base"]["n_attempts"]
    assert decision["base"]["reported_models"] == {"tunesafe-test": n}
    assert decision["candidate"]["reported_models"] == {"support-ft": n}
    summary = (out / "summary.md").read_text()
    assert f"base tunesafe-test ({n})" in summary and f"candidate support-ft ({n})" in summary
    assert NOTE not in summary
    store = Store.open(str(tmp_path / "store.db"))
    counted = {run.model_ref.split("@")[0]: reported_models(store, run.id) for run in list_runs(store)}
    assert counted == {"openai:tunesafe-test": {"tunesafe-test": n}, "openai:support-ft": {"support-ft": n}}
