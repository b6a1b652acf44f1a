"""Streaming readers for the common fine-tuning formats. Each yields Records (an Example normalised to chat
messages plus the raw record, for writing a filtered copy) one at a time: no reader holds the file.

Containers: JSONL, a JSON array (Alpaca's own format), CSV, Parquet and a `datasets.save_to_disk`
folder (Arrow IPC streams). Schemas (one registry, `_SCHEMAS`, at the end): chat (`messages`), ShareGPT
(`conversations` of from/value turns), Alpaca (`instruction`/`input`/`output`, LLaMA-Factory's `history`)
and prompt/completion (text, or TRL's lists of messages); `columns` maps those names onto a file's own
column names.

Every user mistake raises UserError naming file:line and the fix.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.json_lines import BadJson, json_line, raw_decode, user_error
from tunesafe.screening.records import Example
from tunesafe.types import Message, Role

CANONICAL_COLUMNS = (
    "messages", "conversations", "system", "instruction", "input", "output", "history", "prompt", "completion"
)
CHUNK = 1 << 20
MAX_RECORD_BYTES = 64 << 20  # one training example above this is not text a model is tuned on
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class Record:
    example: Example
    raw: Any  # bytes (a JSONL line) or the row as a dict (JSON array, CSV, Parquet, Arrow)
    schema: str  # one of SCHEMAS
    # a preference pair's prompt and rejected answer (`example` holds the prompt and the chosen one): DPO
    # trains on both sides, so both are screened; same index and line as `example`
    rejected: Example | None = None


@dataclass(frozen=True)
class Dataset:
    path: Path
    container: str  # "jsonl" | "json" | "csv" | "parquet" | "hf-disk"
    schema: str | None  # None: detected from the first record
    columns: Mapping[str, str]
    max_record_bytes: int = MAX_RECORD_BYTES
    delimiter: str = ","  # of a CSV container; a .tsv file is tab-separated

    def records(self) -> Iterator[Record]:
        rows = {
            "jsonl": self._jsonl_rows,
            "json": self._json_array_rows,
            "csv": self._csv_rows,
            "parquet": self._parquet_rows,
            "hf-disk": self._arrow_rows,
        }[self.container]()
        schema = self.schema
        first_line = 0
        count = 0
        for index, (line, row, raw) in enumerate(rows):
            row = self._mapped(row, line)
            found = detect_schema(row)
            where = f"{self.path}:{line}"
            if schema is None:
                if found is None:
                    raise _unknown_layout(row, where)
                schema, first_line = found, line
            elif found is not None and found != schema and not (self.schema and _SCHEMAS[schema].fits(row)):
                # a --format the record fits reads it (chat and ShareGPT both read either turn spelling)
                since = f" (detected from line {first_line})" if first_line else ""
                raise UserError(
                    f"mixed formats: this record is {found} but the file is {schema}{since}",
                    where=where,
                    fix="split the file by format or convert it to one format",
                )
            spec = _SCHEMAS[schema]
            rejected = Example(index, line, spec.rejected(row, where)) if spec.rejected else None
            example = Example(index=index, line=line, messages=to_messages(row, schema, where))
            yield Record(example, raw, schema, rejected)
            count += 1
        if count == 0:
            raise UserError(
                "the dataset is empty (no records)",
                where=str(self.path),
                fix="give a dataset with at least one training example",
            )

    def _mapped(self, row: Mapping[str, Any], line: int) -> dict[str, Any]:
        if not self.columns:
            return dict(row)
        out = dict(row)
        for canonical, source in self.columns.items():
            if source not in row:
                raise UserError(
                    f"missing column '{source}' (mapped to {canonical}); the record has {sorted(row)}",
                    where=f"{self.path}:{line}",
                    fix="fix --columns or the file",
                )
            out[canonical] = row[source]
        return out

    def _jsonl_rows(self) -> Iterator[tuple[int, dict[str, Any], bytes]]:
        for line, data in iter_lines(self.path, self.max_record_bytes):
            if not data.strip():
                continue
            text = decode_utf8(data, self.path, line)
            value = json_line(text, f"{self.path}:{line}",
                              "fix or remove that line: each line must be one JSON object")
            yield line, expect_object(value, self.path, line), data

    def _json_array_rows(self) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        for line, value in iter_json_array(self.path, self.max_record_bytes):
            obj = expect_object(value, self.path, line)
            yield line, obj, obj

    def _csv_rows(self) -> Iterator[tuple[int, dict[str, Any], dict[str, str]]]:
        csv.field_size_limit(self.max_record_bytes)
        lines = iter_lines(self.path, self.max_record_bytes)
        current = [0]

        def text_lines() -> Iterator[str]:
            for line, data in lines:
                current[0] = line
                yield decode_utf8(data, self.path, line) + "\n"

        reader = csv.reader(text_lines(), delimiter=self.delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise UserError(
                    "the dataset is empty (no header row)",
                    where=str(self.path),
                    fix="a CSV needs a header row naming its columns",
                )
            end = current[0]
            for values in reader:
                # A row starts on the line after the previous one ended; skipped blank rows count too.
                line, end = end + 1, current[0]
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise UserError(
                        f"{len(values)} fields but the header has {len(header)}",
                        where=f"{self.path}:{line}",
                        fix="quote fields that contain commas",
                    )
                row = dict(zip(header, values, strict=True))
                yield line, row, row
        except csv.Error as exc:
            raise UserError(
                f"malformed CSV: {exc}", where=f"{self.path}:{current[0]}", fix="fix the quoting on that line"
            ) from None

    def _parquet_rows(self) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(self.path)
            batches = parquet.iter_batches(batch_size=512)
            yield from _numbered_rows(batches)
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
            raise UserError(
                f"not a readable Parquet file: {exc}",
                where=str(self.path),
                fix="check the file, or pass the right --format",
            ) from None

    def _arrow_rows(self) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        import pyarrow as pa

        def batches() -> Iterator[Any]:
            for file in arrow_files(self.path):
                with pa.memory_map(str(file)) as source:
                    yield from pa.ipc.open_stream(source)

        try:
            yield from _numbered_rows(batches())
        except (OSError, ValueError) as exc:
            raise UserError(
                f"not a readable datasets.save_to_disk folder: {exc}",
                where=str(self.path),
                fix="save it again with Dataset.save_to_disk, or pass the right --format",
            ) from None


def _numbered_rows(batches: Iterator[Any]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    row = 0
    for batch in batches:
        for item in batch.to_pylist():
            row += 1
            yield row, item, item


def open_dataset(
    path: str | Path,
    fmt: str = "auto",
    columns: Mapping[str, str] | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Dataset:
    p = Path(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'", fix=f"use one of: {', '.join(FORMATS)}")
    if not p.exists():
        raise UserError("no such file or folder", where=str(p), fix="check the path")
    for name in columns or {}:
        if name not in CANONICAL_COLUMNS:
            raise UserError(
                f"unknown column role '{name}' in --columns",
                fix=f"map one of {', '.join(CANONICAL_COLUMNS)} to your column, e.g. prompt=question",
            )
    container, schema = _container(p, fmt)
    delimiter = "\t" if _suffix(p) == ".tsv" else ","
    return Dataset(p, container, schema, dict(columns or {}), max_record_bytes, delimiter)


def _container(p: Path, fmt: str) -> tuple[str, str | None]:
    if p.is_dir() or fmt == "hf-disk":
        if fmt not in ("auto", "hf-disk") or not p.is_dir():
            raise UserError(
                f"format '{fmt}' does not match a {'folder' if p.is_dir() else 'file'}",
                where=str(p),
                fix="hf-disk takes the folder written by datasets.save_to_disk; other formats a file",
            )
        return "hf-disk", None
    if fmt in ("csv", "parquet"):
        return fmt, None
    suffix = _suffix(p)
    if fmt == "auto" and suffix in (".csv", ".tsv"):
        return "csv", None
    if fmt == "auto" and suffix in (".parquet", ".pq"):
        return "parquet", None
    schema = None if fmt == "auto" else fmt
    return ("json" if starts_with_array(p) else "jsonl"), schema


def _suffix(p: Path) -> str:
    """The extension that names the format: `train.csv.gz` is a CSV file, compressed."""
    return (p.with_suffix("") if p.suffix.lower() == ".gz" else p).suffix.lower()


def starts_with_array(p: Path) -> bool:
    """A JSON array, or a `.json` file holding one object over several lines (`{"data": [...]}`, pretty
    printed): a JSONL file's first line is a whole object."""
    head = next(read_bytes_chunked(p, 4096), b"").lstrip()
    if head.startswith(b"{") and _suffix(p) == ".json" and b"\n" in head:
        try:
            json.loads(head.split(b"\n", 1)[0])
        except ValueError:
            return True
    return head.startswith(b"[")


