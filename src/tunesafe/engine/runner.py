"""Run an evaluation: plan suite x attacks, execute the attempts on the model with bounded concurrency,
judge them in batches, store each result as it completes, and close the run with an evidence record.

    run_id = await run_evaluation(store, "embedded:qwen2.5-coder-0.5b", EvalConfig(suite="smoke"))

Pipeline: `concurrency` workers pull attempts from one shared iterator (so at most `concurrency`
attempts are in flight: the HTTP bound; local backends micro-batch what arrives together) and hand each
execution to one judge task, which judges whatever has queued up as one batch and passes the results to
the batched writer. Fail closed: an attack that raises, a backend error or a judge error is stored as
an error, never as a refusal or a safe answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from tunesafe import __version__
from tunesafe.analysis.metrics import Summary, summarize
from tunesafe.engine import results as store_results
from tunesafe.engine.cache import CachedModel
from tunesafe.engine.plan import Plan, attack_descriptor, build_plan
from tunesafe.engine.progress import RunProgress
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.types import Attempt, AttemptResult, Behavior, RecordType, Verdict, canonical_json, sha256_hex

if TYPE_CHECKING:
    from tunesafe.attacks.base import AttackImpl, Execution
    from tunesafe.judges.base import Judge
    from tunesafe.models.base import ChatModel

log = logging.getLogger(__name__)

BENIGN_ATTACK = "direct_request"  # benign/borderline prompts are asked as written (see plan.py)
JUDGE_BATCH = 64
# Knobs that change how fast a run goes, not what it measures: left out of the config hash, and a
# resumed run takes them from the resuming command.
RUNTIME_FIELDS = ("concurrency", "use_cache")


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

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UserError(f"concurrency must be at least 1, got {self.concurrency}", where="--concurrency",
                            fix="pass --concurrency 1 or more")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}",
                            where="--max-new-tokens", fix="pass a positive number")
        if not self.judges:
            raise UserError("no judge given", where="--judge", fix="pass --judge default (or another judge)")

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], runtime: EvalConfig) -> EvalConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in stored.items() if k in known and k not in RUNTIME_FIELDS}
        values["judges"] = tuple(values.get("judges", ()))
        return cls(**values, **{k: getattr(runtime, k) for k in RUNTIME_FIELDS})


@dataclass(frozen=True)
class Planned:
    """What a config asks for, before any model is loaded (also what --dry-run shows)."""

    suite_name: str
    suite_version: str
    suite_hash: str
    attacks: tuple[AttackImpl, ...]
    benign_attacks: tuple[AttackImpl, ...]
    plan: Plan
    skipped: tuple[Mapping[str, str], ...] = ()

    @property
    def behaviors(self) -> dict[str, Behavior]:
        return {b.id: b for b in self.plan.behaviors}


@dataclass(frozen=True)
class RunReport:
    run_id: str
    status: str
    summary: Summary | None
    stats: Mapping[str, Any] = field(default_factory=dict)  # this session: wall time, attempts/s, tokens/s
    record_id: int | None = None


def plan_evaluation(config: EvalConfig, *, capabilities: Any = None) -> Planned:
    """Load the suite, resolve the attacks and expand the plan; with `capabilities` (of the target),
    restricted to what the target can run (see `for_target`)."""
    from tunesafe.attacks import resolve
    from tunesafe.suite import load_suite

    suite = load_suite(config.suite)
    # Replaying frozen attacker prompts needs no attacker model.
    attacks = resolve(config.attacks,
                      attacker_available=config.attacker_ref is not None or config.replay_from is not None)
    benign = [a for a in attacks if a.meta.name == BENIGN_ATTACK] or resolve(BENIGN_ATTACK)
    plan = build_plan(suite.behaviors, attacks, seed=config.seed, limit=config.limit, benign_attacks=benign)
    planned = Planned(suite_name=suite.name, suite_version=suite.version, suite_hash=suite.content_hash,
                      attacks=tuple(attacks), benign_attacks=tuple(benign), plan=plan)
    return planned if capabilities is None else for_target(planned, config.attacks, capabilities)


def for_target(planned: Planned, spec: str, capabilities: Any) -> Planned:
    """The plan without the attacks the target cannot run (e.g. prefilling over HTTP): left out and
    recorded when they came from "all"/"template", a UserError when the spec names them."""
    named = {t.strip() for t in spec.split(",")}
    skipped: dict[str, str] = {}
    for attack in planned.attacks:
        reason = attack.requires(capabilities)
        if reason is not None and named & {attack.meta.name, attack.meta.family}:
            raise UserError(reason, where="--attacks", fix="drop this attack or use a backend that has it")
        if reason is not None:
            skipped[attack.meta.name] = reason
    if not skipped:
        return planned
    benign = {a.meta.name for a in planned.benign_attacks}
    kept = tuple(a for a in planned.plan.attempts if a.attack not in skipped or
                 (a.kind != "harmful" and a.attack in benign))
    return replace(planned, attacks=tuple(a for a in planned.attacks if a.meta.name not in skipped),
                   plan=replace(planned.plan, attempts=kept),
                   skipped=tuple({"attack": name, "reason": why} for name, why in skipped.items()))


def run_config(config: EvalConfig, planned: Planned, judges: Sequence[Judge], attacker: ChatModel | None,
               model_name: str | None) -> dict[str, Any]:
    """Everything that determines what a run measures, as stored in runs.config and the evidence."""
    return {
        "eval": {**asdict(config), "judges": list(config.judges)},
        "model_name": model_name,
        "suite": {"name": planned.suite_name, "version": planned.suite_version,
                  "content_hash": planned.suite_hash},
        "attacks": [attack_descriptor(a.meta) for a in planned.attacks],
        "benign_attacks": [attack_descriptor(a.meta) for a in planned.benign_attacks],
        "skipped_attacks": list(planned.skipped),
        "judges": [{"name": j.name, "version": j.version} for j in judges],
        "attacker": None if attacker is None else {"ref": attacker.ref, "hash": attacker.content_hash()},
        "decoding": {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
                     "seed": config.seed},
        "plan": {"n": len(planned.plan.attempts), "digest": planned.plan.digest},
        "tool_version": __version__,
    }


def hashed_part(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the config hash covers: everything but the model name and the runtime knobs. Options at
    their None default are left out, so adding a new option keeps older runs resumable and reusable."""
    hashed = {k: v for k, v in config.items() if k != "model_name"}
    hashed["eval"] = {k: v for k, v in config["eval"].items() if k not in RUNTIME_FIELDS and v is not None}
    return hashed


