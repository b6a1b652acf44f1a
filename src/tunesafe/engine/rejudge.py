"""Re-judging a stored run: its attempts and generations judged again by the judges installed now, stored
as a new complete run linked to the old one. No model is called.

    new_run = await rejudge_run(store, "1a2b3c4d5e6f", ["default"])

The new run's config is the one a fresh run with the same options would store today (judge names and
versions, tool version), plus two links the config hash leaves out (engine/config.py): `rejudged_from`,
the run re-judged, and `generated_in`, the run whose model calls produced the answers. So it hashes like
a fresh run and `find_reusable_run` reuses it; its evidence record (type run) carries both links.

What may differ between the answers' run and a re-judge is only what judges: the judges and the tool
version. Everything else the config hash covers (model hash, suite content, attacks and their versions,
plan digest, decoding, attacker) must match for `find_stored_run` to offer a run for re-judging.

Fail closed: an errored generation stays an error (it is not judged, as in a fresh run); a judge that
fails gives error verdicts. Attacks that consult the judge while they search (PAIR) keep the conversation
chosen under the old judge; only its final response is re-judged, and a candidate replays the same
frozen prompts, so the pairs stay identical.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tunesafe import __version__
from tunesafe.engine import results as store_results
from tunesafe.engine.config import EvalConfig, config_hash, hashed_part
from tunesafe.engine.executor import JUDGE_BATCH, judge_answers
from tunesafe.engine.runner import finish_run, fresh_config, make_judges
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.types import AttemptResult, Behavior, canonical_json, sha256_hex

# The config sections a re-judge replaces; the rest must match for stored answers to be reused.
JUDGING_SECTIONS = ("judges", "tool_version")
JUDGING_OPTIONS = ("judges", "judge_model_ref")


@dataclass(frozen=True)
class StoredRun:
    """A complete stored run a gate can use for a model: as it is, or after re-judging its answers."""

    run_id: str
    rejudge: bool
    judges: Sequence[Mapping[str, Any]] = ()  # the stored run's judges (name, version)


def generation_key(config: Mapping[str, Any]) -> str:
    """Identifies what produced a run's answers: its hashed config without the judging sections."""
    hashed = {k: v for k, v in hashed_part(config).items() if k not in JUDGING_SECTIONS}
    hashed["eval"] = {k: v for k, v in hashed["eval"].items() if k not in JUDGING_OPTIONS}
    return sha256_hex(canonical_json(hashed))


def answers_source(info: store_results.RunInfo) -> str:
    """The run whose model calls produced this run's answers (itself unless it was re-judged)."""
    source: str = info.config.get("generated_in") or info.id
    return source


def find_stored_run(store: Store, model_ref: str, config: EvalConfig) -> StoredRun | None:
    """The newest complete run of this model with exactly this config; else the newest whose answers
    were produced with this config but judged by other judge versions (to re-judge); else None."""
    model, fresh = fresh_config(store, model_ref, config)
    wanted, key = config_hash(fresh), generation_key(fresh)
    runs = [r for r in reversed(store_results.list_runs(store))
            if r.status == "complete" and model.evaluated(r)]
    for run in runs:
        if run.config_hash == wanted:
            return StoredRun(run.id, rejudge=False)
    for run in runs:
        if "eval" in run.config and generation_key(run.config) == key:
            return StoredRun(run.id, rejudge=True, judges=run.config.get("judges", []))
    return None


def find_rejudged(store: Store, run_id: str, judges: Sequence[Mapping[str, Any]]) -> str | None:
    """The newest complete run holding `run_id`'s answers judged by exactly `judges` (name, version)."""
    source = answers_source(store_results.load_run(store, run_id))
    wanted = canonical_json(_descriptors(judges))
    for run in reversed(store_results.list_runs(store)):
        if run.status == "complete" and answers_source(run) == source and \
                canonical_json(_descriptors(run.config.get("judges", []))) == wanted:
            return run.id
    return None


