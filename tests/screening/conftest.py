"""Helpers for the screening tests: small datasets written to tmp_path in each format."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest


def chat(user: str, assistant: str, system: str | None = None) -> dict[str, Any]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]
    return {"messages": msgs}


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, Sequence[dict[str, Any]]], Path]:
    def write(name: str, rows: Sequence[dict[str, Any]]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write