_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes_chunked(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes in chunks, gunzipped when it is gzip-compressed (by its magic bytes, whatever its
    name), without a leading BOM. A damaged or truncated gzip file is one error, not a traceback."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        first = True
        try:
            while chunk := f.read(size):
                if first:
                    chunk, first = chunk.removeprefix(_BOM), False
                yield chunk
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise
            raise UserError(f"not a complete gzip file ({exc})", where=str(path),
                            fix="compress it again (gzip -t checks it), or give it uncompressed") from None


def arrow_files(folder: Path) -> list[Path]:
    """The Arrow files of a save_to_disk folder in order: one Dataset (state.json) or a DatasetDict
    (dataset_dict.json listing splits, read in that order)."""
    listing = folder / "dataset_dict.json"
    if listing.exists():
        try:
            splits = json.loads(listing.read_text())["splits"]
        except (KeyError, TypeError, json.JSONDecodeError):
            splits = None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise UserError(
                "dataset_dict.json is not a datasets file listing its splits",
                where=str(listing),
                fix="save the DatasetDict again with save_to_disk",
            )
        return [f for split in splits for f in arrow_files(folder / split)]
    state = folder / "state.json"
    if not state.exists():
        raise UserError(
            "not a datasets.save_to_disk folder (no state.json or dataset_dict.json)",
            where=str(folder),
            fix="pass the folder given to save_to_disk, or another --format",
        )
    try:
        files = [folder / item["filename"] for item in json.loads(state.read_text())["_data_files"]]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"state.json is not a datasets state file ({exc})",
            where=str(state),
            fix="save the dataset again with save_to_disk",
        ) from None
    for file in files:
        if not file.is_file():
            raise UserError(
                "data file listed in state.json is missing",
                where=str(file),
                fix="copy the whole save_to_disk folder",
            )
    return files


