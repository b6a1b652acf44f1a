"""End to end through the real CLI on the real embedded SmolLM2-135M: the smoke suite under two template
families, judged by the default judge, stored, shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
def test_smoke_suite_on_the_embedded_model_through_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    result = _cli(db, "eval", "embedded:smollm2-135m", "--suite", "smoke", "--attacks",
                  "direct_request,refusal_suppression", "--limit", "4", "--max-new-tokens", "32", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    run, overall = body["run"], body["summary"]["groups"]["overall"]
    # 4 behaviours (2 harmful, 1 benign, 1 borderline); harmful ones under direct + 2 suppression variants
    assert run["status"] == "complete" and run["n_done"] == run["n_planned"] == 8
    assert overall["error"]["k"] == 0  # a local model that answers every request
    assert overall["asr"]["n"] == 6 and overall["over_refusal"]["n"] == 2
    assert body["session"]["completion_tokens"] > 0
    assert set(body["summary"]["groups"]) >= {"family:direct_request", "family:refusal_suppression"}
    shown = _cli(db, "runs", "show", run["id"], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["summary"] == body["summary"]
    assert _cli(db, "verify").returncode == 0
