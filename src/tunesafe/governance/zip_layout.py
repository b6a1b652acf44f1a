"""Checks that a zip reads the same through its central directory (what Python's zipfile reads) as through
its local headers (what streaming unzip tools walk from the front): every byte of the file belongs to
exactly one listed entry, the central directory or its end records, in that order, and every local
header names the same file, method, CRC and sizes as its directory entry. Anything else (bytes before
or after the archive, a gap or overlap between entries, an entry the directory does not list, a local
header that disagrees) could show one content to `verify-bundle` and another to other tools.

    problems = layout_problems(data, archive.infolist())   # [] for a zip tunesafe wrote
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Sequence

_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_EOCD_SIG, _LOCATOR_SIG, _ZIP64_SIG, _LOCAL_SIG = 0x06054B50, 0x07064B50, 0x06064B50, 0x04034B50
_DESCRIPTOR_SIG = b"PK\x07\x08"
_HAS_DESCRIPTOR = 0x08  # general purpose flag bit 3: CRC and sizes follow the data
_ZIP64_EXTRA = 0x0001
_MAX32 = 0xFFFFFFFF


def layout_problems(data: bytes, infos: Sequence[zipfile.ZipInfo]) -> list[str]:
    """Every disagreement between the file's bytes and the central directory zipfile read (`infos`)."""
    end = data.rfind(struct.pack("<I", _EOCD_SIG))
    if end < 0 or end + _EOCD.size > len(data):
        return ["the zip has no end of central directory record"]
    (_, _, _, _, count, dir_size, dir_offset, comment) = _EOCD.unpack_from(data, end)
    problems: list[str] = []
    if comment:
        problems.append(f"the zip carries a {comment}-byte comment (a bundle has none)")
    if (extra := len(data) - (end + _EOCD.size + comment)) > 0:
        problems.append(f"{extra} bytes after the end of the zip archive")
    dir_end = end
    if _MAX32 in (dir_offset, dir_size) or count == 0xFFFF:  # zip64: the real values are in its record
        zip64 = _zip64_end(data, end)
        if zip64 is None:
            return [*problems, "the zip64 end of central directory record is missing or malformed"]
        dir_end, count, dir_size, dir_offset = zip64
    start = dir_end - dir_size  # where the directory actually is; dir_offset is where it says it is
    if start < 0:
        return [*problems, "the central directory is larger than the file"]
    if start > dir_offset:
        problems.append(f"{start - dir_offset} bytes before the zip archive")
    elif start < dir_offset:
        problems.append("the central directory overlaps the entries it lists")
    if count != len(infos):
        problems.append(f"the end record counts {count} entries, the central directory lists {len(infos)}")
    shift = start - dir_offset  # zipfile adds it to every header offset (bytes prepended)
    position = max(shift, 0)  # the prepended bytes are named above, once
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset > position:
            problems.append(_unlisted(position, info.header_offset))
        elif info.header_offset < position:
            problems.append(f"{info.filename}: its data overlaps the entry before it")
        local, entry_end = _local_entry(data, info)
        problems += [f"{info.filename}: its local header {p}" for p in local]
        position = max(position, entry_end)
    if position < start:
        problems.append(_unlisted(position, start))
    elif position > start:
        problems.append("the last entry runs into the central directory")
    return problems


def _unlisted(start: int, end: int) -> str:
    return f"{end - start} bytes at offset {start} belong to no entry the central directory lists"


def _zip64_end(data: bytes, end: int) -> tuple[int, int, int, int] | None:
    """(where the zip64 end record starts, entries, directory size, directory offset), or None."""
    at = end - _ZIP64_LOCATOR.size
    if at < 0:
        return None
    sig, _, record, _ = _ZIP64_LOCATOR.unpack_from(data, at)
    record_at = at - _ZIP64_EOCD.size  # the record sits right before its locator (no extensible data)
    if sig != _LOCATOR_SIG or record_at < 0:
        return None
    fields = _ZIP64_EOCD.unpack_from(data, record_at)
    if fields[0] != _ZIP64_SIG:
        return None
    return record_at, fields[7], fields[8], fields[9]


def _local_entry(data: bytes, info: zipfile.ZipInfo) -> tuple[list[str], int]:
    """(how the local header at info.header_offset disagrees with the directory entry, where the entry
    (header, data and any data descriptor) ends)."""
    at = info.header_offset
    if at + _LOCAL.size > len(data):
        return ["lies past the end of the file"], len(data)
    (sig, _, flags, method, _, _, crc, csize, usize, name_len, extra_len) = _LOCAL.unpack_from(data, at)
    if sig != _LOCAL_SIG:
        return ["is missing (no local header where the central directory points)"], at
    name_at = at + _LOCAL.size
    raw_name = data[name_at:name_at + name_len]
    extra = data[name_at + name_len:name_at + name_len + extra_len]
    data_at = name_at + name_len + extra_len
    problems = []
    name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    if name != info.orig_filename:
        problems.append(f"names {name!r}")
    if method != info.compress_type:
        problems.append(f"gives compression method {method}, the directory {info.compress_type}")
    end = data_at + info.compress_size
    if flags & _HAS_DESCRIPTOR:  # CRC and sizes are in the descriptor after the data
        crc, csize, usize, end = _descriptor(data, end, (crc, csize, usize))
    elif _MAX32 in (csize, usize):
        csize, usize = _zip64_sizes(extra, csize, usize)
    if (csize, usize) != (info.compress_size, info.file_size):
        problems.append(f"gives size {usize} ({csize} stored), the directory {info.file_size} "
                        f"({info.compress_size} stored)")
    if crc != info.CRC:
        problems.append(f"gives CRC {crc:08x}, the directory {info.CRC:08x}")
    return problems, end


def _descriptor(data: bytes, at: int, local: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """(crc, stored size, size, end) of the data descriptor at `at` (signature optional, 32-bit sizes);
    the local header's values when there is none to read."""
    if data[at:at + 4] == _DESCRIPTOR_SIG:
        at += 4
    if at + 12 > len(data):
        return (*local, at)
    crc, csize, usize = struct.unpack_from("<III", data, at)
    return crc, csize, usize, at + 12


def _zip64_sizes(extra: bytes, csize: int, usize: int) -> tuple[int, int]:
    """The 64-bit sizes a local header's zip64 extra field holds for the fields set to 0xFFFFFFFF."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4:at + 4 + size]
        if tag == _ZIP64_EXTRA:
            values = [v for (v,) in struct.iter_unpack("<Q", body[:len(body) // 8 * 8])]
            if usize == _MAX32 and values:
                usize = values.pop(0)
            if csize == _MAX32 and values:
                csize = values.pop(0)
            break
        at += 4 + size
    return csize, usize
