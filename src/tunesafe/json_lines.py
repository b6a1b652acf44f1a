"""One line of a JSONL file the user wrote, decoded or refused with a UserError naming file:line.

json.loads fails in three ways, not one: a JSONDecodeError for bad syntax, a RecursionError for deep
nesting and a plain ValueError for an integer past Python's 4,300-digit limit; catching only the first
left the other two as tracebacks. It also keeps the last of two equal keys without a word, so the value a
person wrote first (a second "response", a second "kind") would silently be dropped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tunesafe.errors import UserError

# Universal newlines only: str.splitlines() also breaks at U+2028/U+2029/U+0085 (legal raw inside a JSON
# string) and at form feeds, which split valid lines and put line numbers out of step with the file.
NEWLINE = re.compile(r"\r\n?|\n")


class BadJson(ValueError):
    """A line json cannot decode; `reason` says why in words a person can act on."""

    def __init__(self, reason: str, *, repeated_key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.repeated_key = repeated_key


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def decode(text: str, *, unique_keys: bool = True) -> Any:
    """json.loads(text), every failure a BadJson."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except json.JSONDecodeError as exc:
        raise BadJson(f"{exc.msg} at column {exc.colno}") from None
    except (_RepeatedKey, RecursionError, ValueError) as exc:
        raise _in_words(exc) from None


_STREAM_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def raw_decode(text: str, pos: int) -> tuple[Any, int]:
    """The JSON value starting at `pos` and where it ends, for readers that stream a file in pieces: a
    JSONDecodeError propagates (the piece may only be cut short), every other failure is a BadJson."""
    try:
        return _STREAM_DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        raise
    except (_RepeatedKey, RecursionError, ValueError) as exc:
        raise _in_words(exc) from None


def _in_words(exc: Exception) -> BadJson:
    if isinstance(exc, _RepeatedKey):
        return BadJson(f"key '{exc.key}' appears twice in one object", repeated_key=exc.key)
    if isinstance(exc, RecursionError):
        return BadJson("nested too deeply to read")
    # ValueError: its own text advises sys.set_int_max_str_digits(), no help to the person
    return BadJson("a number of more than 4,300 digits")


def json_line(text: str, where: str, fix: str, *, unique_keys: bool = True) -> Any:
    """The value of one JSON line; `where` is "path:line", `fix` what a bad line should look like."""
    try:
        return decode(text, unique_keys=unique_keys)
    except BadJson as exc:
        raise user_error(exc, where, fix) from None


def user_error(exc: BadJson, where: str, fix: str) -> UserError:
    if exc.repeated_key is not None:
        return UserError(exc.reason, where=where, fix="keep one value per key")
    return UserError(f"malformed JSON: {exc.reason}", where=where, fix=fix)


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(file line number, line) for every line that is not blank."""
    for number, line in enumerate(NEWLINE.split(text), start=1):
        if line.strip():
            yield number, line