def config_hash(config: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(hashed_part(config)))


def find_reusable_run(store: Store, model_ref: str, config: EvalConfig) -> str | None:
    """The newest complete run of a model with the same content hash and the same config hash, or None.
    The model is opened only to hash it (no request is sent, so there is nothing to close)."""
    model = _load_model(model_ref, config)
    planned = plan_evaluation(config, capabilities=model.capabilities)
    judges = make_judges(config)
    attacker = _load_model(config.attacker_ref, config) if config.attacker_ref else None
    wanted = config_hash(run_config(config, planned, judges, attacker, None))
    model_hash = model.content_hash()
    for run in reversed(store_results.list_runs(store)):
        if run.status == "complete" and run.model_hash == model_hash and run.config_hash == wanted:
            return run.id
    return None


async def run_evaluation(store: Store, model_ref: str | None, config: EvalConfig, *,
                         resume: str | None = None, model_name: str | None = None,
                         progress: bool = True) -> str:
    """Run (or resume) an evaluation; returns the run id."""
    report = await evaluate(store, model_ref, config, resume=resume, model_name=model_name, progress=progress)
    return report.run_id


async def evaluate(store: Store, model_ref: str | None, config: EvalConfig, *, resume: str | None = None,
                   model_name: str | None = None, progress: bool = True,
                   on_start: Callable[[str, int, int], None] | None = None) -> RunReport:
    """run_evaluation, returning the summary and this session's throughput as well. `on_start(run_id,
    n_planned, n_already_done)` is called once the run exists (the CLI prints how to resume it)."""
    info = None
    if resume is not None:
        info = store_results.load_run(store, resume)
        if model_ref is not None and model_ref != info.model_ref:
            raise UserError(f"run {resume} evaluated '{info.model_ref}', not '{model_ref}'", where="--resume",
                            fix="leave out MODEL when resuming, or start a new run")
        model_ref, model_name = info.model_ref, info.model_name
        config = EvalConfig.from_stored(info.config["eval"], runtime=config)
        if info.status == "complete":
            return RunReport(resume, "complete", summarize(store_results.load_results(store, resume)))
    if model_ref is None:
        raise UserError("no model given", where="MODEL",
                        fix="pass a model ref, e.g. embedded:qwen2.5-coder-0.5b")
    if config.replay_from is not None:
        store_results.load_run(store, config.replay_from)  # UserError now if it does not exist
    planned = plan_evaluation(config)  # a bad suite or attack spec fails here, before anything loads
    judges = make_judges(config)
    model = attacker = None
    try:
        model = _load_model(model_ref, config)
        attacker = _load_model(config.attacker_ref, config) if config.attacker_ref else None
        planned = for_target(planned, config.attacks, model.capabilities)
        model_hash = model.content_hash()
        stored_config = run_config(config, planned, judges, attacker, model_name)
        digest = config_hash(stored_config)
        if info is None:
            run_id = uuid.uuid4().hex[:12]
            store_results.create_run(store, run_id, model_ref, model_hash, stored_config, digest,
                                     len(planned.plan.attempts))
        else:
            run_id = info.id
            _check_resumable(info, model_hash, stored_config, digest)
        done = store_results.done_attempt_ids(store, run_id)
        if on_start is not None:
            on_start(run_id, len(planned.plan.attempts), len(done))
        return await _run(store, run_id, model, model_hash, attacker, judges, planned, config, stored_config,
                          done, progress)
    finally:
        for owner in (model, attacker, *judges):
            close = getattr(owner, "aclose", None)
            if close is not None:
                await close()


