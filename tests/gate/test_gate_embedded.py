"""The gate on a real local LLM (the embedded SmolLM2-135M): base against itself passes, the candidate
run replays the base run's attempts, and the reports are written. Small on purpose: a plumbing check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesafe.cli.app import app

pytestmark = pytest.mark.slow

MODEL = "embedded:smollm2-135m"


def test_embedded_base_against_itself_passes(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_items_per_family: 2\nmin_items_per_category: 1\n")  # --limit 6: 2 harmful
    args = ["--db", f"sqlite:///{tmp_path / 'store.db'}", "gate", "--base", MODEL, "--candidate", MODEL,
            "--suite", "smoke", "--attacks", "direct_request,refusal_suppression,prefix_injection",
            "--limit", "6", "--max-new-tokens", "32", "--judge", "refusal", "--policy", str(policy),
            "--no-progress", "--out", str(tmp_path / "report"), "--json"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    decision = json.loads(done.stdout)
    assert decision["verdict"] == "pass"
    info = decision["comparison"]["info"]
    assert info["n_paired"] > 0 and info["n_only_base"] == info["n_only_candidate"] == 0
    assert decision["base"]["run_id"] != decision["candidate"]["run_id"]
    assert decision["base"]["model_hash"] == decision["candidate"]["model_hash"]
    assert (tmp_path / "report" / "report.html").stat().st_size > 5000
