from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

Result = subprocess.CompletedProcess[str]


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `tunesafe ARGS...` in a subprocess (the real entry point: UserError -> one line, exit 2)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True,
                              text=True, env={**os.environ, **(env or {})}, timeout=timeout)

    return run


@pytest.fixture
def user_error() -> Callable[..., None]:
    """Check a CLI result is one clean user error: exit 2, no traceback, the given fragments in stderr."""

    def check(result: Result, *fragments: str) -> None:
        assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        for fragment in fragments:
            assert fragment in result.stderr, result.stderr

    return check