def make_judges(config: EvalConfig) -> list[Judge]:
    from tunesafe.judges.base import get_judge

    opts = {"model_ref": config.judge_model_ref} if config.judge_model_ref else {}
    return [get_judge(name, **opts) for name in config.judges]


def in_inventory(store: Store, name: str) -> bool:
    """Whether `name` is a model of the inventory (then a run of it also records a safety evaluation)."""
    from tunesafe.production.inventory import inventory

    return name in inventory(store)


def _load_model(ref: str, config: EvalConfig) -> ChatModel:
    from tunesafe.models import load_model, parse_ref

    parsed = parse_ref(ref)
    if parsed.scheme == "openai" and "concurrency" not in parsed.options:
        # The HTTP client has its own connection bound; let it match the engine's.
        return load_model(ref, concurrency=config.concurrency)
    return load_model(ref)


def _check_resumable(info: store_results.RunInfo, model_hash: str, config: Mapping[str, Any],
                     digest: str) -> None:
    if info.model_hash != model_hash:
        raise UserError(f"the model behind '{info.model_ref}' changed since run {info.id} started "
                        f"(hash {info.model_hash[:12]} -> {model_hash[:12]})", where="--resume",
                        fix="start a new run: resuming would mix answers of two models")
    if info.config_hash != digest:
        changed = _changed(hashed_part(config), hashed_part({"eval": {}, **info.config}))
        what = (f"a different {', '.join(changed)}" if changed
                else "the same options but another config-hash scheme (an older tunesafe)")
        raise UserError(f"run {info.id} was planned with {what}", where="--resume",
                        fix="start a new run with the current versions, or reinstall the versions it used")


def _changed(now: Mapping[str, Any], then: Mapping[str, Any]) -> list[str]:
    """The options and sections (suite, attacks, judges, plan, ...) in which two hashed configs differ."""
    options = now["eval"].keys() | then["eval"].keys()
    changed = [f"eval.{k}" for k in sorted(options) if now["eval"].get(k) != then["eval"].get(k)]
    sections = (now.keys() | then.keys()) - {"eval"}
    changed += [k for k in sorted(sections) if canonical_json(now.get(k)) != canonical_json(then.get(k))]
    return changed


