"""tunesafe: the safety gate for fine-tuned LLMs.

The public Python API (docs/python-api.md), stable across minor versions:

    import tunesafe
    outcome = tunesafe.gate("openai:base@http://host/v1", "openai:tuned@http://host/v1", store="runs.db")
    outcome.decision.verdict            # "pass" | "fail" | "inconclusive"

`evaluate`, `gate`, `scan_data`, `judge` and `SafetyCallback` are imported on first use, so
`import tunesafe` stays cheap (the engine, numpy and transformers load only when a call needs them).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# torch's OpenMP runtime (libgomp) reads its wait policy once, when torch loads, hence here, before any
# entry point can import it; a user setting of either variable wins. Its default spins 300,000 rounds
# (about 3 ms) at every wait: 25% faster LoRA training steps than no spinning (PASSIVE) on an idle
# machine, twice as slow beside other busy processes. 10,000 rounds kept nearly all of the first and
# almost none of the second (benchmarks/omp_wait.py; BENCHMARKS.md "OpenMP spin-waiting").
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

if TYPE_CHECKING:
    from tunesafe.api import evaluate, gate, judge, scan_data
    from tunesafe.training.callback import SafetyCallback

    __version__: str

__all__ = ["SafetyCallback", "__version__", "evaluate", "gate", "judge", "scan_data"]

_LAZY = {
    "evaluate": "tunesafe.api",
    "gate": "tunesafe.api",
    "judge": "tunesafe.api",
    "scan_data": "tunesafe.api",
    "SafetyCallback": "tunesafe.training.callback",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _installed_version()
    elif name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'tunesafe' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def _installed_version() -> str:
    # The version lives in pyproject.toml only; the package metadata carries it into every record.
    # importlib.metadata alone costs ~60 ms to import, hence on first use rather than at import.
    from importlib import metadata

    try:
        return metadata.version("tunesafe")
    except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
