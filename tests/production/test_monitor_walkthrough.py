"""`make production-demo` runs: the scripted walk-through (guardrail verified, a log with a planted
jailbreak ingested, the incident and its clock shown, a due red-team schedule run) exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "production-walkthrough.sh"


@pytest.mark.slow
def test_production_walkthrough_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), "COLUMNS": "200"}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "PASS moderation:" in out
    assert "successful_jailbreaks 1" in out and "malformed line(s) skipped" in out
    assert "monitor: 1 successful jailbreaks on 2026-12-01 (limit 0) -- 14d 23h left" in out
    assert "verdict baseline" in out and "OK evidence chain intact" in out
    assert not list(tmp_path.glob("tunesafe-walkthrough.*"))  # the temporary workspace is removed
