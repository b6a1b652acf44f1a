"""A few metadata values from a GGUF file's header, read without parsing the rest.

`gguf.GGUFReader` builds every field, including the tokenizer's vocabulary arrays (151k strings for
Qwen2.5): 12 s on the 2-core machine, to learn two integers. The keys a converter writes first
(`general.architecture`, `<arch>.block_count`) sit before those arrays, so this reader walks the key/value
section in order and stops as soon as it has what was asked for.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from tunesafe.errors import UserError

# GGUF value types -> struct format of one value (strings and arrays are read apart)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
            12: "<d"}
_STRING, _ARRAY = 8, 9
_FIX = "use a complete GGUF file (llama.cpp's converters write one)"


def gguf_metadata(path: Path, keys: Collection[str]) -> dict[str, Any]:
    """The values of `keys` (those present) from the GGUF header of `path`."""
    wanted, found = set(keys), {}
    try:
        with path.open("rb") as f:
            magic, version = f.read(4), _unpack(f, "<I")
            if magic != b"GGUF" or version < 2:
                raise UserError(f"'{path.name}' is not a GGUF file of version 2 or later", where=str(path),
                                fix=_FIX)
            _unpack(f, "<Q")  # tensor count
            for _ in range(_unpack(f, "<Q")):
                key = _string(f)
                value = _value(f, _unpack(f, "<I"), keep=key in wanted)
                if key in wanted:
                    found[key] = value
                    if len(found) == len(wanted):
                        break
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"'{path.name}' has a damaged GGUF header ({exc})", where=str(path),
                        fix=_FIX) from None
    return found


def _unpack(f: IO[bytes], fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("file ends inside the header")
    return struct.unpack(fmt, data)[0]


def _string(f: IO[bytes]) -> str:
    length = _unpack(f, "<Q")
    data = f.read(length)
    if len(data) != length:
        raise ValueError("file ends inside a string")
    return data.decode("utf-8")


def _value(f: IO[bytes], kind: int, *, keep: bool) -> Any:
    if kind in _SCALARS:
        return _unpack(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind != _ARRAY:
        raise ValueError(f"unknown value type {kind}")
    item, count = _unpack(f, "<I"), _unpack(f, "<Q")
    if item in _SCALARS and not keep:  # skipped, not read: vocabularies hold 100k+ entries
        f.seek(count * struct.calcsize(_SCALARS[item]), 1)
        return None
    values = [_value(f, item, keep=keep) for _ in range(count)]
    return values if keep else None
