"""Incident conversations as regression behaviours that every later gate of the model runs.

`to_suite` turns an incident's attached conversations into rows of the generic suite JSONL layout (the
request's last user turn is the behaviour text, kind "harmful", ids `inc<ID>-<n>`), and records them as a
RecordType.REGRESSION_SUITE evidence record with subject = the model's name. The rows live in the record
itself, so a gate never depends on the exported file still being there.

`with_regressions` is what the gate calls for `--candidate-name MODEL`: when MODEL has regression records,
the gate's suite becomes the chosen suite plus every regression row (written as one JSONL file in the
report folder), so base and candidate are both asked them and they pair up like any other item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.incidents import Incident
from tunesafe.types import Behavior, EvidenceRecord, RecordType, canonical_json, sha256_hex

if TYPE_CHECKING:
    from tunesafe.engine.config import EvalConfig

DEFAULT_CATEGORY = "uncategorized"
SUITE_FIELDS = ("id", "text", "kind", "category", "language", "context")


def suite_rows(incident: Incident) -> list[dict[str, Any]]:
    """One harmful behaviour per attached conversation. Earlier turns are not replayed (the suite format
    holds one request); their count is kept as `prior_turns` so a reader sees what was cut."""
    if not incident.conversations:
        raise UserError(f"{incident.label} has no conversations attached", where="ID",
                        fix="attach them first: tunesafe incidents update ID --conversation FILE.jsonl")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for conversation in incident.conversations:
        messages = conversation["messages"]
        text = str(messages[-1]["content"]).strip()
        if text in seen:  # the same request twice would be two ids for one item
            continue
        seen.add(text)
        rows.append({
            "id": f"inc{incident.id}-{len(rows) + 1:02d}", "text": text, "kind": "harmful",
            "category": conversation.get("category") or incident.details.get("category") or DEFAULT_CATEGORY,
            "language": "en", "incident": incident.id, "model": incident.model,
            "prior_turns": len(messages) - 1, "request_sha256": sha256_hex(canonical_json(messages)),
        })
    return rows


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # before anything is recorded: nothing is registered for a file not written
        raise UserError(f"cannot write the suite: {exc.strerror}", where=str(path),
                        fix="pass a writable path with --out") from None
    return path


def to_suite(store: Store, incident: Incident, out: Path, *, actor: str | None = None) -> EvidenceRecord:
    """Write the incident's regression suite to `out` and register it for the model's later gates."""
    rows = suite_rows(incident)
    write_rows(rows, out)
    body = {"model": incident.model, "incident": incident.id, "rows": rows, "path": str(out),
            "sha256": sha256_hex(out.read_bytes())}
    return store.append(RecordType.REGRESSION_SUITE, body, actor=actor, subject=incident.model)


def regression_rows(store: Store, model: str) -> list[dict[str, Any]]:
    """Every regression row registered for `model`, in chain order; a re-export of the same incident
    replaces its earlier rows instead of doubling them."""
    by_incident: dict[int, list[dict[str, Any]]] = {}
    for rec in store.records(type=RecordType.REGRESSION_SUITE, subject=model):
        by_incident.pop(int(rec.body["incident"]), None)
        by_incident[int(rec.body["incident"])] = [dict(r) for r in rec.body["rows"]]
    return [row for rows in by_incident.values() for row in rows]


def _behavior_row(behavior: Behavior) -> dict[str, Any]:
    fields = asdict(behavior)
    return {k: fields[k] for k in SUITE_FIELDS if fields[k] is not None}


def combined_suite(suite_spec: str, rows: Sequence[Mapping[str, Any]], out_dir: Path) -> Path:
    """The suite `suite_spec` plus `rows`, as one generic JSONL file in `out_dir`."""
    from tunesafe.suite import load_suite  # lazy: the suite package loads pyarrow for parquet

    suite = load_suite(suite_spec)
    taken = {b.id for b in suite.behaviors}
    clash = sorted(taken & {str(r["id"]) for r in rows})
    if clash:
        raise UserError(f"suite {suite.name} already has item id(s) {', '.join(clash)}", where="--suite",
                        fix="rename those items: ids inc<N>-<n> belong to incident regression suites")
    base = [_behavior_row(b) for b in suite.behaviors]
    return write_rows([*base, *rows], out_dir / f"{suite.name}+regressions.jsonl")


def with_regressions(store: Store, model: str | None, config: EvalConfig, out_dir: Path,
                     notify: Callable[[str], None] | None = None) -> EvalConfig:
    """The gate's config with the model's incident regression rows added to its suite (unchanged when
    there is no model name or nothing is registered)."""
    if not model:
        return config
    rows = regression_rows(store, model)
    if not rows:
        return config
    path = combined_suite(config.suite, rows, out_dir)
    if notify is not None:
        incidents = sorted({int(r["incident"]) for r in rows})
        notify(f"suite {config.suite} + {len(rows)} regression item(s) from incident(s) "
               f"{', '.join(f'INC-{i}' for i in incidents)} ({path})")
    return replace(config, suite=str(path))
