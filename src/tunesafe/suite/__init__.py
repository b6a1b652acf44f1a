"""What we ask: behaviour suites (harmful behaviours, benign and borderline prompts) and loaders for the
standard formats.

    load_suite("default")                          # built-in, see data/suites.yaml
    load_suite("harmbench_behaviors_text_all.csv")  # layout detected from the columns
    load_suite("mine.jsonl", text="prompt", kind="label", default_category="misc")
"""

from __future__ import annotations

from pathlib import Path

from tunesafe.errors import UserError
from tunesafe.suite import builtin
from tunesafe.suite.layouts import load_file
from tunesafe.suite.model import Suite
from tunesafe.suite.taxonomy import load_taxonomy

__all__ = ["Suite", "builtin_names", "load_suite", "load_taxonomy", "parse_mapping"]


def builtin_names() -> list[str]:
    return builtin.names()


def load_suite(name_or_path: str | Path, **mapping: str) -> Suite:
    """A built-in suite by name, or a file (.jsonl/.csv/.parquet) with an optional column mapping and
    options (see tunesafe.suite.layouts.load_file)."""
    name = str(name_or_path)
    if name in builtin.names() and not Path(name).exists():
        if mapping:
            raise UserError(f"built-in suite '{name}' takes no column mapping", where=name,
                            fix="drop the mapping, or pass a file path")
        return builtin.load_builtin(name)
    if not Path(name).exists():
        raise UserError(f"no built-in suite or file named '{name}'", where=name,
                        fix=f"use one of {', '.join(builtin.names())} or a path to a .jsonl/.csv/.parquet "
                            "file")
    return load_file(name, **mapping)


def parse_mapping(spec: str | None) -> dict[str, str]:
    """'text=prompt,kind=label' -> {'text': 'prompt', 'kind': 'label'} (the CLI's --map)."""
    result: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"bad mapping entry '{part}'", where="--map",
                            fix="write KEY=VALUE pairs separated by commas, e.g. text=prompt,kind=label")
        result[key.strip()] = value.strip()
    return result
