"""Safety data mixing (Bianchi et al. 2024, "Safety-Tuned LLaMAs"): add a small share of safety examples to
a fine-tuning set. A few percent of safety data keeps much of the base model's refusal behaviour; much
more makes it refuse safe look-alikes, so the default ratio is 3% and a share of the added examples are
helpful answers to borderline requests.

The examples come from training/data/safety_mix.jsonl (see `tunesafe.training.safety_examples`). For a
mix of k examples the kinds get these shares (largest remainder, a kind that runs out passes its excess
on): refusal 35%, recovery 35%, borderline 30%. Harmful requests are thus answered half with a plain
refusal and half with a Qi et al. 2024 safety recovery (refusal after a harmful-compliance prefix), the
proportion that paper uses. Within a kind the picks go round-robin over the chosen categories, so even a
small mix covers many categories. Everything is seeded: the same DATA, ratio, seed and categories give
the same MIXED, byte for byte.

Added rows are written in DATA's own schema, so the trainer reads one consistent file: `{"messages":
[...]}` for chat JSONL; for ShareGPT JSONL, DATA's key, turn keys and speaker names (human/gpt by default).
Other formats are refused (see WRITABLE). Which lines the added rows are (and where the prefix of each
recovery example ends, for trainers that leave it out of the loss) is in the provenance written next to
MIXED and in the `data_mix` evidence record."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from tunesafe.errors import UserError
from tunesafe.training.safety_examples import DATA_FILE, KINDS
from tunesafe.types import Message, Role, sha256_hex

KIND_SHARES = {"refusal": 0.35, "recovery": 0.35, "borderline": 0.30}
DEFAULT_RATIO = 0.03
PROVENANCE_SUFFIX = ".provenance.json"


@dataclass(frozen=True)
class SafetyExample:
    id: str
    kind: str
    category: str
    messages: tuple[dict[str, str], ...]
    prefix_chars: int | None = None  # recovery only: the assistant turn's harmful-compliance prefix

    @property
    def user(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    def chat(self) -> tuple[Message, ...]:
        return tuple(Message(cast(Role, m["role"]), m["content"]) for m in self.messages)

    def row(self) -> str:
        return json.dumps({"messages": list(self.messages)}, ensure_ascii=False)


def load_pool(path: Path = DATA_FILE) -> list[SafetyExample]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [SafetyExample(r["id"], r["kind"], r["category"], tuple(r["messages"]), r.get("prefix_chars"))
            for r in rows]


def mix_size(n: int, ratio: float) -> int:
    """round(ratio * n), halves up (Python's round() would send 0.5 to 0), and at least one example."""
    return max(1, math.floor(ratio * n + 0.5))


def kind_quotas(k: int, available: dict[str, int]) -> dict[str, int]:
    """k split over the kinds by KIND_SHARES (largest remainder; ties in KINDS order); a kind with too
    few examples passes the rest to the others."""
    exact = {kind: k * KIND_SHARES[kind] for kind in KINDS}
    quota = {kind: math.floor(v) for kind, v in exact.items()}
    by_remainder = sorted(KINDS, key=lambda kind: (-(exact[kind] - quota[kind]), KINDS.index(kind)))
    for kind in by_remainder[: k - sum(quota.values())]:
        quota[kind] += 1
    excess = 0
    for kind in KINDS:
        if quota[kind] > available.get(kind, 0):
            excess += quota[kind] - available.get(kind, 0)
            quota[kind] = available.get(kind, 0)
    for kind in KINDS:
        extra = min(excess, available.get(kind, 0) - quota[kind])
        quota[kind] += extra
        excess -= extra
    return quota


def select(pool: Sequence[SafetyExample], k: int, seed: int,
           categories: Sequence[str]) -> list[SafetyExample]:
    """k examples of `categories`, spread over kinds (kind_quotas) and, within a kind, round-robin over the
    categories in a seeded order, each category's examples in a seeded order."""
    categories = list(dict.fromkeys(categories))  # named twice, a category got two queues: duplicates
    chosen = [ex for ex in pool if ex.category in categories]
    if k > len(chosen):
        raise UserError(f"the mix needs {k} safety examples but only {len(chosen)} exist for these "
                        "categories", where="--ratio", fix="lower --ratio or widen --categories")
    quotas = kind_quotas(k, Counter(ex.kind for ex in chosen))
    picked: list[SafetyExample] = []
    for kind in KINDS:
        rng = random.Random(f"{seed}:{kind}")
        order = list(categories)
        rng.shuffle(order)
        queues = []
        for category in order:
            queue = [ex for ex in chosen if ex.kind == kind and ex.category == category]
            rng.shuffle(queue)
            queues.append(queue)
        taken = 0
        while taken < quotas[kind]:
            for queue in queues:
                if queue and taken < quotas[kind]:
                    picked.append(queue.pop(0))
                    taken += 1
    return picked


def _normalise(text: str) -> str:
    from tunesafe.screening.duplicates import words

    return " ".join(words(text))


def suite_collisions(examples: Sequence[SafetyExample], suites: Sequence[str] | None = None) -> list[str]:
    """Added examples that overlap a built-in evaluation suite: a user turn equal to a suite prompt after
    normalisation, or a hit of the contamination screener that scan-data runs (6-gram containment)."""
    from tunesafe.screening import Batch, Example, ScanOptions, screeners
    from tunesafe.suite import builtin_names, load_suite
    names = tuple(suites) if suites is not None else tuple(builtin_names())
    prompts = {_normalise(b.text): f"{name}:{b.id}" for name in names for b in load_suite(name).behaviors}
    found = [f"{ex.id} = {prompts[_normalise(ex.user)]}" for ex in examples if _normalise(ex.user) in prompts]
    screener = screeners.get("contamination")(ScanOptions(suites=names))
    batch = [Example(index=i, line=i + 1, messages=ex.chat()) for i, ex in enumerate(examples)]
    for finding in screener.screen(Batch(batch)):
        assert finding.index is not None
        found.append(f"{examples[finding.index].id}: {finding.reason}")
    return found


def parse_categories(spec: str | None) -> list[str]:
    from tunesafe.suite import load_taxonomy

    known = list(load_taxonomy().harm_categories)
    if not spec:
        return known
    asked = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in asked if c not in known]
    if unknown or not asked:
        raise UserError(f"unknown harm categories: {', '.join(unknown) if unknown else repr(spec)}",
                        where="--categories",
                        fix=f"use a comma-separated list of: {', '.join(known)}")
    return list(dict.fromkeys(asked))


