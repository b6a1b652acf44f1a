"""Files a person hands to the production commands (`models import`, `incidents open --conversation`) that
cannot be read as written: one error naming the file (and line) with exit code 2, and nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.evidence.store import Store
from tunesafe.production.incidents import list_incidents
from tunesafe.production.inventory import ModelSpec, add_model, inventory

from .conftest import run_cli

LATIN1_CSV = b"name,ref,owner\nbase-model,embedded:qwen2.5-coder-0.5b,Jos\xe9\n"
LATIN1_YAML = b"- name: base-model\n  ref: embedded:qwen2.5-coder-0.5b\n  owner: Jos\xe9\n"


@pytest.mark.parametrize(("name", "data", "line"), [("inv.csv", LATIN1_CSV, 2), ("inv.yaml", LATIN1_YAML, 3)])
def test_import_of_a_file_that_is_not_utf8_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, name: str,
                                                       data: bytes, line: int) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    path = tmp_path / name
    path.write_bytes(data)  # e.g. a spreadsheet export in Windows-1252
    result = run_cli(capsys, monkeypatch, "--db", db, "models", "import", str(path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}:{line}:" in result.output and "UTF-8" in result.output
    with Store.open(db) as store:
        assert inventory(store) == {}


GOOD = '{"messages": [{"role": "user", "content": "placeholder request"}]}\n'


@pytest.mark.parametrize(("data", "line", "reason"), [
    (GOOD.encode() + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', 2, "UTF-8"),
    # valid JSON, but not a conversation: the error must say which file and line, not "#2 of all files"
    ((GOOD + '{"messages": [{"role": "assistant", "content": "x"}]}\n').encode(), 2, "user message"),
    ((GOOD + "\n" + '{"prompt": "x"}\n').encode(), 3, "no request messages"),
    ((GOOD + "[" * 100_000 + "]" * 100_000 + "\n").encode(), 2, "malformed JSON"),
    ((GOOD + '{"messages": [], "messages": [{"role": "user", "content": "x"}]}\n').encode(), 2,
     "appears twice"),
])
def test_a_bad_conversation_file_is_one_error_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: bytes,
        line: int, reason: str) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(db) as store:
        add_model(store, ModelSpec(name="support-bot", ref="openai:support-bot@http://127.0.0.1:9/v1"))
    first = tmp_path / "first.jsonl"
    first.write_text(GOOD, encoding="utf-8")
    path = tmp_path / "conv.jsonl"
    path.write_bytes(data)
    result = run_cli(capsys, monkeypatch, "--db", db, "incidents", "open", "support-bot", "--title", "t",
                     "--severity", "low", "--conversation", str(first), "--conversation", str(path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}:{line}:" in result.output and reason in result.output, result.output
    with Store.open(db) as store:
        assert list_incidents(store) == []


def test_a_conversation_file_may_start_with_a_bom(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(db) as store:
        add_model(store, ModelSpec(name="support-bot", ref="openai:support-bot@http://127.0.0.1:9/v1"))
    path = tmp_path / "conv.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())  # Notepad's "UTF-8 with BOM"
    result = run_cli(capsys, monkeypatch, "--db", db, "incidents", "open", "support-bot", "--title", "t",
                     "--severity", "low", "--conversation", str(path))
    assert result.exit_code == 0, result.output
    with Store.open(db) as store:
        [incident] = list_incidents(store)
    assert len(incident.conversations) == 1


def test_a_conversation_file_with_no_conversation_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty export attached nothing and the incident was opened as if the conversations were on it
    monkeypatch.setenv("COLUMNS", "250")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(db) as store:
        add_model(store, ModelSpec(name="support-bot", ref="openai:support-bot@http://127.0.0.1:9/v1"))
    path = tmp_path / "conv.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    result = run_cli(capsys, monkeypatch, "--db", db, "incidents", "open", "support-bot", "--title", "t",
                     "--severity", "low", "--conversation", str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}: no conversation in the file" in result.output, result.output
    with Store.open(db) as store:
        assert list_incidents(store) == []
