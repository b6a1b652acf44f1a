"""gguf_metadata reads the same values as the gguf package's full reader, and refuses damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.models.embedded import embedded_gguf_path
from tunesafe.models.gguf_header import gguf_metadata


def test_every_key_matches_the_gguf_reader() -> None:
    gguf = pytest.importorskip("gguf")
    path = embedded_gguf_path("smollm2-135m")
    reader = gguf.GGUFReader(str(path))
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]  # the reader's own pseudo-fields
    ours = gguf_metadata(path, keys)
    assert set(ours) == set(keys)
    for key in keys:
        expected = reader.get_field(key).contents()
        assert ours[key] == pytest.approx(expected) if isinstance(expected, float) else ours[key] == expected


def test_stops_at_the_keys_asked_for() -> None:
    path = embedded_gguf_path("smollm2-135m")
    assert gguf_metadata(path, ["general.architecture", "llama.block_count"]) == {
        "general.architecture": "llama", "llama.block_count": 30}
    assert gguf_metadata(path, ["no.such.key"]) == {}


@pytest.mark.parametrize("cut", [3, 24, 200, 5000])
def test_a_truncated_header_is_a_user_error(tmp_path: Path, cut: int) -> None:
    damaged = tmp_path / "cut.gguf"
    with embedded_gguf_path("smollm2-135m").open("rb") as whole:
        damaged.write_bytes(whole.read(cut))
    with pytest.raises(UserError) as err:
        gguf_metadata(damaged, ["tokenizer.ggml.tokens"])
    assert "cut.gguf" in err.value.message


def test_not_a_gguf_is_a_user_error(tmp_path: Path) -> None:
    other = tmp_path / "model.gguf"
    other.write_bytes(b"PK\x03\x04" + bytes(64))
    with pytest.raises(UserError, match="not a GGUF"):
        gguf_metadata(other, ["general.architecture"])