async def _run(store: Store, run_id: str, model: ChatModel, model_hash: str, attacker: ChatModel | None,
               judges: Sequence[Judge], planned: Planned, config: EvalConfig,
               stored_config: Mapping[str, Any], done: set[str], progress: bool) -> RunReport:
    writer = store_results.ResultWriter(store)
    target: ChatModel = CachedModel(model, store, writer, model_hash) if config.use_cache else model
    # Shortest prompts first: local backends batch whatever is in flight together and pad it to the
    # longest prompt, so mixing a 30-token request with a 1,300-token many-shot one wastes most of the
    # batch. The order changes nothing else (ids, results and resume are order-free).
    pending = sorted((a for a in planned.plan.attempts if a.id not in done), key=_prompt_size)
    frozen = store_results.frozen_prompts(store, config.replay_from) if config.replay_from else {}
    executor = _Executor(target, attacker, judges, planned, config, frozen, writer, run_id)
    started = time.perf_counter()
    status = "interrupted"
    try:
        with RunProgress(len(planned.plan.attempts), len(done), enabled=progress) as bar:
            executor.progress = bar
            await executor.run(pending)
        status = "complete"
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else "failed"
        raise
    finally:
        writer.flush()
        if status != "complete":
            store_results.set_status(store, run_id, status)
    wall = time.perf_counter() - started
    stats = executor.stats(wall, getattr(target, "hits", 0))
    return _finish(store, run_id, planned, stored_config, model_hash, stats)


def _finish(store: Store, run_id: str, planned: Planned, stored_config: Mapping[str, Any], model_hash: str,
            stats: Mapping[str, Any]) -> RunReport:
    results = store_results.load_results(store, run_id)
    missing = set(planned.plan.ids) - {r.attempt.id for r in results}
    if missing:  # cannot happen unless rows were deleted underneath us; never close such a run
        store_results.set_status(store, run_id, "failed")
        raise RuntimeError(f"run {run_id}: {len(missing)} planned attempts have no stored result")
    store_results.set_status(store, run_id, "complete")
    summary = summarize(results)
    info = store_results.load_run(store, run_id)
    model_name = stored_config.get("model_name")
    body = {
        "run_id": run_id, "model_ref": info.model_ref, "model_hash": model_hash, "model_name": model_name,
        "config": stored_config, "config_hash": info.config_hash, "n_attempts": len(results),
        "results_digest": store_results.results_digest(results), "summary": summary,
        "started_at": info.created_at.isoformat(),
        "finished_at": info.finished_at.isoformat() if info.finished_at else None, "session": stats,
    }
    record = store.append(RecordType.RUN, body, subject=model_name)
    if model_name and in_inventory(store, model_name):
        from tunesafe.production.inventory import record_safety_eval

        overall = summary.overall
        record_safety_eval(store, model_name, run_id=run_id, details={
            "run_record": record.id, "model_ref": info.model_ref, "model_hash": model_hash,
            "suite": stored_config["suite"], "judge": stored_config["judges"][0], "n_attempts": len(results),
            **json.loads(canonical_json({m: overall.rate(m) for m in ("asr", "refusal", "over_refusal",
                                                                        "error")}))})
    return RunReport(run_id, "complete", summary, stats, record.id)