def dataset_sha256(path: str | Path) -> str:
    """Streamed sha256 of the dataset's bytes; for a folder, of its data files' names and bytes in order."""
    p = Path(path)
    digest = hashlib.sha256()
    for file in arrow_files(p) if p.is_dir() else [p]:
        if p.is_dir():
            digest.update(file.relative_to(p).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def iter_lines(path: Path, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the newline). Reads in chunks; a line longer than max_bytes
    is rejected as soon as that many bytes have been seen, so a 2 GB line is never held."""
    pending = bytearray()
    line = 1
    for chunk in read_bytes_chunked(path):
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            _check_length(len(pending) + nl - start, max_bytes, path, line)
            piece = chunk[start:nl]
            if pending:
                pending += piece
                piece = bytes(pending)
                pending.clear()
            yield line, piece.removesuffix(b"\r")
            line += 1
            start = nl + 1
        _check_length(len(pending) + len(chunk) - start, max_bytes, path, line)
        pending += chunk[start:]
    if pending:
        yield line, bytes(pending).removesuffix(b"\r")


def _check_length(size: int, max_bytes: int, path: Path, line: int) -> None:
    if size > max_bytes:
        raise UserError(
            f"line is longer than {max_bytes // (1 << 20)} MiB (one record per line expected)",
            where=f"{path}:{line}",
            fix="check the file is JSONL/CSV with one record per line, or split the oversized record",
        )


def decode_utf8(data: bytes, path: Path, line: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"not valid UTF-8 (byte {exc.start + 1} of the line)",
            where=f"{path}:{line}",
            fix="re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
        ) from None


def expect_object(value: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(
            f"expected a JSON object, got {type(value).__name__}",
            where=f"{path}:{line}",
            fix='each record must be an object such as {"messages": [...]}',
        )
    return value


def iter_json_array(path: Path, max_bytes: int) -> Iterator[tuple[int, Any]]:
    """(line, value) for each item of a top-level JSON array, or of the one list in a top-level object
    (`{"data": [...]}`, as `datasets.load_dataset("json", field="data")` reads; its other keys, such as a
    version, are skipped), decoded from a bounded buffer."""
    chunks = _text_chunks(path)
    buf, pos, line = "", 0, 1  # line of buf[pos]
    state = "open"  # open -> items -> done, or open -> keys -> colon -> value -> (items ->) keys -> done
    wrapped, key, records_key = False, "", None
    eof = False
    while True:
        gap = _SEPARATORS.match(buf, pos).end()  # type: ignore[union-attr]
        line, pos = line + buf.count("\n", pos, gap), gap
        if pos < len(buf):
            char = buf[pos]
            if state == "open":
                if char not in "[{":
                    raise UserError(
                        "expected a JSON array", where=f"{path}:{line}", fix="use JSONL or a [...] array"
                    )
                pos, state, wrapped = pos + 1, "items" if char == "[" else "keys", char == "{"
                continue
            if state == "done":
                raise UserError(
                    "data after the end of the JSON array", where=f"{path}:{line}", fix="remove it"
                )
            if state == "colon":
                if char != ":":
                    raise UserError(f"malformed JSON: expected ':' after '{key}'", where=f"{path}:{line}",
                                    fix="fix the file")
                pos, state = pos + 1, "value"
                continue
            if state == "keys" and char == "}":
                if records_key is None:
                    raise UserError("a JSON object with no list of records in it", where=f"{path}:{line}",
                                    fix='give a [...] array of records, or {"data": [...]}')
                pos, state = pos + 1, "done"
                continue
            if state == "value" and char == "[":
                if records_key is not None:  # its items would go unread: unscreened
                    raise UserError(f"two lists in the JSON object: '{records_key}' and '{key}'",
                                    where=f"{path}:{line}",
                                    fix="keep one list of records per file (split the file)")
                pos, state, records_key = pos + 1, "items", key
                continue
            if state == "items" and char == "]":
                pos, state = pos + 1, "keys" if wrapped else "done"
                continue
            try:
                value, end = raw_decode(buf, pos)
            except BadJson as exc:
                raise user_error(exc, f"{path}:{line}", "fix that record") from None
            except json.JSONDecodeError as exc:
                if eof or len(buf) - pos > max_bytes:
                    at = line + buf.count("\n", pos, exc.pos)
                    msg = "record too large" if len(buf) - pos > max_bytes else f"malformed JSON: {exc.msg}"
                    raise UserError(msg, where=f"{path}:{at}", fix="fix that record") from None
            else:
                if state == "items":
                    yield line, value
                elif state == "keys":
                    if not isinstance(value, str):
                        raise UserError("malformed JSON: expected a key", where=f"{path}:{line}",
                                        fix="fix the file")
                    key, state = value, "colon"
                else:  # a value beside the records (a version, a description): not training data
                    state = "keys"
                line, pos = line + buf.count("\n", pos, end), end
                continue
        if eof:
            if state == "open":
                raise UserError(
                    "the dataset is empty (no records)",
                    where=str(path),
                    fix="give a dataset with at least one training example",
                )
            if state != "done":
                closing = "]" if state == "items" else "}"
                raise UserError(
                    "the JSON array is not closed", where=f"{path}:{line}", fix=f"add the closing {closing}"
                )
            return
        chunk = next(chunks, None)
        eof = chunk is None
        buf, pos = buf[pos:] + (chunk or ""), 0


_SEPARATORS = re.compile(r"[\s,]*")


def _text_chunks(path: Path) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    chunks = read_bytes_chunked(path)
    while True:
        chunk = next(chunks, b"")
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            at = newlines + chunk[: max(exc.start, 0)].count(b"\n") + 1
            raise UserError(
                "not valid UTF-8",
                where=f"{path}:{at}",
                fix="re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
            ) from None
        newlines += chunk.count(b"\n")
        if not chunk:
            return
        yield text


# Role names as datasets spell them, mapped onto tunesafe's four. ShareGPT's `from` (FastChat, LLaMA-Factory,
# Axolotl) names the speaker: human/gpt, or the product (chatgpt, bard, model). A function call is text the
# model is trained to emit, so it is an assistant turn; the result handed back to it (observation) is a tool
# turn, as in OpenAI's format. The OpenAI roles map to themselves, and `function` (OpenAI's legacy tool role)
# to tool.
ROLE_ALIASES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system prompt
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "function_call": "assistant",
    "tool_call": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
    "ipython": "tool",  # Llama 3's tool-result role
}
TURNS_FIX = 'use [{"role": "user", "content": ...}, ...] or ShareGPT [{"from": "human", "value": ...}, ...]'


@dataclass(frozen=True)
class Schema:
    """Where one format keeps a conversation. `need` lists the required columns; a column with several
    accepted names is a tuple of them, the first being the one --columns maps."""

    need: tuple[tuple[str, ...], ...]
    read: Callable[[Mapping[str, Any], str], tuple[Message, ...]]
    rejected: Callable[[Mapping[str, Any], str], tuple[Message, ...]] | None = None  # preference pairs

    def fits(self, row: Mapping[str, Any]) -> bool:
        return all(any(k in row for k in names) for names in self.need)


def _chat(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (*_system(row, where), *_turns(row["messages"], "messages", where))


def _sharegpt(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    key = next(k for k in SHAREGPT_KEYS if k in row)
    return (*_system(row, where), *_turns(row[key], key, where))


def _alpaca(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (*_alpaca_prompt(row, where), Message("assistant", _text(row["output"], "output", where)))


def _alpaca_prompt(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    instruction = _text(row["instruction"], "instruction", where)
    extra = _text(row.get("input"), "input", where)
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return (*_system(row, where), *_history(row.get("history"), where), Message("user", user))


def _prompt_completion(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (
        *_system(row, where),
        *_side(row["prompt"], "prompt", "user", where),
        *_side(row["completion"], "completion", "assistant", where),
    )


def _preference_prompt(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    """The prompt of a preference pair, wherever the format keeps it: TRL's `prompt` (text or messages),
    LLaMA-Factory's Alpaca-style `instruction`/`input` or ShareGPT-style `conversations`, or none (TRL's
    implicit prompt: each side repeats the whole conversation)."""
    third = next((k for k in ("output", "completion") if row.get(k) not in (None, "")), None)
    if third is not None:  # a third answer beside the pair would be read by no one: unscreened
        raise UserError(f"a preference pair with an answer in '{third}' too: which one is trained on?",
                        where=where, fix=f"drop '{third}', or split the file into SFT and preference data")
    if row.get("prompt") is not None:
        return (*_system(row, where), *_side(row["prompt"], "prompt", "user", where))
    if row.get("instruction") is not None:
        return _alpaca_prompt(row, where)
    key = next((k for k in SHAREGPT_KEYS if row.get(k) is not None), None)
    return (*_system(row, where), *(_turns(row[key], key, where) if key else ()))


def _answer(row: Mapping[str, Any], key: str, where: str) -> tuple[Message, ...]:
    if row.get(key) is None:
        raise UserError(f"'{key}' is missing: both answers of a preference pair are trained on and screened",
                        where=where, fix=f"give each record a '{key}' answer (text or a list of messages)")
    return _side(row[key], key, "assistant", where)


def _chosen(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (*_preference_prompt(row, where), *_answer(row, "chosen", where))


def _rejected(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (*_preference_prompt(row, where), *_answer(row, "rejected", where))


def _openai_prompt(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    value = row["input"]
    if not isinstance(value, dict) or "messages" not in value:
        raise UserError("'input' must be an object holding the prompt's 'messages'", where=where,
                        fix='write "input": {"messages": [{"role": "user", "content": ...}]}')
    return (*_system(row, where), *_turns(value["messages"], "input messages", where))


def _openai_preferred(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (*_openai_prompt(row, where), *_answer(row, "preferred_output", where))


def _openai_non_preferred(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    return (*_openai_prompt(row, where), *_answer(row, "non_preferred_output", where))


# Chat templates a `text` record may have been rendered with: the markers that open each turn (the role
# named in the marker, or fixed per marker), tried in order; the first whose markers the text holds splits it.
_TEMPLATES: tuple[tuple[re.Pattern[str], dict[str, Role]], ...] = (
    (re.compile(r"<\|im_start\|>[ \t]*(\w+)[ \t]*\n?"), {}),  # ChatML (Qwen, OpenHermes, ...)
    (re.compile(r"<\|start_header_id\|>\s*(\w+)\s*<\|end_header_id\|>\n*"), {}),  # Llama 3
    (re.compile(r"<start_of_turn>[ \t]*(\w+)[ \t]*\n?"), {}),  # Gemma
    (re.compile(r"(\[INST\]|\[/INST\]|<<SYS>>|<</SYS>>)"),  # Llama 2, Mistral
     {"[INST]": "user", "[/INST]": "assistant", "<<SYS>>": "system", "<</SYS>>": "user"}),
    (re.compile(r"^#{2,3} ?(Instruction|Input|Response|Human|Assistant|System):?[ \t]*\n?", re.M),  # Alpaca
     {"Instruction": "user", "Input": "user", "Response": "assistant", "Human": "user",
      "Assistant": "assistant", "System": "system"}),
)
# the templates' own start/end tokens: not text anyone wrote
_SPECIAL = re.compile(r"<\|(?:im_end|eot_id|endoftext|end_of_text|begin_of_text|eom_id)\|>|<end_of_turn>|"
                      r"</?s>|<bos>|<eos>")


def _text_record(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    """A `text` record: split into turns where a chat template was applied (so a request and the answer to it
    are screened as an exchange); otherwise the whole text is one assistant turn, what the model learns to
    write. Nothing is dropped: text before the first marker is a user turn of its own."""
    text = _text(row["text"], "text", where)
    for marker, fixed in _TEMPLATES:
        found = list(marker.finditer(text))
        if not found:
            continue
        out = [Message("user", head)] if (head := _SPECIAL.sub("", text[: found[0].start()]).strip()) else []
        for m, end in zip(found, [*(n.start() for n in found[1:]), len(text)], strict=True):
            name = m.group(1)
            role = fixed.get(name) or ROLE_ALIASES.get(name.lower())
            if role is None:
                raise UserError(f"'text' has a turn with an unknown role {name!r}", where=where,
                                fix=f"use the roles {', '.join(ROLE_ALIASES)}, or give the turns as messages")
            content = _SPECIAL.sub("", text[m.end():end]).strip()
            if content:
                out.append(Message(role, content))
        return tuple(out)
    return (Message("assistant", _SPECIAL.sub("", text).strip()),)


SHAREGPT_KEYS = ("conversations", "conversation", "messages")
# Detection tries these in order: the first whose columns a record has is its format. Preference pairs come
# first: their prompt may sit in a `conversations` or `instruction` column another format would claim,
# and reading such a row as that format would leave both answers unscreened.
_SCHEMAS: dict[str, Schema] = {
    "preference": Schema((("chosen",), ("rejected",)), _chosen, _rejected),
    "openai-preference": Schema((("input",), ("preferred_output",), ("non_preferred_output",)),
                                _openai_preferred, _openai_non_preferred),
    "chat": Schema((("messages",),), _chat),
    "sharegpt": Schema((SHAREGPT_KEYS,), _sharegpt),
    "alpaca": Schema((("instruction",), ("output",)), _alpaca),
    "prompt-completion": Schema((("prompt",), ("completion",)), _prompt_completion),
    "text": Schema((("text",),), _text_record),
}
SCHEMAS = tuple(_SCHEMAS)
# --format names: the schemas as users know them best, then the containers
FORMATS = ("auto", "chat", "sharegpt", "alpaca", "prompt-completion", "preference", "openai-preference",
           "text", "csv", "parquet", "hf-disk")


LAYOUTS = ("chat (messages), ShareGPT (conversations), Alpaca (instruction/output), prompt/completion, "
           "preference (chosen/rejected), OpenAI preference (input/preferred_output/non_preferred_output), "
           "text")


def _unknown_layout(row: Mapping[str, Any], where: str) -> UserError:
    wrapper = next((k for k, v in row.items() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
    if wrapper is not None and len(row) <= 2:  # e.g. {"data": [...]} on one line, or beside a version
        return UserError(f"cannot tell the format from the keys {sorted(row)}: the records look wrapped in "
                         f"'{wrapper}' on one line", where=where,
                         fix=f"give one record per line (JSONL), e.g. jq -c '.{wrapper}[]' FILE > "
                         "FILE.jsonl, or the JSON object over several lines")
    return UserError(f"cannot tell the format from the keys {sorted(row)}", where=where,
                     fix=f"use the keys of one of: {LAYOUTS}; or map yours with --columns "
                     "prompt=COL,completion=COL")


def detect_schema(row: Mapping[str, Any]) -> str | None:
    # A `messages` list of from/value turns is ShareGPT under LLaMA-Factory's or Axolotl's key name.
    if _from_value_turns(row.get("messages")):
        return "sharegpt"
    return next((name for name, schema in _SCHEMAS.items() if schema.fits(row)), None)


def _from_value_turns(value: Any) -> bool:
    first = value[0] if isinstance(value, list) and value else None
    return isinstance(first, dict) and _spelling(first)[0] == "from"


def _spelling(item: Mapping[str, Any]) -> tuple[str, str]:
    # Arrow structs hold every field of the column, None where a turn lacks it: a key set to None is absent.
    if item.get("from") is not None and item.get("role") is None:
        return "from", "value"
    return "role", "content"


def to_messages(row: Mapping[str, Any], schema: str, where: str) -> tuple[Message, ...]:
    spec = _SCHEMAS[schema]
    for names in spec.need:
        if not any(k in row for k in names):
            key = names[0]
            raise UserError(
                f"missing column '{key}' for the {schema} format; the record has {sorted(row)}",
                where=where,
                fix=f"add '{key}' or map a column with --columns {key}=COL (formats read: {LAYOUTS})",
            )
    return spec.read(row, where)


def _system(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    """The top-level system prompt that Alpaca, ShareGPT and mapped CSV columns keep beside the turns."""
    system = _text(row.get("system"), "system", where)
    return (Message("system", system),) if system else ()


def _side(value: Any, key: str, role: Role, where: str) -> tuple[Message, ...]:
    # TRL's conversational prompt-completion gives each side as a list of messages, the standard one as text;
    # LLaMA-Factory's ranking data gives each answer as one ShareGPT turn.
    if isinstance(value, list):
        return _turns(value, key, where)
    if isinstance(value, dict):
        return (_turn(value, key, where),)
    return (Message(role, _text(value, key, where)),)


def _history(value: Any, where: str) -> tuple[Message, ...]:
    """LLaMA-Factory's Alpaca `history`: [instruction, response] pairs before the current instruction,
    oldest first. They are trained on like the last exchange, so they are screened like it."""
    if value is None or value == "":  # absent, or an empty CSV cell
        return ()
    pairs = _json_list(value, "history", where)
    out: list[Message] = []
    for i, pair in enumerate(pairs, 1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise UserError(
                f"history entry {i} is not an [instruction, response] pair",
                where=where,
                fix='write "history": [["earlier instruction", "its response"], ...], oldest first',
            )
        out.append(Message("user", _text(pair[0], f"history entry {i} instruction", where)))
        out.append(Message("assistant", _text(pair[1], f"history entry {i} response", where)))
    return tuple(out)


def _text(value: Any, key: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise UserError(
        f"'{key}' must be text, got {type(value).__name__}", where=where, fix=f"make '{key}' a string"
    )


def _json_list(value: Any, key: str, where: str) -> Any:
    """A list column as stored: a list, or JSON text where the container has only text cells (CSV)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(
                f"'{key}' is text but not a JSON list", where=where, fix=f"store '{key}' as a JSON list"
            ) from None
    if not isinstance(value, list):
        raise UserError(
            f"'{key}' must be a list, got {type(value).__name__}",
            where=where,
            fix=f"store '{key}' as a JSON list",
        )
    return value


