"""Import an existing model inventory from CSV or YAML into the evidence store.

CSV: a header row with `name,ref` and optionally `base,stage,owner,datasets,training_config,vendor_eval`;
several datasets are separated by `;`. YAML: a list of mappings with the same keys (or `models: [...]`);
`datasets` may be a list. Relative paths are relative to the file's folder. Rows may name a base defined
further down the file. Every row is validated and hashed first, then all are appended in one transaction:
a bad row names file:line and nothing is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, bases, check_against, inventory, version_body
from tunesafe.types import RecordType
from tunesafe.yaml_input import UniqueKeyLoader, yaml_user_error

REQUIRED = ("name", "ref")
OPTIONAL = ("base", "stage", "owner", "datasets", "training_config", "vendor_eval")
FORMAT_FIX = f"columns/keys: {', '.join(REQUIRED)} (required), {', '.join(OPTIONAL)}"


@dataclass(frozen=True)
class Row:
    """One model of the file, with the line it starts on (for error messages)."""

    line: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class ImportResult:
    added: list[str]
    skipped: list[str]  # already in the inventory (with skip_existing)


def read_rows(path: Path) -> list[Row]:
    if not path.is_file():
        raise UserError("inventory file not found", where=str(path), fix="check the path")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix in (".yaml", ".yml"):
        return _yaml_rows(path)
    raise UserError(f"unsupported inventory format {suffix or '(none)'!r}", where=str(path),
                    fix="use a .csv, .yaml or .yml file")


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the inventory file: {exc.strerror}", where=str(path),
                        fix="check the path and its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # spreadsheet exports are often Windows-1252
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"not UTF-8 text (byte {data[exc.start]:#04x})", where=f"{path}:{line}",
                        fix="save the file as UTF-8 (CSV UTF-8 in a spreadsheet)") from None


def _csv_rows(path: Path) -> list[Row]:
    with io.StringIO(_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        # DictReader keeps the last of two same-named columns
        if twice := sorted({c for c in columns if c and columns.count(c) > 1}):
            raise UserError(f"column {', '.join(twice)} appears twice in the header", where=f"{path}:1",
                            fix="keep one column of each name")
        _check_keys(columns, f"{path}:1")
        rows = []
        for record in reader:
            if record.get(None):  # DictReader puts the fields past the header there
                raise UserError(f"row has more fields than the header's {len(columns)}",
                                where=f"{path}:{reader.line_num}",
                                fix='quote a value that holds a comma ("Smith, Jo")')
            fields = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
            fields["datasets"] = [d.strip() for d in fields.get("datasets", "").split(";") if d.strip()]
            rows.append(Row(reader.line_num, {k: v for k, v in fields.items() if v not in ("", [])}))
    return rows


def _yaml_rows(path: Path) -> list[Row]:
    text = _text(path)
    loader: UniqueKeyLoader | None = None
    try:
        loader = UniqueKeyLoader(text)  # its reader refuses a control character (NUL) right here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise yaml_user_error(exc, str(path), text) from None
    finally:
        if loader is not None:
            loader.dispose()
    if isinstance(data, dict) and "models" in data:
        data = data["models"]
        node = next(v for k, v in node.value if k.value == "models")  # type: ignore[union-attr]
    if not isinstance(data, list):
        raise UserError("expected a list of models (or `models:` with a list)", where=str(path),
                        fix=FORMAT_FIX)
    rows = []
    for item, item_node in zip(data, node.value, strict=True):  # type: ignore[union-attr]
        where = f"{path}:{item_node.start_mark.line + 1}"
        if not isinstance(item, dict):
            raise UserError("each model must be a mapping of keys to values", where=where, fix=FORMAT_FIX)
        _check_keys(list(item), where)
        fields = {k: v for k, v in item.items() if v is not None}
        if isinstance(fields.get("datasets"), str):
            fields["datasets"] = [fields["datasets"]]
        rows.append(Row(item_node.start_mark.line + 1, fields))
    return rows


def _check_keys(keys: list[str], where: str) -> None:
    unknown = sorted(set(map(str, keys)) - set(REQUIRED) - set(OPTIONAL))
    missing = [k for k in REQUIRED if k not in keys]
    problems = ([f"unknown {', '.join(unknown)}"] if unknown else []) + (
        [f"missing {', '.join(missing)}"] if missing else [])
    if problems:
        raise UserError(f"bad columns/keys ({'; '.join(problems)})", where=where, fix=FORMAT_FIX)


def _spec(row: Row, where: str) -> ModelSpec:
    fields = row.fields
    for key in REQUIRED:
        if not str(fields.get(key, "")).strip():
            raise UserError(f"empty {key}", where=where, fix=f"give every model a {key}")
    datasets = fields.get("datasets", [])
    if not isinstance(datasets, list):
        raise UserError("datasets must be a list of paths", where=where, fix="e.g. datasets: [train.jsonl]")

    def text(key: str) -> str | None:
        value = fields.get(key)
        return None if value is None else str(value)

    return ModelSpec(name=str(fields["name"]), ref=str(fields["ref"]), base=text("base"),
                     datasets=tuple(str(d) for d in datasets), training_config=text("training_config"),
                     stage=text("stage") or "dev", owner=text("owner"), vendor_eval=text("vendor_eval"))


def read_inventory(path: Path) -> list[tuple[str, ModelSpec]]:
    """The file's models, each with the file:line it starts on: the checks that need no store, so that a
    command refuses a bad file before it opens the store (and creates one at a new --db path)."""
    return [(f"{path}:{row.line}", _spec(row, f"{path}:{row.line}")) for row in read_rows(path)]


def import_inventory(store: Store, path: Path, *, skip_existing: bool = False, actor: str | None = None,
                     models: Sequence[tuple[str, ModelSpec]] | None = None) -> ImportResult:
    """`models`: read_inventory(path), when the caller has read the file already."""
    known = bases(inventory(store))
    pending = list(read_inventory(path) if models is None else models)
    skipped = [spec.name for _, spec in pending if skip_existing and spec.name in known]
    pending = [p for p in pending if p[1].name not in skipped]
    seen: set[str] = set()
    for where, spec in pending:
        if spec.name in seen:
            raise UserError(f"model {spec.name!r} appears twice in the file", where=where,
                            fix="keep one row per model")
        seen.add(spec.name)
    _check_new(pending, known)
    new = list(pending)
    bodies: list[dict[str, Any]] = []
    # Bases may be defined further down: take rows in dependency order, a model after its base.
    while pending:
        ready = [p for p in pending if p[1].base is None or p[1].base in known]
        if not ready:
            where, spec = pending[0]
            raise UserError(f"base model {spec.base!r} is neither in the inventory nor in the file",
                            where=where, fix="add the base model first (as a row or with `models add`)")
        for item in ready:
            where, spec = item
            try:
                check_against(spec, known)
                bodies.append(version_body(spec, path.parent))
            except UserError as exc:
                raise UserError(f"{exc.message} ({exc.where})" if exc.where else exc.message,
                                where=where, fix=exc.fix) from exc
            known[spec.name] = spec.base
            pending.remove(item)
    # checked again under the chain lock: another process may have added a name since the inventory was read
    store.append_many([(RecordType.MODEL_VERSION, body, body["name"]) for body in bodies], actor=actor,
                      check=lambda: _check_new(new, bases(inventory(store))))
    return ImportResult(added=[b["name"] for b in bodies], skipped=skipped)


def _check_new(pending: Iterable[tuple[str, ModelSpec]], known: Container[str]) -> None:
    for where, spec in pending:
        if spec.name in known:
            raise UserError(f"model {spec.name!r} is already in the inventory", where=where,
                            fix="pass --skip-existing to import only the new names (a new version of a "
                                "model: `tunesafe models add NAME --new-version`)")