# Formats whose rows mix-safety writes back. The safety examples are one user turn and one assistant turn,
# which chat and ShareGPT JSONL hold turn for turn and which a trainer then reads with the user's own rows.
# Other containers (JSON array, CSV, Parquet, save_to_disk) would have to be re-encoded, so user rows could
# not stay byte for byte; Alpaca and prompt/completion rows are refused too, one rule for every non-chat
# layout rather than a per-format mapping of the added turns.
WRITABLE = ("chat", "sharegpt")
CONVERT_FIX = ('convert it to chat JSONL ({"messages": [{"role": ..., "content": ...}]} per line) or '
               'ShareGPT JSONL, then mix')
SHAREGPT_NAMES: dict[str, str] = {"system": "system", "user": "human", "assistant": "gpt"}
CALL_NAMES = ("function_call", "tool_call")  # ShareGPT tags of a call, not of an answer


@dataclass(frozen=True)
class RowFormat:
    """How DATA spells a conversation, so that the added examples are written the same way: the key of
    the turns, the keys of one turn, and the speaker name DATA uses for each role."""

    schema: str = "chat"
    key: str = "messages"
    role_key: str = "role"
    text_key: str = "content"
    names: tuple[tuple[str, str], ...] = ()  # (tunesafe role, DATA's name), for ShareGPT

    def row(self, example: SafetyExample) -> str:
        if self.schema == "chat":  # the shipped turns unchanged: chat mixes keep their bytes across versions
            return example.row()
        names = dict(self.names)
        turns = [{self.role_key: names.get(m["role"], m["role"]), self.text_key: m["content"]}
                 for m in example.messages]
        return json.dumps({self.key: turns}, ensure_ascii=False)


def _read_data(path: Path) -> tuple[list[str], RowFormat]:
    """DATA's rows as written (blank lines dropped), each read and checked by scan-data's reader, and the
    format to write the added examples in. A format whose rows cannot be written back faithfully is a
    UserError before anything is written."""
    from tunesafe.screening.readers import open_dataset

    dataset = open_dataset(path)
    if dataset.container != "jsonl":
        raise UserError(f"mix-safety writes JSONL and cannot copy {dataset.container} records as they are",
                        where=str(path), fix=CONVERT_FIX)
    rows: list[str] = []
    spoken: dict[str, str] = {}
    fmt = RowFormat()
    for record in dataset.records():
        if not rows:
            fmt = _row_format(record.schema, json.loads(record.raw), f"{path}:{record.example.line}")
        if fmt.schema == "sharegpt":
            _learn_names(json.loads(record.raw).get(fmt.key), spoken)
        rows.append(record.raw.decode("utf-8"))  # the reader dropped a BOM and the line end only
    if fmt.schema == "sharegpt":
        fmt = replace(fmt, names=tuple({**SHAREGPT_NAMES, **spoken}.items()))
    return rows, fmt


def _row_format(schema: str, first: dict[str, Any], where: str) -> RowFormat:
    if schema not in WRITABLE:
        raise UserError(f"mix-safety cannot add its chat examples to {schema} data faithfully", where=where,
                        fix=CONVERT_FIX)
    from tunesafe.screening.readers import SHAREGPT_KEYS

    key = "messages" if schema == "chat" else next(k for k in SHAREGPT_KEYS if k in first)
    if not isinstance(first[key], list):  # turns kept as JSON text: added rows would be lists beside them
        raise UserError(f"'{key}' is stored as text, not a list of turns", where=where, fix=CONVERT_FIX)
    if schema == "chat":
        return RowFormat()
    spelled_from = any(isinstance(t, dict) and "from" in t for t in first[key])
    return RowFormat("sharegpt", key, *(("from", "value") if spelled_from else ("role", "content")))