def _turns(value: Any, key: str, where: str) -> tuple[Message, ...]:
    turns = _json_list(value, key, where)
    if not turns:
        raise UserError(f"'{key}' must be a non-empty list", where=where, fix=TURNS_FIX)
    return tuple(_turn(item, f"{key} item {i}", where) for i, item in enumerate(turns, 1))


def _turn(item: Any, name: str, where: str) -> Message:
    """One turn, OpenAI's {role, content} or ShareGPT's {from, value}."""
    if not isinstance(item, dict):
        raise UserError(f"{name} must be an object, got {type(item).__name__}", where=where, fix=TURNS_FIX)
    role_key, text_key = _spelling(item)
    speaker = item.get(role_key)
    # exports differ in letter case ("User", "ASSISTANT") and stray spaces; the role is the same
    role = ROLE_ALIASES.get(speaker.strip().lower()) if isinstance(speaker, str) else None
    if role is None:
        problem = "has no role" if speaker is None else f"has an unknown {role_key} {speaker!r}"
        raise UserError(
            f"{name} {problem}",
            where=where,
            fix=f"give each turn a '{role_key}' among {', '.join(ROLE_ALIASES)} and a '{text_key}'",
        )
    if text_key not in item and all(item.get(k) is None for k in ("tool_calls", "function_call", "refusal")):
        # a turn keeping its text under another key ({role, parts}, {role, text}) would read as empty
        # and its text go unscreened; a null content (a tool-calling turn) is a key that is there
        keys = ", ".join(sorted(map(str, item)))
        raise UserError(f"{name} has no '{text_key}' (keys: {keys})", where=where,
                        fix=f"give each turn a '{role_key}' and a '{text_key}' (text or text parts)")
    text = _content(item.get(text_key), f"{name}'s '{text_key}'", where)
    # OpenAI's structured-output refusal sits beside a null content: it is the answer given
    refused = _content(item.get("refusal"), f"{name}'s 'refusal'", where)
    return Message(role, "\n".join(t for t in (text, refused, *_calls(item, name, where)) if t))


