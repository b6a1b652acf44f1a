"""Importing an existing inventory from CSV and YAML: bases in any order, paths relative to the file, and
any bad row naming file:line with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.hashing import file_sha256
from tunesafe.evidence.store import Store
from tunesafe.production import inventory as inv
from tunesafe.production.importer import import_inventory

CSV = """name,ref,base,stage,owner,datasets,training_config
support-ft,embedded:qwen2.5-coder-0.5b,base,production,team-a,data/a.jsonl;data/b.jsonl,train.yaml
base,embedded:qwen2.5-coder-0.5b,,production,platform,,
legal-ft,litellm:gpt-4o-mini,base,staging,,,
"""

YAML = """\
models:
  - name: support-ft
    ref: embedded:qwen2.5-coder-0.5b
    base: base
    datasets: [data/a.jsonl, data/b.jsonl]
    training_config: train.yaml
    stage: production
    owner: team-a
  - name: base
    ref: embedded:qwen2.5-coder-0.5b
    stage: production
  - {name: legal-ft, ref: "litellm:gpt-4o-mini", base: base, stage: staging}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text('{"x": 1}\n')
    (tmp_path / "data" / "b.jsonl").write_text('{"x": 2}\n')
    (tmp_path / "train.yaml").write_text("epochs: 1\n")
    return tmp_path


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(str(tmp_path / "inventory.db")) as opened:
        yield opened


@pytest.mark.parametrize(("filename", "content"), [("inv.csv", CSV), ("inv.yaml", YAML)])
def test_import_orders_bases_first_and_hashes_relative_paths(
    store: Store, folder: Path, filename: str, content: str
) -> None:
    path = folder / filename
    path.write_text(content)
    result = import_inventory(store, path)
    assert result.added == ["base", "support-ft", "legal-ft"] and result.skipped == []
    ft = inv.get_model(store, "support-ft")
    assert ft.base == "base" and ft.stage == "production" and ft.owner == "team-a"
    assert [d["sha256"] for d in ft.datasets] == [
        file_sha256(folder / "data" / n) for n in ("a.jsonl", "b.jsonl")
    ]
    assert ft.training_config is not None and ft.training_config["sha256"] == file_sha256(
        folder / "train.yaml"
    )
    assert [m.name for m in inv.missing_post_eval(store)] == ["legal-ft", "support-ft"]
    assert store.verify().ok

    with pytest.raises(UserError, match="already in the inventory") as again_error:
        import_inventory(store, path)
    # The fix names import's own option; import has no --new-version to pass (only `models add` has).
    assert again_error.value.fix.startswith("pass --skip-existing")
    assert "pass --new-version" not in again_error.value.fix
    again = import_inventory(store, path, skip_existing=True)
    assert again.added == [] and sorted(again.skipped) == ["base", "legal-ft", "support-ft"]


@pytest.mark.parametrize(
    ("filename", "content", "where", "message"),
    [
        ("x.csv", "name,ref,colour\nm,embedded:x,red\n", "x.csv:1", "unknown colour"),
        ("x.csv", "name,base\nm,\n", "x.csv:1", "missing ref"),
        ("x.csv", "name,ref\nok,embedded:x\nbad,weird:thing\n", "x.csv:3", "unknown model ref"),
        ("x.csv", "name,ref,datasets\nm,embedded:x,data/missing.jsonl\n", "x.csv:2", "dataset not found"),
        (
            "x.csv",
            "name,ref,base\nm,embedded:x,ghost\n",
            "x.csv:2",
            "neither in the inventory nor in the file",
        ),
        ("x.csv", "name,ref\nm,embedded:x\nm,embedded:y\n", "x.csv:3", "appears twice"),
        ("x.csv", "name,ref,stage\nm,embedded:x,live\n", "x.csv:2", "unknown stage"),
        ("x.csv", "name,ref\n,embedded:x\n", "x.csv:2", "empty name"),
        (
            "x.yaml",
            "- name: ok\n  ref: embedded:x\n- name: m\n  ref: [unclosed\n",
            "x.yaml:5",
            "invalid YAML",
        ),
        ("x.yaml", "- name: ok\n  ref: embedded:x\n- just a string\n", "x.yaml:3", "must be a mapping"),
        ("x.yaml", "name: m\nref: embedded:x\n", "x.yaml", "expected a list"),
        ("x.yaml", "- name: m\n  ref: gguf:weights/missing.gguf\n", "x.yaml:1", "not found"),
        ("x.txt", "name,ref\n", "x.txt", "unsupported inventory format"),
        # an unquoted comma ("Smith, Jo") made a row longer than the header; the extra fields were dropped
        ("x.csv", "name,ref,owner\nok,embedded:x,ann\nm,embedded:x,Smith, Jo\n", "x.csv:3", "more fields"),
        # the last of two same-named columns or keys was kept and the first dropped without a word
        ("x.csv", "name,ref,ref\nm,embedded:x,embedded:y\n", "x.csv:1", "appears twice"),
        ("x.yaml", "- name: m\n  ref: embedded:x\n  ref: embedded:y\n", "x.yaml:3", "duplicate key 'ref'"),
        # a NUL byte: PyYAML's ReaderError was raised before the YAML error handling (a traceback)
        ("x.yaml", "- name: m\n  ref: embedded:x\x00\n", "x.yaml:2", "invalid YAML"),
    ],
)
def test_bad_rows_name_file_and_line_and_write_nothing(
    store: Store, folder: Path, filename: str, content: str, where: str, message: str
) -> None:
    path = folder / filename
    path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        import_inventory(store, path)
    assert info.value.where == str(folder / where)
    assert store.verify().checked == 0


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="inventory file not found"):
        import_inventory(store, tmp_path / "absent.csv")
