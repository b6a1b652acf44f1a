"""The gate on a real local LLM (the embedded SmolLM2-135M): base against itself passes, the candidate
run replays the base run's attempts, and the reports are written. Small on purpose: a plumbing check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesafe.cli.app import app
from tunesafe.errors import UserError

pytestmark = pytest.mark.slow

MODEL = "embedded:smollm2-135m"


def test_embedded_base_against_itself_passes(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    # --limit 6: 2 harmful per family, far too few to rule out a regression; this test is the plumbing
    policy.write_text("min_items_per_family: 2\nmin_items_per_category: 1\nrule_out_regression: false\n")
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


def test_gate_runs_both_sides_on_one_backend_and_compare_refuses_a_mix(tmp_path: Path,
                                                                        llama_server: list[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_items_per_family: 1\nmin_items_per_category: 1\n")
    db = ["--db", f"sqlite:///{tmp_path / 'store.db'}"]
    common = ["--suite", "smoke", "--attacks", "direct_request", "--limit", "3", "--max-new-tokens", "8",
              "--judge", "refusal", "--policy", str(policy), "--no-progress", "--json"]
    # only the base asks for llama.cpp: the candidate must be evaluated there too
    gated = CliRunner().invoke(app, [*db, "gate", "--base", f"{MODEL}?backend=llamacpp", "--candidate", MODEL,
                                     *common, "--out", str(tmp_path / "report")])
    assert gated.exit_code in (0, 3), gated.output  # 3 items decide little; the pairing is the point
    decision = json.loads(gated.stdout)
    assert decision["candidate"]["model_ref"] == decision["base"]["model_ref"] == f"{MODEL}?backend=llamacpp"
    # a run of the same model on transformers is not comparable with the llama.cpp run
    hf_run = CliRunner().invoke(app, [*db, "eval", MODEL, "--suite", "smoke", "--attacks", "direct_request",
                                      "--limit", "3", "--max-new-tokens", "8", "--judge", "refusal",
                                      "--no-progress", "--json"])
    assert hf_run.exit_code == 0, hf_run.output
    runs = [decision["base"]["run_id"], json.loads(hf_run.stdout)["run"]["id"]]
    mixed = CliRunner().invoke(app, [*db, "compare", *runs, "--policy", str(policy)])
    assert isinstance(mixed.exception, UserError)  # main() turns it into exit code 2
    assert "ran on llamacpp" in str(mixed.exception) and "same ?backend=" in str(mixed.exception)