def _learn_names(turns: Any, spoken: dict[str, str]) -> None:
    """The first name DATA uses for each role (human or user, gpt or assistant, ...): a ShareGPT loader
    configured with DATA's tags then reads the added rows too."""
    from tunesafe.screening.readers import ROLE_ALIASES

    for turn in turns if isinstance(turns, list) else ():
        name = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
        role = ROLE_ALIASES.get(name) if isinstance(name, str) else None
        # a function call is read as an assistant turn but is not the tag of the assistant's answers
        if role is not None and name is not None and role in SHAREGPT_NAMES and name not in CALL_NAMES:
            spoken.setdefault(role, name)


def check_paths(data: Path, out: Path, force: bool) -> Path:
    if not data.exists():
        raise UserError("file not found", where=str(data), fix="give a chat or ShareGPT JSONL file")
    if out.resolve() == data.resolve():
        raise UserError("--out is the input file", where=str(out), fix="write the mix to a new file")
    sidecar = out.with_name(out.name + PROVENANCE_SUFFIX)
    for path in (out, sidecar):
        if path.exists() and not force:
            raise UserError("file exists", where=str(path), fix="choose another --out or pass --force")
        if path.is_dir():
            raise UserError("is a folder", where=str(path), fix="--out takes a file path")
    return sidecar


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, so a failure never leaves a half-written file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:  # a parent that is a file, a read-only folder: bad --out, not a crash
        raise UserError(f"cannot write here ({exc.strerror or exc})", where=str(path),
                        fix="choose an --out in a writable folder") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PlannedMix:
    """A mix checked and built in memory, not yet written: the CLI opens the evidence store between the
    two, so bad input never creates a store and a store that cannot be opened leaves no file behind."""

    out: Path
    sidecar: Path
    text: str
    body: dict[str, Any]


def mix_safety(data: Path, out: Path, ratio: float = DEFAULT_RATIO, seed: int = 0,
               categories: Sequence[str] | None = None, force: bool = False,
               pool_path: Path = DATA_FILE) -> dict[str, Any]:
    """Write DATA plus round(ratio * n) safety examples, shuffled, to OUT and OUT.provenance.json; return
    the provenance body (the `data_mix` evidence record holds the same)."""
    return write_mix(plan_mix(data, out, ratio, seed, categories, force, pool_path))


def write_mix(mix: PlannedMix) -> dict[str, Any]:
    """Write a planned mix and its provenance; return the provenance body."""
    _write_atomic(mix.out, mix.text)
    _write_atomic(mix.sidecar, json.dumps(mix.body, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return mix.body


def plan_mix(data: Path, out: Path, ratio: float = DEFAULT_RATIO, seed: int = 0,
             categories: Sequence[str] | None = None, force: bool = False,
             pool_path: Path = DATA_FILE) -> PlannedMix:
    """Every check of mix_safety and the mixed text, with nothing written."""
    if not 0 < ratio <= 1:
        raise UserError(f"ratio {ratio} is out of range", where="--ratio",
                        fix="use 0 < ratio <= 1, e.g. 0.03")
    sidecar = check_paths(data, out, force)
    cats = list(categories) if categories else parse_categories(None)
    rows, fmt = _read_data(data)
    n = len(rows)
    pool = load_pool(pool_path)
    added = select(pool, mix_size(n, ratio), seed, cats)
    from tunesafe.suite import builtin_names

    suites = builtin_names()
    collisions = suite_collisions(added, suites)
    if collisions:  # the shipped file is tested clean; this guards an edited or newer suite
        raise UserError(f"safety examples overlap the evaluation suites: {'; '.join(collisions[:3])}",
                        where=str(pool_path), fix="remove those examples from the safety mix file")

    lines = [(row, None) for row in rows] + [(fmt.row(ex), ex) for ex in added]
    random.Random(f"{seed}:shuffle").shuffle(lines)
    text = "".join(row + "\n" for row, _ in lines)
    placed = [{"id": ex.id, "kind": ex.kind, "category": ex.category, "line": i + 1,
               **({"prefix_chars": ex.prefix_chars} if ex.prefix_chars is not None else {})}
              for i, (_, ex) in enumerate(lines) if ex is not None]
    body: dict[str, Any] = {
        "data": str(data),
        "data_sha256": sha256_hex(data.read_bytes()),
        "data_format": fmt.schema,
        "mixed": str(out),
        "mixed_sha256": sha256_hex(text.encode("utf-8")),
        "safety_mix": pool_path.name,
        "safety_mix_sha256": sha256_hex(pool_path.read_bytes()),
        "ratio": ratio,
        "seed": seed,
        "categories": cats,
        "kind_shares": KIND_SHARES,
        "n_data": n,
        "n_added": len(added),
        "n_mixed": len(lines),
        "counts_by_kind": dict(sorted(Counter(ex.kind for ex in added).items())),
        "counts_by_category": dict(sorted(Counter(ex.category for ex in added).items())),
        "added": placed,
        "suites_checked": suites,
    }
    return PlannedMix(out=out, sidecar=sidecar, text=text, body=body)
