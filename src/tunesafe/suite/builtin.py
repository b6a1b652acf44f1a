"""The built-in suites (`default`, `smoke`), declared in data/suites.yaml. `smoke` is a fixed id list
over `default`, so its items are the very same behaviours and stay stable across releases. A suite with
a `module` (the agent suites) is built by that module's `load_suite(name, version)`."""

from __future__ import annotations

import importlib
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tunesafe.suite.layouts import load_file
from tunesafe.suite.model import Suite

DATA = Path(__file__).parent / "data"


@cache
def manifest() -> dict[str, dict[str, Any]]:
    with (DATA / "suites.yaml").open(encoding="utf-8") as fh:
        return dict(yaml.safe_load(fh))


def names() -> list[str]:
    return list(manifest())


@cache
def load_builtin(name: str) -> Suite:
    spec = manifest()[name]
    version = str(spec["version"])
    if "module" in spec:  # a suite built by a package from its own data (the agent cases)
        suite: Suite = importlib.import_module(spec["module"]).load_suite(name, version)
        return suite
    if "subset_of" not in spec:
        suite = load_file(DATA / spec["file"], layout="generic", name=name, version=version)
        return replace(suite, source=f"builtin:{name}")
    parent = load_builtin(spec["subset_of"])
    by_id = {b.id: b for b in parent.behaviors}
    missing = [i for i in spec["ids"] if i not in by_id]
    if missing:  # a packaging error, not a user error
        raise RuntimeError(f"suite {name} names ids absent from {spec['subset_of']}: {missing}")
    behaviors = tuple(replace(by_id[i], suite=name, version=version) for i in spec["ids"])
    extra = {b.id: parent.extra[b.id] for b in behaviors if b.id in parent.extra}
    return Suite(name, version, behaviors, source=f"builtin:{name}", extra=extra)
