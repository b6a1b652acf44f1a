"""Model inventory and lineage through the library API, on SQLite and PostgreSQL: versions are evidence
records, updates append, lineage follows bases, and --missing-post-eval is driven by evaluation records
written through the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.hashing import content_hash, file_sha256
from tunesafe.evidence.store import Store
from tunesafe.production import inventory as inv
from tunesafe.types import RecordType


@pytest.fixture
def store(store_url: str):
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 1024)
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n')
    (tmp_path / "train.yaml").write_text("epochs: 3\n")
    (tmp_path / "vendor.pdf").write_bytes(b"%PDF-1.4 placeholder")
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + b"\x01" * 64)
    return tmp_path


def _family(store: Store, files: Path) -> None:
    inv.add_model(store, inv.ModelSpec("base", "embedded:qwen2.5-coder-0.5b", stage="production"))
    inv.add_model(
        store,
        inv.ModelSpec(
            "support-ft",
            "embedded:qwen2.5-coder-0.5b+adapter",
            base="base",
            datasets=("train.jsonl",),
            training_config="train.yaml",
            vendor_eval="vendor.pdf",
            stage="production",
            owner="team-a",
        ),
        base_dir=files,
    )
    inv.add_model(store, inv.ModelSpec("support-ft2", f"gguf:{files / 'model.gguf'}", base="support-ft"))


def test_versions_carry_content_hashes(store: Store, files: Path) -> None:
    _family(store, files)
    ft = inv.get_model(store, "support-ft")
    assert ft.fine_tuned and ft.version == 1 and ft.owner == "team-a"
    assert [(f["role"], f["sha256"]) for f in ft.files] == [
        ("adapter", content_hash(files / "adapter").sha256)
    ]
    assert ft.files[0]["files"] == 2
    assert ft.datasets[0]["sha256"] == file_sha256(files / "train.jsonl")
    assert ft.training_config is not None and ft.training_config["path"] == str(files / "train.yaml")
    assert ft.vendor_eval is not None and ft.vendor_eval["sha256"] == file_sha256(files / "vendor.pdf")
    gguf = inv.get_model(store, "support-ft2")
    assert gguf.files[0]["role"] == "weights" and gguf.files[0]["size"] == 68
    record = store.get(ft.record_id)
    assert record.type == RecordType.MODEL_VERSION and record.subject == "support-ft"
    assert store.verify().ok


def test_file_hash_is_streamed_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from tunesafe.evidence import hashing

    data = bytes(range(256)) * 40
    (tmp_path / "w.bin").write_bytes(data)
    monkeypatch.setattr(hashing, "CHUNK", 7)  # many partial reads, as on a multi-GB file with 1 MiB chunks
    assert file_sha256(tmp_path / "w.bin") == hashlib.sha256(data).hexdigest()


def test_folder_hash_changes_with_any_file_inside(files: Path) -> None:
    before = content_hash(files / "adapter").sha256
    (files / "adapter" / "adapter_config.json").write_text('{"r": 16}')
    edited = content_hash(files / "adapter").sha256
    (files / "adapter" / "adapter_config.json").rename(files / "adapter" / "renamed.json")
    assert len({before, edited, content_hash(files / "adapter").sha256}) == 3


def test_lineage_updates_and_new_versions_append(store: Store, files: Path) -> None:
    _family(store, files)
    assert [m.name for m in inv.get_lineage(store, "support-ft2")] == ["base", "support-ft", "support-ft2"]
    assert [m.name for m in inv.get_lineage(store, "base")] == ["base"]
    before = store.verify().checked
    moved = inv.update_model(store, "support-ft2", stage="staging", owner="team-b")
    assert (moved.stage, moved.owner, moved.version) == ("staging", "team-b", 1)
    v2 = inv.add_model(
        store, inv.ModelSpec("support-ft", "embedded:qwen2.5-coder-0.5b", base="base"), new_version=True
    )
    assert v2.version == 2 and v2.files == ()
    assert store.verify().checked == before + 2  # nothing rewritten, two records appended
    assert [m.name for m in inv.list_models(store, "staging")] == ["support-ft2"]


def test_missing_post_eval_follows_evaluation_records(store: Store, files: Path) -> None:
    _family(store, files)
    missing = inv.missing_post_eval
    assert [m.name for m in missing(store)] == ["support-ft", "support-ft2"]  # base is not fine-tuned
    assert [m.name for m in missing(store, "production")] == ["support-ft"]

    inv.record_safety_eval(store, "support-ft", verdict="pass", run_id="r1")
    # a gate decision written by the gate names its candidate in the body (subject may differ)
    store.append(RecordType.GATE_DECISION, {"candidate_model": "support-ft2", "verdict": "fail"})
    # records that are not evaluations, or name another model, do not count
    store.append(RecordType.RUN, {"model_name": "support-ft"})
    assert missing(store) == []

    # a new version of support-ft needs its own evaluation: the old one came before it
    inv.add_model(
        store, inv.ModelSpec("support-ft", "embedded:qwen2.5-coder-0.5b", base="base"), new_version=True
    )
    assert [m.name for m in missing(store)] == ["support-ft"]
    evals = inv.evaluations(store)
    assert inv.latest_evaluation(inv.get_model(store, "support-ft2"), evals) is not None
    attached = [r.type for r in inv.attached_records(store, "support-ft2")]
    assert attached == [RecordType.MODEL_VERSION, RecordType.GATE_DECISION]


@pytest.mark.parametrize(
    ("spec", "new_version", "message"),
    [
        (inv.ModelSpec("base", "embedded:x"), False, "already in the inventory"),
        (inv.ModelSpec("fresh", "embedded:x"), True, "is not in the inventory"),
        (inv.ModelSpec("x", "nonsense:abc"), False, "unknown model ref"),
        (inv.ModelSpec("x", "litellm:"), False, "names no model"),
        (inv.ModelSpec("x", "gguf:missing.gguf"), False, "not found"),
        (inv.ModelSpec("x", "hf:missing-dir+also-missing"), False, "not found"),
        (inv.ModelSpec("x", "embedded:x", datasets=("nope.jsonl",)), False, "dataset not found"),
        (inv.ModelSpec("x", "embedded:x", base="ghost"), False, "base model 'ghost' is not in the inventory"),
        (inv.ModelSpec("x", "embedded:x", stage="prod"), False, "unknown stage"),
        (inv.ModelSpec("bad name", "embedded:x"), False, "invalid model name"),
        (inv.ModelSpec("base", "embedded:x", base="child"), True, "cycle"),
    ],
)
def test_bad_input_writes_nothing(
    tmp_path: Path, spec: inv.ModelSpec, new_version: bool, message: str
) -> None:
    with Store.open(str(tmp_path / "s.db")) as store:
        inv.add_model(store, inv.ModelSpec("base", "embedded:qwen2.5-coder-0.5b"))
        inv.add_model(store, inv.ModelSpec("child", "litellm:gpt-4o-mini", base="base"))
        with pytest.raises(UserError, match=message):
            inv.add_model(store, spec, base_dir=tmp_path, new_version=new_version)
        assert store.verify().checked == 2
