"""`--fix OUT`: a filtered copy of the dataset and a manifest of what was removed and why.

Removed: every example with a finding of medium or high severity, and the later copies of duplicates
(the first copy stays). Low findings such as a refused harmful request stay: that is safety data.
The output keeps the input's format (a save_to_disk folder becomes Parquet), is written to a temporary
file and renamed, and can never be the input."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from tunesafe.errors import UserError
from tunesafe.screening.readers import Dataset, Record, dataset_sha256, read_bytes_chunked
from tunesafe.screening.records import SEVERITY_RANK, Finding

DROP_TYPES = ("duplicate.exact", "duplicate.near")


def removal_plan(findings: Sequence[Finding]) -> dict[int, list[dict[str, Any]]]:
    plan: dict[int, list[dict[str, Any]]] = {}
    for f in findings:
        if f.index is not None and (
            SEVERITY_RANK[f.severity] >= SEVERITY_RANK["medium"] or f.type in DROP_TYPES
        ):
            plan.setdefault(f.index, []).append({"type": f.type, "severity": f.severity, "reason": f.reason})
    return plan


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


def check_output(dataset: Dataset, out: str | Path) -> Path:
    """Refuse any OUT that is, contains or lies inside the input (resolving links), before scanning."""
    target = Path(out).resolve()
    source = dataset.path.resolve()
    for candidate in (target, manifest_path(target)):
        if (
            candidate == source
            or source in candidate.parents
            or target in source.parents
            or (candidate.exists() and source.exists() and os.path.samefile(candidate, source))
        ):
            raise UserError(
                "--fix would overwrite the input dataset",
                where=str(out),
                fix="write the filtered copy to a new path",
            )
    if target.is_dir():
        raise UserError("--fix needs a file path, not a folder", where=str(out), fix="e.g. --fix clean.jsonl")
    if not target.parent.is_dir():
        raise UserError("the folder for --fix does not exist", where=str(out), fix="create it first")
    return target


def write_fixed(dataset: Dataset, findings: Sequence[Finding], out: str | Path) -> dict[str, Any]:
    target = check_output(dataset, out)
    plan = removal_plan(findings)
    suffix = ".parquet" if dataset.container in ("parquet", "hf-disk") else target.suffix
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        kept = _WRITERS[dataset.container](
            dataset, (r for r in dataset.records() if r.example.index not in plan), tmp
        )
        if target.suffix.lower() == ".gz" and suffix != ".parquet":
            _gzip_in_place(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {
        "input": str(dataset.path),
        "input_sha256": dataset_sha256(dataset.path),
        "output": str(target),
        "output_sha256": dataset_sha256(target),
        "kept": kept,
        "removed_count": len(plan),
        "policy": "removed: findings of medium or high severity, and later copies of duplicates",
        "removed": [
            {"index": i, "line": _line(findings, i), "reasons": reasons}
            for i, reasons in sorted(plan.items())
        ],
    }
    manifest_path(target).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return {**manifest, "manifest": str(manifest_path(target))}


def _line(findings: Sequence[Finding], index: int) -> int | None:
    return next((f.line for f in findings if f.index == index), None)


def _write_jsonl(_dataset: Dataset, records: Iterator[Record], tmp: Path) -> int:
    n = 0
    with tmp.open("wb") as f:
        for r in records:
            f.write(r.raw + b"\n")
            n += 1
    return n


def _write_json_array(_dataset: Dataset, records: Iterator[Record], tmp: Path) -> int:
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        f.write("[")
        for r in records:
            f.write(("," if n else "") + "\n" + json.dumps(r.raw, ensure_ascii=False))
            n += 1
        f.write("\n]\n")
    return n


def _write_csv(dataset: Dataset, records: Iterator[Record], tmp: Path) -> int:
    n = 0
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer: csv.DictWriter[str] | None = None
        for r in records:
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(r.raw), delimiter=dataset.delimiter)
                writer.writeheader()
            writer.writerow(r.raw)
            n += 1
        if writer is None:
            _write_header_only(f, dataset)
    return n


def _write_header_only(f: IO[str], dataset: Dataset) -> None:
    # through the reader's bytes: the input may be gzip-compressed or start with a BOM
    head = b""
    for chunk in read_bytes_chunked(dataset.path):
        head += chunk
        if b"\n" in head:
            break
    line, newline, _ = head.partition(b"\n")
    f.write((line + newline).decode("utf-8"))


def _gzip_in_place(path: Path) -> None:
    """An output named `.gz` is written compressed, as its name promises."""
    packed = path.with_name(path.name + ".gz")
    try:
        with path.open("rb") as src, gzip.open(packed, "wb") as dst:
            shutil.copyfileobj(src, dst)
        packed.replace(path)
    finally:
        packed.unlink(missing_ok=True)


def _write_parquet(dataset: Dataset, records: Iterator[Record], tmp: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(dataset)
    n = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for r in records:
            chunk.append(r.raw)
            n += 1
            if len(chunk) >= 1024:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return n


def _arrow_schema(dataset: Dataset) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tunesafe.screening.readers import arrow_files

    if dataset.container == "parquet":
        return pq.read_schema(dataset.path).remove_metadata()
    with pa.memory_map(str(arrow_files(dataset.path)[0])) as source:
        return pa.ipc.open_stream(source).schema.remove_metadata()


_WRITERS = {
    "jsonl": _write_jsonl,
    "json": _write_json_array,
    "csv": _write_csv,
    "parquet": _write_parquet,
    "hf-disk": _write_parquet,
}