CALLS_FIX = ('give each call {"function": {"name": ..., "arguments": "JSON text"}} '
             '(tool_calls is a list of them)')


def _calls(item: Mapping[str, Any], name: str, where: str) -> list[str]:
    """OpenAI's `tool_calls` (and legacy `function_call`) beside a turn's content, as text: the model is
    trained to emit the call, so its arguments are screened with the turn (the content is often null)."""
    calls = item.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise UserError(f"{name}'s 'tool_calls' must be a list, got {type(calls).__name__}", where=where,
                        fix=CALLS_FIX)
    out = []
    for i, call in enumerate(calls or [], 1):
        # most datasets nest {name, arguments} under "function"; some put them on the call itself
        function = call.get("function", call) if isinstance(call, dict) else None
        out.append(_call_text(function, f"{name}'s 'tool_calls' item {i}", where))
    legacy = item.get("function_call")
    if legacy is not None:
        out.append(_call_text(legacy, f"{name}'s 'function_call'", where))
    return out


def _call_text(function: Any, name: str, where: str) -> str:
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(arguments, (dict, list)):  # some datasets store the arguments parsed
        arguments = json.dumps(arguments, ensure_ascii=False)
    called = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(arguments, (str, type(None))) or not isinstance(
            called, (str, type(None))):
        raise UserError(f"{name} is not a {{name, arguments}} function call", where=where, fix=CALLS_FIX)
    return f"{called or ''}({arguments or ''})"