async def rejudge_run(store: Store, run_id: str, judges: Sequence[str], *,
                      judge_model_ref: str | None = None) -> str:
    """Judge a complete run's stored generations again with `judges`; returns the new run's id."""
    info = store_results.load_run(store, run_id)
    if info.status != "complete":
        raise UserError(f"run {run_id} is {info.status}, not complete", where=run_id,
                        fix=f"finish it with `tunesafe eval --resume {run_id}`, then re-judge it")
    results = store_results.load_results(store, run_id)
    behaviors = run_behaviors(info, results)  # a suite that moved on fails here, before anything is stored
    names = tuple(dict.fromkeys(judges))
    instances = make_judges(EvalConfig(judges=names, judge_model_ref=judge_model_ref))
    config = _rejudged_config(info, names, judge_model_ref, instances)
    new_id = uuid.uuid4().hex[:12]
    store_results.create_run(store, new_id, info.model_ref, info.model_hash, config, config_hash(config),
                             info.n_planned)
    started = time.perf_counter()
    writer = store_results.ResultWriter(store)
    errors = 0
    status = "failed"
    try:
        for start in range(0, len(results), JUDGE_BATCH):
            for result in await _judge_batch(instances, results[start:start + JUDGE_BATCH], behaviors):
                writer.add(replace(result, run_id=new_id))
                errors += result.generation.error is not None or any(v.error for v in result.verdicts)
        status = "complete"
    finally:
        writer.flush()
        if status != "complete":
            store_results.set_status(store, new_id, status)
        await _close(instances)
    stats = {"wall_s": round(time.perf_counter() - started, 3), "attempts": len(results), "errors": errors,
             "rejudged": sum(r.generation.ok for r in results), "model_calls": 0, "rejudged_from": run_id}
    finish_run(store, new_id, (r.attempt.id for r in results), config, info.model_hash, stats)
    return new_id


async def installed_judges(names: Sequence[str], judge_model_ref: str | None = None) -> list[dict[str, str]]:
    """Name and version of each judge as installed now (an LLM judge's version covers its model)."""
    judges = make_judges(EvalConfig(judges=tuple(dict.fromkeys(names)), judge_model_ref=judge_model_ref))
    await _close(judges)
    return [{"name": j.name, "version": j.version} for j in judges]


def judges_label(judges: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{j['name']}@{j.get('version')}" for j in judges) or "none"


async def _close(judges: Sequence[Any]) -> None:
    for judge in judges:
        close = getattr(judge, "aclose", None)
        if close is not None:
            await close()


def _descriptors(judges: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"name": str(j["name"]), "version": str(j.get("version"))} for j in judges]


def run_behaviors(info: store_results.RunInfo, results: Sequence[AttemptResult]) -> dict[str, Behavior]:
    """The run's behaviours, whose text the judges read as the request: reloaded from its suite, which
    must still have the content it had when the answers were generated."""
    from tunesafe.suite import load_suite

    spec = info.config.get("eval", {}).get("suite")
    recorded = (info.config.get("suite") or {}).get("content_hash")
    fix = "re-judge where the suite file the run used is available, or evaluate the model again"
    try:
        suite = load_suite(spec)
    except UserError as exc:
        raise UserError(f"run {info.id} cannot be re-judged: its suite {spec!r} does not load "
                        f"({exc.message})", where=info.id, fix=fix) from None
    if suite.content_hash != recorded:
        raise UserError(f"run {info.id} cannot be re-judged: suite {spec!r} changed since the run "
                        f"(content {str(recorded)[:12]} -> {suite.content_hash[:12]})", where=info.id,
                        fix=fix)
    behaviors = {b.id: b for b in suite.behaviors}
    missing = sorted({r.attempt.behavior_id for r in results} - behaviors.keys())
    if missing:
        raise UserError(f"run {info.id} cannot be re-judged: its suite lacks behaviours "
                        f"{', '.join(missing[:5])}", where=info.id, fix=fix)
    return behaviors


def _rejudged_config(info: store_results.RunInfo, names: Sequence[str], judge_model_ref: str | None,
                     judges: Sequence[Any]) -> dict[str, Any]:
    config = {k: v for k, v in info.config.items() if k not in ("rejudged_from", "generated_in")}
    config["eval"] = {**config["eval"], "judges": list(names), "judge_model_ref": judge_model_ref}
    config["judges"] = [{"name": j.name, "version": j.version} for j in judges]
    config["tool_version"] = __version__
    config["rejudged_from"] = info.id
    config["generated_in"] = answers_source(info)
    return config


async def _judge_batch(judges: Sequence[Any], batch: Sequence[AttemptResult],
                       behaviors: Mapping[str, Behavior]) -> list[AttemptResult]:
    verdicts = await judge_answers(judges, [(r.attempt, r.generation, r.response) for r in batch], behaviors,
                                   decided={r.attempt.id: r.frozen for r in batch})
    return [replace(r, verdicts=verdicts[r.attempt.id]) for r in batch]
