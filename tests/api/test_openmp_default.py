"""`import tunesafe` sets libgomp's spin count before torch can load, unless the user chose a policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import os, tunesafe; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(("given", "expected"), [
    ({}, "10000 None"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "None PASSIVE"),
    ({"GOMP_SPINCOUNT": "500"}, "500 None"),
])
def test_the_spin_count_is_set_only_where_the_user_set_nothing(given: dict[str, str], expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