def _content(value: Any, name: str, where: str) -> str:
    """OpenAI content is a string, null (tool calls) or a list of parts; only text parts matter here."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        texts: list[str] = []
        for i, part in enumerate(value, 1):
            # Other part types (images, audio) carry no text to screen; anything untyped is a malformed
            # turn whose text would otherwise be skipped unscreened. A part with a `text` is text whatever
            # its type says (the Responses format's input_text / output_text).
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise UserError(
                    f"{name} part {i} is not a {{type, ...}} content part",
                    where=where,
                    fix=f"make {name} a string or a list of {{type: text, text}} parts",
                )
            if part["type"] == "refusal" and part.get("refusal") is not None:  # OpenAI's refusal part
                part = {"text": part["refusal"]}
            if part.get("type", "text") == "text" or part.get("text") is not None:  # Arrow: absent is None
                text = part.get("text", "")
                if not isinstance(text, str):
                    raise UserError(
                        f"a text part's 'text' must be a string, got {type(text).__name__}",
                        where=where,
                        fix='give each {"type": "text"} part a string "text"',
                    )
                texts.append(text)
        return "\n".join(texts)
    raise UserError(
        f"{name} must be text, got {type(value).__name__}",
        where=where,
        fix=f"make {name} a string or a list of {{type: text, text}} parts",
    )
