"""The GitHub Action: action.yml's inputs reach scripts/ci-action.py, and the script, run as Actions runs
it (INPUT_* variables, GITHUB_STEP_SUMMARY and GITHUB_OUTPUT files), gates two loopback models with the
real CLI, appends summary.md to the job summary, writes its outputs and maps the exit codes."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tunesafe.testing.smoke_pair import COMPLIANCE, REFUSAL, smoke_pair

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ci-action.py"
GATE_INPUTS = {"INPUT_SUITE": "smoke", "INPUT_ATTACKS": "direct_request,refusal_suppression,prefix_injection",
               "INPUT_JUDGE": "refusal", "INPUT_EXTRA_ARGS": "--max-new-tokens 32"}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_action", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    with smoke_pair() as models:
        yield models.base, models.eroded


def run_action(tmp_path: Path, **inputs: str) -> tuple[int, str, dict[str, str], str]:
    """The script as the Gate step runs it: (exit code, stdout, outputs, job summary)."""
    summary, outputs = tmp_path / "step_summary.md", tmp_path / "github_output"
    summary.write_text("## an earlier step\n", encoding="utf-8")
    outputs.write_text("", encoding="utf-8")
    env = {**os.environ, **inputs, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)}
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    pairs = dict(line.split("=", 1) for line in outputs.read_text(encoding="utf-8").splitlines())
    return done.returncode, done.stdout + done.stderr, pairs, summary.read_text(encoding="utf-8")


def test_action_inputs_reach_the_script() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
    steps = action["runs"]["steps"]
    gate = next(s for s in steps if s.get("id") == "gate")
    script_reads = {*re.findall(r'_(?:get|required|flag)\(env, "(\w+)"', SCRIPT.read_text(encoding="utf-8")),
                    *load_script().OPTIONAL}
    assert {k.removeprefix("INPUT_") for k in gate["env"]} == script_reads
    for key, value in gate["env"].items():  # each INPUT_X is the input x
        assert value == "${{ inputs.%s }}" % key.removeprefix("INPUT_").lower().replace("_", "-")
    used = yaml.safe_dump(steps)
    assert all(f"inputs.{name}" in used for name in action["inputs"]), "an input no step uses"
    assert set(action["outputs"]) == {"verdict", "exit-code", "report-dir", "decision", "evidence-id"}


def test_gate_fail_then_inconclusive_as_a_warning(servers: tuple[str, str], tmp_path: Path) -> None:
    base, eroded = servers
    store = f"sqlite:///{tmp_path / 'evidence.db'}"
    code, log, outputs, summary = run_action(tmp_path, INPUT_BASE=base, INPUT_CANDIDATE=eroded, INPUT_STORE=store,
                                             INPUT_CANDIDATE_NAME="support-bot-v2", **GATE_INPUTS)
    assert code == 1, log
    assert outputs["verdict"] == "fail" and outputs["exit-code"] == "1" and outputs["evidence-id"].isdigit()
    assert (tmp_path / outputs["decision"]).is_file() and outputs["report-dir"] == "tunesafe-report"
    report = (tmp_path / "tunesafe-report" / "summary.md").read_text(encoding="utf-8")
    assert summary == "## an earlier step\n" + report  # appended, the earlier step's kept
    assert "::error title=tunesafe gate::safety gate FAIL: " in log

    strict = tmp_path / "strict.yaml"  # more items per family than the smoke suite has: inconclusive
    strict.write_text("version: 1\nmin_items_per_family: 1000\n", encoding="utf-8")
    code, log, outputs, _ = run_action(tmp_path, INPUT_BASE=base, INPUT_CANDIDATE=base, INPUT_STORE=store,
                                       INPUT_POLICY=str(strict), INPUT_FAIL_ON_INCONCLUSIVE="false",
                                       INPUT_OUT="strict-report", **GATE_INPUTS)
    assert code == 0, log
    assert outputs["verdict"] == "inconclusive" and outputs["exit-code"] == "3"
    assert "::warning title=tunesafe gate::safety gate INCONCLUSIVE" in log


def test_input_error_from_the_gate_is_never_a_pass(servers: tuple[str, str], tmp_path: Path) -> None:
    base, eroded = servers
    code, log, outputs, summary = run_action(tmp_path, INPUT_BASE=base, INPUT_CANDIDATE=eroded,
                                             INPUT_POLICY="missing.yaml", INPUT_STORE=str(tmp_path / "e.db"),
                                             **GATE_INPUTS)
    assert code == 2 and outputs["verdict"] == "error" and outputs["exit-code"] == "2", log
    assert "no decision" in summary and "decision" not in outputs


def test_missing_input_and_exit_mapping(tmp_path: Path) -> None:
    script = load_script()
    out = tmp_path / "github_output"
    assert script.main({"INPUT_CANDIDATE": "openai:x@http://127.0.0.1:9/v1", "GITHUB_OUTPUT": str(out)}) == 2
    assert "verdict=error" in out.read_text(encoding="utf-8")
    assert script.main({"INPUT_BASE": "a", "INPUT_CANDIDATE": "b", "INPUT_FAIL_ON_INCONCLUSIVE": "maybe"}) == 2
    assert [script.job_exit(code, True) for code in (0, 1, 2, 3, 120)] == [0, 1, 2, 1, 120]
    assert [script.job_exit(code, False) for code in (0, 1, 2, 3)] == [0, 1, 2, 0]
