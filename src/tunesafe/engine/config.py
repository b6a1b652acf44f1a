"""What a run measures: the evaluation options (EvalConfig), the full config stored with a run, and its
hash (what `find_reusable_run` matches and a resume checks)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from tunesafe import __version__
from tunesafe.engine.plan import attack_descriptor
from tunesafe.errors import UserError
from tunesafe.models.refs import redact_ref
from tunesafe.types import canonical_json, sha256_hex

if TYPE_CHECKING:
    from tunesafe.engine.targets import Planned
    from tunesafe.judges.base import Judge
    from tunesafe.models.base import ChatModel

# Knobs that change how fast a run goes, not what it measures: left out of the config hash, and a
# resumed run takes them from the resuming command.
RUNTIME_FIELDS = ("concurrency", "use_cache", "max_pause", "executor", "ray_address", "workers", "threads")
EXECUTORS = ("local", "ray")
# Provenance, not measurement: the model's inventory name, for a re-judged run (engine/rejudge.py)
# the run it re-judged and the run whose model calls produced its answers, and for a replica run resumed
# on other replicas the refs and hashes it ran under before (`moved_from`), and the inventory version
# `eval --name` checked it against (`model_version`). Left out of the hash, so a re-judged run hashes
# like a fresh run with the same options and judges.
UNHASHED_SECTIONS = ("model_name", "rejudged_from", "generated_in", "moved_from", "model_version")


@dataclass(frozen=True)
class EvalConfig:
    suite: str = "default"
    attacks: str = "all"
    judges: tuple[str, ...] = ("default",)
    limit: int | None = None
    seed: int = 0
    concurrency: int = 8
    max_new_tokens: int = 256
    temperature: float = 0.0
    use_cache: bool = True
    attacker_ref: str | None = None
    replay_from: str | None = None
    judge_model_ref: str | None = None  # the model behind LLM judges (strongreject, llama-guard)
    max_pause: float = 600.0  # seconds an HTTP endpoint may fail every request before the run stops
    executor: str = "local"  # or "ray": attempts split over Ray actors (engine/distributed.py)
    ray_address: str | None = None  # a running cluster ("auto", "ray://HOST:10001"); None: start one here
    workers: int = 2  # Ray actors, each with its own model (a replica per GPU) or endpoint client
    threads: int | None = None  # CPU threads of a local llama.cpp server the ref does not set; None: all

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UserError(f"concurrency must be at least 1, got {self.concurrency}", where="--concurrency",
                            fix="pass --concurrency 1 or more")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}",
                            where="--max-new-tokens", fix="pass a positive number")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UserError(f"temperature must be a number 0 or more, got {self.temperature:g}",
                            where="--temperature", fix="pass --temperature 0 (greedy) or e.g. 0.7")
        if not self.max_pause >= 0:  # written so NaN fails too; inf (never stop) is meaningful
            raise UserError(f"max_pause must be 0 or more seconds, got {self.max_pause:g}",
                            where="--max-pause",
                            fix="pass --max-pause 600 (seconds; 0 stops at the first outage)")
        if self.executor not in EXECUTORS:
            raise UserError(f"unknown executor {self.executor!r}", where="--executor",
                            fix=f"use {' or '.join(EXECUTORS)}")
        if self.workers < 1:
            raise UserError(f"workers must be at least 1, got {self.workers}", where="--workers",
                            fix="pass --workers 1 or more")
        if not self.judges:
            raise UserError("no judge given", where="--judge", fix="pass --judge default (or another judge)")

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], runtime: EvalConfig) -> EvalConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in stored.items() if k in known and k not in RUNTIME_FIELDS}
        values["judges"] = tuple(values.get("judges", ()))
        return cls(**values, **{k: getattr(runtime, k) for k in RUNTIME_FIELDS})


def run_config(config: EvalConfig, planned: Planned, judges: Sequence[Judge], attacker: ChatModel | None,
               model_name: str | None) -> dict[str, Any]:
    """Everything that determines what a run measures, as stored in runs.config and the evidence."""
    return {
        "eval": {**asdict(config), "judges": list(config.judges), **{  # credentials are never stored
            k: redact_ref(v) for k in ("attacker_ref", "judge_model_ref") if (v := getattr(config, k))}},
        "model_name": model_name,
        "suite": {"name": planned.suite_name, "version": planned.suite_version,
                  "content_hash": planned.suite_hash},
        "attacks": [attack_descriptor(a.meta) for a in planned.attacks],
        "benign_attacks": [attack_descriptor(a.meta) for a in planned.benign_attacks],
        "skipped_attacks": list(planned.skipped),
        # only when some attack left behaviours out: the config hash of every other run stays as it was
        **({"skipped_behaviors": list(planned.plan.skipped_behaviors)} if planned.plan.skipped_behaviors
           else {}),
        "judges": [{"name": j.name, "version": j.version} for j in judges],
        "attacker": None if attacker is None else {"ref": attacker.ref, "hash": attacker.content_hash()},
        "decoding": {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
                     "seed": config.seed},
        "plan": {"n": len(planned.plan.attempts), "digest": planned.plan.digest},
        "tool_version": __version__,
    }


def hashed_part(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the config hash covers: everything but provenance and the runtime knobs. Options at
    their None default are left out, so adding a new option keeps older runs resumable and reusable."""
    hashed = {k: v for k, v in config.items() if k not in UNHASHED_SECTIONS}
    hashed["eval"] = {k: v for k, v in config["eval"].items() if k not in RUNTIME_FIELDS and v is not None}
    return hashed


def config_hash(config: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(hashed_part(config)))


def changed_options(now: Mapping[str, Any], then: Mapping[str, Any]) -> list[str]:
    """The options and sections (suite, attacks, judges, plan, ...) in which two hashed configs differ."""
    options = now["eval"].keys() | then["eval"].keys()
    changed = [f"eval.{k}" for k in sorted(options) if now["eval"].get(k) != then["eval"].get(k)]
    sections = (now.keys() | then.keys()) - {"eval"}
    changed += [k for k in sorted(sections) if canonical_json(now.get(k)) != canonical_json(then.get(k))]
    return changed
