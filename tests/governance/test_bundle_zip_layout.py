"""A bundle must read the same to `verify-bundle` as to any other unzip tool: Python's zipfile reads only
the central directory, while streaming tools walk the local headers from the front and some tools take
the first or last of two same-named entries. Zips crafted byte by byte here, whose members all match the
manifest through the central directory, must still fail verification when bytes sit outside the listed
entries or a local header disagrees with the directory."""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from tunesafe.evidence.store import Store
from tunesafe.governance.bundle import bundle_files, chain_segment, verify_bundle, write_bundle

CARD = "documents/card.md"
Entry = tuple[str, bytes]


@pytest.fixture
def members(tmp_path: Path) -> list[Entry]:
    """The members of a real (unsigned) bundle, in its order."""
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        mine = [store.append("model_version", {"name": "m", "ref": "embedded:x"}, subject="m"),
                store.append("gate_decision", {"verdict": "pass", "candidate_model": "m"}, subject="m")]
        chain = chain_segment(store.records(), mine[0].id)
    files = bundle_files(mine, chain, {CARD: b"# card\n"}, model="m")
    write_bundle(tmp_path / "real.zip", files)
    with zipfile.ZipFile(tmp_path / "real.zip") as archive:
        return [(i.filename, archive.read(i)) for i in archive.infolist()]


def local_header(name: str, data: bytes, *, size: int | None = None) -> bytes:
    raw = name.encode()
    stored = len(data) if size is None else size
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(data), stored, stored,
                       len(raw), 0) + raw


def raw_zip(entries: Sequence[Entry], *, listed: Sequence[int] | None = None,
            headers: dict[int, bytes] | None = None) -> bytes:
    """A stored (uncompressed) zip of `entries`; the central directory lists only `listed` (default all);
    `headers` replaces the local header of an entry (data left as is)."""
    body, offsets = b"", []
    for i, (name, data) in enumerate(entries):
        offsets.append(len(body))
        body += (headers or {}).get(i, local_header(name, data)) + data
    directory = b""
    chosen = range(len(entries)) if listed is None else listed
    for i in chosen:
        name, data = entries[i]
        raw = name.encode()
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, zlib.crc32(data),
                                 len(data), len(data), len(raw), 0, 0, 0, 0, 0, offsets[i]) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(chosen), len(chosen), len(directory), len(body), 0)
    return body + directory + end


def check(tmp_path: Path, data: bytes) -> list[str]:
    path = tmp_path / "crafted.zip"
    path.write_bytes(data)
    return verify_bundle(path).problems


def test_a_well_formed_zip_of_the_members_verifies(tmp_path: Path, members: list[Entry]) -> None:
    assert check(tmp_path, raw_zip(members)) == []


@pytest.mark.parametrize("where", ["prepended", "appended"])
def test_bytes_around_the_archive_are_refused(tmp_path: Path, members: list[Entry], where: str) -> None:
    # before: another zip, which a streaming unzip reads instead; after: bytes no listed entry holds
    other = raw_zip([(CARD, b"# another card\n")]) if where == "prepended" else b"hidden data " * 5
    data = other + raw_zip(members) if where == "prepended" else raw_zip(members) + other
    problems = check(tmp_path, data)
    said = f"{len(other)} bytes {'before' if where == 'prepended' else 'after'}"
    assert any(said in p for p in problems), problems


def test_an_entry_the_directory_does_not_list_is_refused(tmp_path: Path, members: list[Entry]) -> None:
    # a streaming unzip meets this card first; the central directory never mentions it
    hidden = [(CARD, b"# another card\n"), *members]
    problems = check(tmp_path, raw_zip(hidden, listed=range(1, len(hidden))))
    assert any("bytes at offset 0 belong to no entry" in p for p in problems), problems


def test_a_local_header_whose_size_differs_is_refused(tmp_path: Path, members: list[Entry]) -> None:
    i = next(n for n, (name, _) in enumerate(members) if name == CARD)
    lying = local_header(CARD, members[i][1], size=len(members[i][1]) + 40)
    problems = check(tmp_path, raw_zip(members, headers={i: lying}))
    assert any(p.startswith(f"{CARD}: its local header") and "size" in p for p in problems), problems


def test_a_local_header_whose_name_differs_is_refused(tmp_path: Path, members: list[Entry]) -> None:
    i = next(n for n, (name, _) in enumerate(members) if name == CARD)
    renamed = local_header("documents/cbrd.md", members[i][1])
    problems = check(tmp_path, raw_zip(members, headers={i: renamed}))
    assert any(p.startswith(f"{CARD}: its local header") and "documents/cbrd.md" in p for p in problems), \
        problems


def test_two_entries_of_one_name_are_refused(tmp_path: Path, members: list[Entry]) -> None:
    problems = check(tmp_path, raw_zip([*members, (CARD, b"# another card\n")]))
    assert any(p.startswith(f"{CARD}: stored twice") for p in problems), problems
