"""The built-in agent suites (declared in suite/data/suites.yaml): `agents`, every case, and
`agents-smoke`, the fixed subset for CPU runs."""

from __future__ import annotations

from tunesafe.agents.cases import all_cases, smoke_cases
from tunesafe.suite.model import Suite


def load_suite(name: str, version: str) -> Suite:
    cases = smoke_cases() if name == "agents-smoke" else all_cases()
    return Suite(name, version, tuple(c.behavior(name) for c in cases), source=f"builtin:{name}")
