"""(request, response) pairs from a JSONL file, for re-judging logged conversations without re-running
a model: one object per line with `request`, `response`, optional `id` and `kind`. A bad line is a
UserError naming the file and line, before anything is judged.

A pair without `kind` must have it decided before judging (tunesafe.screening.request_kind, joined
in by the CLI: judges do not import screening); `judge_pairs` adds the columns saying how to each row."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError, read_user_text
from tunesafe.json_lines import json_line, numbered_lines
from tunesafe.judges.base import Judge, JudgeInput, judge_answers
from tunesafe.types import Verdict

KINDS = ("harmful", "benign", "borderline")
BATCH = 256
_SURROGATE = re.compile("[\ud800-\udfff]")
_FIX = 'each line must be a JSON object like {"request": "...", "response": "...", "id": "optional"}'


def read_pairs(path: Path) -> list[JudgeInput]:
    if not path.is_file():
        raise UserError(f"file not found: {path}", fix="pass a JSONL file of request/response pairs")
    text = read_user_text(path, "pairs file", fix=_FIX)
    items = [_parse_line(path, number, line) for number, line in numbered_lines(text)]
    return require_pairs(items, str(path))


def require_pairs(items: list[JudgeInput], where: str) -> list[JudgeInput]:
    if not items:
        raise UserError("no pairs given", where=where, fix=_FIX)
    return items


def _parse_line(path: Path, number: int, line: str) -> JudgeInput:
    where = f"{path}:{number}"
    return pair_from_row(json_line(line, where, fix=_FIX), where, str(number))


def pair_from_row(row: Any, where: str, default_id: str) -> JudgeInput:
    """One pair from a decoded object (a JSONL line, or a mapping given to tunesafe.judge)."""
    if not isinstance(row, Mapping):
        raise UserError(f"expected a JSON object, got {type(row).__name__}", where=where, fix=_FIX)
    for key in ("request", "response"):
        if not isinstance(row.get(key), str):
            problem = "missing" if key not in row else f"not a string ({type(row[key]).__name__})"
            raise UserError(f"field '{key}' is {problem}", where=where, fix=_FIX)
        if _SURROGATE.search(row[key]):
            raise UserError(f"field '{key}' holds an unpaired surrogate (a \\ud800-\\udfff escape), which is "
                            "no text", where=where, fix="write the text as UTF-8, or escape whole pairs")
    kind = row.get("kind")
    if kind is not None and kind not in KINDS:
        raise UserError(f"unknown kind {kind!r}", where=where,
                        fix=f"use one of {', '.join(KINDS)} or omit it")
    item_id = row.get("id")
    return JudgeInput(request=row["request"], response=row["response"], kind=kind,
                      id=str(item_id) if item_id is not None else default_id)


def verdict_row(item: JudgeInput, verdict: Verdict,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"id": item.id, **(extra or {}), "judge": verdict.judge, "judge_version": verdict.judge_version,
            "refused": verdict.refused, "harmful": verdict.harmful, "degenerate": verdict.degenerate,
            "score": verdict.score, "error": verdict.error, "evidence": dict(verdict.evidence)}


async def _judge_all(judges: Sequence[Judge], items: Sequence[JudgeInput],
                     extra: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            per_judge = [await judge_answers(judge, chunk) for judge in judges]
            for i, item in enumerate(chunk):
                columns = extra[start + i] if extra is not None else None
                rows.extend(verdict_row(item, verdicts[i], columns) for verdicts in per_judge)
    finally:
        for judge in judges:  # LLM judges that loaded their own model close it (HTTP clients, weights)
            close = getattr(judge, "aclose", None)
            if close is not None:
                await close()
    return rows


def judge_pairs(judges: Sequence[Judge], items: Sequence[JudgeInput],
                extra: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per (pair, judge), in file order; `extra[i]` adds columns to the rows of pair i."""
    if extra is not None and len(extra) != len(items):
        raise ValueError(f"{len(extra)} column sets for {len(items)} pairs")
    return asyncio.run(_judge_all(judges, items, extra))


def iter_jsonl(rows: Sequence[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
