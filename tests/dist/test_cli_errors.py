"""The one-line error of the installed command prints user text as text: a path or a fix with square
brackets (pip extras such as 'tunesafe[screen]') is not swallowed as Rich markup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_brackets_in_an_error_are_printed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "judge", "pairs[bold].jsonl"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "file not found: pairs[bold].jsonl" in done.stderr, done.stderr
