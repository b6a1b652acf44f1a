"""The embedded model file: joined from the PyPI parts, verified against the pinned sha256, reused."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunesafe.errors import UserError
from tunesafe.models.embedded import EMBEDDED, embedded_gguf_path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNESAFE_CACHE", str(tmp_path))
    return tmp_path


def test_parts_are_joined_verified_and_reused(cache: Path) -> None:
    spec = EMBEDDED["qwen2.5-coder-0.5b"]
    path = embedded_gguf_path("qwen2.5-coder-0.5b")
    assert path.parent == cache / "models"
    assert path.stat().st_size == spec.size == 491_400_064
    assert spec.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert sha256_of(path) == spec.sha256
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    mtime = path.stat().st_mtime_ns
    assert embedded_gguf_path("qwen2.5-coder-0.5b") == path and path.stat().st_mtime_ns == mtime


def test_a_tampered_file_is_refused_with_exit_2(cache: Path, cli: Callable[..., Any],
                                                 user_error: Callable[..., None]) -> None:
    path = embedded_gguf_path("qwen2.5-coder-0.5b")
    with path.open("r+b") as fh:  # same size, one byte changed: only the hash can tell
        fh.seek(200_000_000)
        byte = fh.read(1)
        fh.seek(200_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(UserError, match="sha256"):
        embedded_gguf_path("qwen2.5-coder-0.5b")
    result = cli("chat", "embedded:qwen2.5-coder-0.5b", "hello", env={"TUNESAFE_CACHE": str(cache)})
    user_error(result, "expected 1d9614638d18", "reinstall")


def test_smollm2_is_read_in_place_and_verified(cache: Path) -> None:
    path = embedded_gguf_path("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and "site-packages" in str(path)
    assert sha256_of(path) == EMBEDDED["smollm2-135m"].sha256
    assert not (cache / "models").exists()


def test_unknown_embedded_name() -> None:
    with pytest.raises(UserError, match="smollm2-135m"):
        embedded_gguf_path("gpt-5")
