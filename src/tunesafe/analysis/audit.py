"""Auditing the judge on a run (`tunesafe judge audit`): a stratified sample for a person to label, and
the judge's agreement with those labels, recorded as evidence that the next gate report on the run shows.

    rows = audit_sample(store, run_id, size=60)          # write_sheet(rows, path) -> CSV to label
    audit = score_sheet(store, run_id, path)             # a judge_audit evidence record

The sample covers both sides when the run is a gate's candidate (or a base run is given): discordant
pairs first (refused or an attack success on one side only: the pairs that move the gate, see
escalate.discordant), both of their rows, up to half the sample; then the other decided items spread
evenly over (side, outcome, attack family) strata. Errored items are left out: the judge gave no verdict
to check.

Labels are a person's reading of each response: `refused` or `complied` (left empty: not labelled).
Agreement is on refused-or-not, with a 95% Wilson interval.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesafe.analysis.escalate import discordant
from tunesafe.analysis.metrics import wilson
from tunesafe.analysis.outcome import is_refusal, outcome
from tunesafe.engine import results as run_store
from tunesafe.errors import UserError, read_user_text
from tunesafe.evidence.store import Store
from tunesafe.types import AttemptResult, EvidenceRecord, RecordType

COLUMNS = ("row", "side", "run_id", "attempt_id", "family", "category", "kind", "stratum", "request",
           "response", "judge", "judge_version", "judge_outcome", "label")
NEEDED = ("run_id", "attempt_id", "label")
LABELS = {"refused": True, "complied": False}
# Discordant pairs come first but fill at most this share of the sample: the agreement must also cover
# the verdicts that do not move the gate, or it would describe the hardest items only.
DISCORDANT_SHARE = 0.5
LABEL_FIX = "write refused or complied in the label column (leave it empty to skip the row)"


@dataclass(frozen=True)
class AuditRuns:
    run_id: str
    base_run: str | None  # the other side, when the audit covers a pair of runs
    judge: str

    def sides(self) -> dict[str, str]:
        return {"base": self.base_run, "candidate": self.run_id} if self.base_run else {"run": self.run_id}


def audit_runs(store: Store, run_id: str, *, base_run: str | None = None,
               judge: str | None = None) -> AuditRuns:
    """What an audit of `run_id` covers: with `base_run`, or when the run is the candidate of a recorded
    gate decision, both sides; the judge is `judge` or the run's first (primary) judge."""
    info = run_store.load_run(store, run_id)
    given = base_run is not None
    if base_run is None:
        base_run = _gate_base(store, run_id)
    if base_run == run_id:
        raise UserError(f"--base is {run_id} itself", where="--base", fix="pass the base model's run")
    base_info = run_store.load_run(store, base_run) if base_run is not None else None  # UserError if none
    judges = _judge_names(info)
    if judge is None:
        if not judges:
            raise UserError(f"run {run_id} records no judge", where=run_id, fix="pass --judge NAME")
        judge = judges[0]
    elif judge not in judges:
        raise UserError(f"run {run_id} was not judged by '{judge}'", where="--judge",
                        fix=f"use one of: {', '.join(judges) or 'none'}")
    if base_info is not None and judge not in _judge_names(base_info):
        # its items would have no verdict to check: all left out as errors, the sheet one-sided
        raise UserError(f"base run {base_run} was not judged by '{judge}'",
                        where="--base" if given else f"the gate decision on {run_id}",
                        fix=f"re-judge it (`tunesafe runs rejudge {base_run} --judge {judge}`) and pass that "
                            "run as --base, or audit a judge both runs have with --judge")
    return AuditRuns(run_id, base_run, judge)


def _judge_names(info: run_store.RunInfo) -> list[str]:
    return [str(j["name"]) for j in info.config.get("judges", [])]


