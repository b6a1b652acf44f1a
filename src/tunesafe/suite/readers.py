"""Read the rows of a suite file (JSONL, CSV, Parquet) with the position of each row, so that every
later error can name `file:line`. Decoding, JSON syntax and emptiness are checked here."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.json_lines import json_line, numbered_lines

FORMATS = ("jsonl", "csv", "parquet")


@dataclass(frozen=True)
class Row:
    where: str  # "path:line" (JSONL/CSV) or "path:row N" (Parquet)
    values: dict[str, Any]


@dataclass(frozen=True)
class Table:
    path: Path
    columns: tuple[str, ...]  # CSV/Parquet header; for JSONL the keys seen, in first-seen order
    rows: tuple[Row, ...]


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    raise UserError(f"cannot tell the format of '{path.name}'", where=str(path),
                    fix="use a .jsonl, .csv or .parquet file, or pass format=jsonl|csv|parquet")


def read_table(path: Path, fmt: str | None = None) -> Table:
    if not path.is_file():
        raise UserError("no such file", where=str(path), fix="check the path")
    fmt = fmt or format_of(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'", where=str(path), fix=f"use one of {', '.join(FORMATS)}")
    table = _read_parquet(path) if fmt == "parquet" else _read_text(path, fmt)
    if not table.rows:
        raise UserError("the file has no items", where=str(path),
                        fix="add at least one item (one JSON object per line, or CSV rows under a header)")
    return table


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    nul = raw.find(b"\x00")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or nul >= 0:
        # Windows' "Unicode" exports: without a BOM their NUL bytes pass as UTF-8, and the header then
        # read as "t e x t", a missing column
        line = raw[: max(nul, 0)].count(b"\n") + 1
        raise UserError("the file is UTF-16 (or holds NUL bytes), not UTF-8", where=f"{path}:{line}",
                        fix="save the file as UTF-8 (in a spreadsheet: CSV UTF-8; or "
                            "iconv -f utf-16 -t utf-8)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", where=f"{path}:{line}",
                        fix="save the file as UTF-8") from None


def _read_text(path: Path, fmt: str) -> Table:
    text = _decode(path)
    return _read_jsonl(path, text) if fmt == "jsonl" else _read_csv(path, text)


def _read_jsonl(path: Path, text: str) -> Table:
    rows: list[Row] = []
    columns: dict[str, None] = {}
    for number, line in numbered_lines(text):
        where = f"{path}:{number}"
        value = json_line(line, where, fix="write one complete JSON object per line")
        if not isinstance(value, dict):
            raise UserError(f"expected a JSON object, found {type(value).__name__}", where=where,
                            fix='write one object per line, e.g. {"text": "...", "kind": "harmful"}')
        columns.update(dict.fromkeys(value))
        rows.append(Row(where, value))
    return Table(path, tuple(columns), tuple(rows))


def _check_header(where: str, columns: tuple[str, ...]) -> None:
    """A repeated column name would leave only its last column in each row. Unnamed columns (trailing
    commas of spreadsheet exports) carry no field and are not compared."""
    seen: set[str] = set()
    for column in columns:
        if column and column in seen:
            raise UserError(f"column '{column}' appears twice in the header", where=where,
                            fix="rename or remove one of the two columns")
        seen.add(column)


def _check_separator(where: str, columns: tuple[str, ...]) -> None:
    """A header read as one column that holds a ';' or a tab: a spreadsheet's "CSV" in a locale that
    separates with ';', or a TSV. Read on, it only failed later on a missing column, with the advice
    to rename one."""
    if len(columns) == 1 and (sep := next((s for s in (";", "\t") if s in columns[0]), None)):
        shown = "a tab" if sep == "\t" else "';'"
        raise UserError(f"the header is one column separated by {shown}, not by commas", where=where,
                        fix="save the file with comma separators (CSV), or as JSONL")


def _read_csv(path: Path, text: str) -> Table:
    # csv refuses a field over its limit (131,072 characters by default): a many-shot prompt was reported
    # as malformed. No field is longer than the file, which is in memory already; the process-wide limit
    # is only ever raised, so that a concurrent reader never sees it lowered under its feet.
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))
    # strict: lenient parsing took a quote that is never closed as one field running to the end of the
    # file, so every later row became part of one item's text without a word
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1  # a quoted field may span lines: track where each record starts
    try:
        columns = tuple(next(reader, []))
        _check_header(f"{path}:1", columns)
        _check_separator(f"{path}:1", columns)
        rows: list[Row] = []
        start = reader.line_num + 1
        for record in reader:
            if len(record) > len(columns):
                raise UserError(f"{len(record)} fields but the header has {len(columns)}",
                                where=f"{path}:{start}", fix="quote fields that contain commas")
            # a blank line, or a spreadsheet's empty row (","), carries no item; a short row simply lacks
            # its last columns
            if any(field.strip() for field in record):
                rows.append(Row(f"{path}:{start}", dict(zip(columns, record, strict=False))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"malformed CSV in the record that starts on this line: {exc}",
                        where=f"{path}:{start}",
                        fix='close every quote you open, and double a quote inside a quoted field ("")'
                        ) from None
    return Table(path, columns, tuple(rows))


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading Parquet needs pyarrow", where=str(path),
                        fix="pip install 'tunesafe[screen]' (or pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise UserError(f"not a readable Parquet file: {exc}", where=str(path),
                        fix="check that the file is Parquet, or use JSONL/CSV") from None
    _check_header(str(path), tuple(table.column_names))
    rows = tuple(Row(f"{path}:row {i + 1}", values) for i, values in enumerate(table.to_pylist()))
    return Table(path, tuple(table.column_names), rows)

