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


def write_save_to_disk(folder: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """The folder layout datasets.save_to_disk writes: state.json naming one Arrow IPC stream file."""
    import pyarrow as pa

    folder.mkdir()
    table = pa.Table.from_pylist(list(rows))
    with (
        pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as w,
    ):
        w.write_table(table)
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}
    (folder / "state.json").write_text(json.dumps(state))
    return folder


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, Sequence[dict[str, Any]]], Path]:
    def write(name: str, rows: Sequence[dict[str, Any]]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write