def audit_sample(store: Store, runs: AuditRuns, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """The rows of a sheet to label: discordant pairs first, then the other strata in turn."""
    if size < 1:
        raise UserError(f"sample size must be at least 1, got {size}", where="--sample",
                        fix="pass --sample 60")
    results = {side: run_store.load_results(store, run_id) for side, run_id in runs.sides().items()}
    rng = random.Random(seed)
    chosen: list[tuple[str, AttemptResult, str]] = []
    if runs.base_run:
        candidate = {r.attempt.id: r for r in results["candidate"]}
        pairs = [(b, candidate[b.attempt.id]) for b in results["base"] if b.attempt.id in candidate and
                 discordant(outcome(b, runs.judge), outcome(candidate[b.attempt.id], runs.judge))]
        rng.shuffle(pairs)
        for before, after in pairs[: int(size * DISCORDANT_SHARE) // 2]:
            chosen += [("base", before, "discordant"), ("candidate", after, "discordant")]
    taken = {(side, r.attempt.id) for side, r, _ in chosen}
    strata: dict[str, list[tuple[str, AttemptResult]]] = defaultdict(list)
    for side, side_results in results.items():
        for r in side_results:
            label = outcome(r, runs.judge)
            if label != "error" and (side, r.attempt.id) not in taken:
                strata[f"{side}/{label}/{r.attempt.family}"].append((side, r))
    for members in strata.values():
        rng.shuffle(members)
    for key, side, result in _round_robin(strata):
        if len(chosen) >= size:
            break
        chosen.append((side, result, key))
    requests = _requests(store, runs)
    return [_row(i, side, r, stratum, runs.judge, requests) for i, (side, r, stratum) in enumerate(chosen, 1)]


def write_sheet(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise UserError(f"cannot write the sheet: {exc.strerror or exc}", where=str(path),
                        fix="pass a writable path") from None


def score_sheet(store: Store, runs: AuditRuns, path: Path) -> EvidenceRecord:
    """Agreement of the judge's stored verdicts with a person's labels; appended as a judge_audit."""
    sides = {run_id: side for side, run_id in runs.sides().items()}
    stored = {(run_id, r.attempt.id): r for run_id in sides for r in run_store.load_results(store, run_id)}
    pairs: list[tuple[str, bool, bool]] = []  # (side, person says refused, judge says refused)
    n_rows = 0
    seen: dict[tuple[str, str], int] = {}  # key -> its first line: a copied row would count twice
    for line, row in _read_sheet(path):
        n_rows += 1
        key = (row["run_id"].strip(), row["attempt_id"].strip())
        if key in seen:
            raise UserError(f"attempt {key[1]} of run {key[0]} is already on line {seen[key]}",
                            where=f"{path}:{line}", fix="keep one row per attempt: delete the copy")
        seen[key] = line
        if key[0] not in sides:
            raise UserError(f"row is for run {key[0]}, not for {' or '.join(sides)}", where=f"{path}:{line}",
                            fix="label the sheet written for this run")
        if key not in stored:
            raise UserError(f"run {key[0]} has no attempt {key[1]}", where=f"{path}:{line}",
                            fix="keep the run_id and attempt_id columns as written")
        label = row["label"].strip().lower()
        if not label:
            continue
        if label not in LABELS:
            raise UserError(f"bad label {row['label']!r}", where=f"{path}:{line}", fix=LABEL_FIX)
        refused = is_refusal(stored[key], runs.judge)  # a deployment's block is a refusal, as in every rate
        if refused is not None:
            pairs.append((sides[key[0]], LABELS[label], refused))
    if not pairs:
        raise UserError("no labelled row", where=str(path), fix=LABEL_FIX)
    body = {
        "run_id": runs.run_id, "base_run": runs.base_run, "judge": runs.judge,
        "judge_version": _judge_version(store, runs), "sheet_sha256": _sha256(path), "n_rows": n_rows,
        "n_labelled": len(pairs), "agreement": _agreement(pairs),
        "by_side": {side: _agreement([p for p in pairs if p[0] == side]) for side in runs.sides()},
        "confusion": {f"person {_word(person)}, judge {_word(judge)}":
                      sum(1 for p in pairs if p[1:] == (person, judge))
                      for person in (True, False) for judge in (True, False)},
    }
    return store.append(RecordType.JUDGE_AUDIT, body,
                        subject=run_store.load_run(store, runs.run_id).model_name)


def audits_of(store: Store, runs: Mapping[str, str]) -> list[dict[str, Any]]:
    """The newest judge audit of each of `runs` (side -> run id), for a gate's decision body."""
    newest: dict[str, EvidenceRecord] = {}
    wanted = set(runs.values())
    for record in store.records(type=RecordType.JUDGE_AUDIT):
        if record.body.get("run_id") in wanted:
            newest[record.body["run_id"]] = record
    by_run = {run_id: side for side, run_id in runs.items()}
    return [{"record_id": r.id, "run_id": run_id, "side": by_run[run_id], "judge": r.body["judge"],
             "judge_version": r.body.get("judge_version"), "n_labelled": r.body["n_labelled"],
             "agreement": r.body["agreement"]} for run_id, r in newest.items()]


def _gate_base(store: Store, run_id: str) -> str | None:
    base = None
    for record in store.records(type=RecordType.GATE_DECISION):
        if (record.body.get("candidate") or {}).get("run_id") == run_id:
            base = record.body["base"]["run_id"]
    return base


def _round_robin(strata: Mapping[str, list[tuple[str, AttemptResult]]]) -> Iterator[tuple[str, str,
                                                                                             AttemptResult]]:
    queues = {key: list(members) for key, members in sorted(strata.items())}
    while queues:
        for key in list(queues):
            side, result = queues[key].pop(0)
            yield key, side, result
            if not queues[key]:
                del queues[key]


def _requests(store: Store, runs: AuditRuns) -> dict[str, str]:
    """behaviour id -> the request text the judge read; the attack prompt where the suite is gone."""
    from tunesafe.attacks.base import request_text
    from tunesafe.engine.rejudge import run_behaviors

    info = run_store.load_run(store, runs.run_id)
    try:
        return {b: request_text(behavior) for b, behavior in run_behaviors(info, []).items()}
    except UserError:
        return {}


def _row(number: int, side: str, result: AttemptResult, stratum: str, judge: str,
         requests: Mapping[str, str]) -> dict[str, Any]:
    attempt = result.attempt
    verdict = next(v for v in result.verdicts if v.judge == judge)
    users = [m.content for m in attempt.messages if m.role == "user"]
    request = requests.get(attempt.behavior_id) or (users[-1] if users else "")
    return {"row": number, "side": side, "run_id": result.run_id, "attempt_id": attempt.id,
            "family": attempt.family, "category": attempt.category, "kind": attempt.kind, "stratum": stratum,
            "request": request, "response": result.response, "judge": judge,
            "judge_version": verdict.judge_version, "judge_outcome": outcome(result, judge), "label": ""}


def _read_sheet(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, row) for each data row; UserError for a missing file or column."""
    if not path.is_file():
        raise UserError("sheet not found", where=str(path), fix="pass the CSV written by --out")
    text = read_user_text(path, "sheet", fix="keep the sheet UTF-8 (in a spreadsheet: save as CSV UTF-8)")
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        # DictReader keeps the last of two same-named columns; unnamed ones (a spreadsheet's trailing
        # commas) hold no field
        named = [c for c in reader.fieldnames or [] if c.strip()]
        if twice := sorted({c for c in named if named.count(c) > 1}):
            raise UserError(f"column {', '.join(twice)} appears twice in the header", where=f"{path}:1",
                            fix="keep one column of each name (delete or rename the copy)")
        missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"column {', '.join(missing)} missing", where=f"{path}:1",
                            fix=f"keep the header tunesafe wrote ({', '.join(COLUMNS)})")
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if None in row or any(row.get(c) is None for c in NEEDED):
                raise UserError("row has a different number of fields than the header",
                                where=f"{path}:{start}", fix="keep the sheet's columns as written")
            yield start, row


def _agreement(pairs: Sequence[tuple[str, bool, bool]]) -> dict[str, Any]:
    rate = wilson(sum(a == b for _, a, b in pairs), len(pairs))
    return {"k": rate.k, "n": rate.n, "rate": rate.rate, "low": rate.low, "high": rate.high,
            "method": rate.method}


def _judge_version(store: Store, runs: AuditRuns) -> str | None:
    info = run_store.load_run(store, runs.run_id)
    versions = {j["name"]: str(j.get("version")) for j in info.config.get("judges", [])}
    return versions.get(runs.judge)


def _word(refused: bool) -> str:
    return "refused" if refused else "complied"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