class _Executor:
    def __init__(self, target: ChatModel, attacker: ChatModel | None, judges: Sequence[Judge],
                 planned: Planned, config: EvalConfig, frozen: Mapping[str, Mapping[str, Any]],
                 writer: store_results.ResultWriter, run_id: str) -> None:
        from tunesafe.attacks.base import ExecContext

        self.target = target
        self.judges = judges
        self.impls = {a.meta.name: a for a in (*planned.attacks, *planned.benign_attacks)}
        self.behaviors = planned.behaviors
        self.frozen = frozen
        self.writer = writer
        self.run_id = run_id
        self.context = ExecContext(attacker=attacker, judge=judges[0], max_new_tokens=config.max_new_tokens,
                                   temperature=config.temperature, seed=config.seed)
        self.concurrency = config.concurrency
        self.progress: RunProgress | None = None
        self.executed = 0
        self.errors = 0
        self.completion_tokens = 0
        self.prompt_tokens = 0

    async def run(self, pending: Sequence[Attempt]) -> None:
        todo = iter(pending)
        queue: asyncio.Queue[tuple[Attempt, Execution] | None] = asyncio.Queue(maxsize=4 * JUDGE_BATCH)

        async def worker() -> None:
            for attempt in todo:  # one shared iterator: at most `concurrency` attempts in flight
                await queue.put((attempt, await self.execute(attempt)))

        judge_task = asyncio.create_task(self.judge_loop(queue))
        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(pending)))]
        try:
            await asyncio.gather(*workers)
            await queue.put(None)
            await judge_task
        finally:
            for task in (*workers, judge_task):
                task.cancel()

    async def execute(self, attempt: Attempt) -> Execution:
        from tunesafe.attacks.base import Execution

        impl = self.impls[attempt.attack]
        ctx = replace(self.context, frozen=self.frozen.get(attempt.id))
        started = time.perf_counter()
        try:
            return await impl.execute(attempt, self.target, ctx)
        except Exception as exc:  # an attack bug must cost one attempt (as an error), not the run
            log.debug("attack %s failed on %s", attempt.attack, attempt.id, exc_info=True)
            return Execution.failed(f"attack {attempt.attack} failed: {type(exc).__name__}: {exc}",
                                    attempt.messages, latency_s=time.perf_counter() - started)

    async def judge_loop(self, queue: asyncio.Queue[tuple[Attempt, Execution] | None]) -> None:
        finished = False
        while not finished:
            item = await queue.get()
            batch: list[tuple[Attempt, Execution]] = []
            while item is not None:
                batch.append(item)
                if len(batch) >= JUDGE_BATCH or queue.empty():
                    break
                item = queue.get_nowait()
            finished = item is None
            if batch:
                for result in await self.judge_batch(batch):
                    self.record(result)

    async def judge_batch(self, batch: Sequence[tuple[Attempt, Execution]]) -> list[AttemptResult]:
        from tunesafe.judges.base import JudgeInput

        answered = [(a, e) for a, e in batch if e.ok]
        inputs = [JudgeInput(request=self.behaviors[a.behavior_id].text, response=e.response, kind=a.kind,
                             id=a.id) for a, e in answered]
        per_attempt: dict[str, list[Verdict]] = {a.id: [] for a, _ in batch}
        for judge in self.judges:
            verdicts = await _judge_safely(judge, inputs) if inputs else []
            for (attempt, _), verdict in zip(answered, verdicts, strict=True):
                per_attempt[attempt.id].append(verdict)
        return [AttemptResult(run_id=self.run_id, attempt=a, generation=e.generation, response=e.response,
                              conversation=e.conversation, verdicts=tuple(per_attempt[a.id]), frozen=e.frozen)
                for a, e in batch]

    def record(self, result: AttemptResult) -> None:
        self.writer.add(result)
        self.executed += 1
        self.prompt_tokens += result.generation.prompt_tokens
        self.completion_tokens += result.generation.completion_tokens
        failed = result.generation.error is not None or any(v.error for v in result.verdicts)
        self.errors += failed
        if self.progress is not None:
            self.progress.advance(error=failed)

    def stats(self, wall_s: float, cache_hits: int) -> dict[str, Any]:
        rate = self.executed / wall_s if wall_s > 0 else None
        return {"wall_s": round(wall_s, 3), "attempts": self.executed, "errors": self.errors,
                "attempts_per_s": None if rate is None else round(rate, 2),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "completion_tokens_per_s": round(self.completion_tokens / wall_s, 2) if wall_s > 0 else None,
                "cache_hits": cache_hits}


def _prompt_size(attempt: Attempt) -> tuple[int, str]:
    return sum(len(m.content) for m in attempt.messages) + len(attempt.prefill or ""), attempt.id


async def _judge_safely(judge: Judge, inputs: Sequence[Any]) -> list[Verdict]:
    """A judge that raises or answers the wrong number of items yields error verdicts (fail closed)."""
    from tunesafe.judges.base import error_verdict

    try:
        verdicts = await judge.judge(inputs)
    except Exception as exc:
        log.debug("judge %s failed", judge.name, exc_info=True)
        return [error_verdict(judge, f"{type(exc).__name__}: {exc}") for _ in inputs]
    if len(verdicts) != len(inputs):
        return [error_verdict(judge, f"returned {len(verdicts)} verdicts for {len(inputs)} items")
                for _ in inputs]
    return list(verdicts)
