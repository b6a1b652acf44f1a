"""Run an evaluation: plan suite x attacks for the target, execute and judge the attempts (executor.py),
store each result as it completes, and close the run with an evidence record. Resume and reuse too.

    run_id = await run_evaluation(store, "embedded:qwen2.5-coder-0.5b", EvalConfig(suite="smoke"))
    run_id = await run_evaluation(store, None, EvalConfig(), resume=run_id)   # after a crash or Ctrl-C
    await evaluate(store, None, EvalConfig(), resume=run_id, retry_errors=True)  # re-run errored attempts
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tunesafe.analysis.metrics import Summary, summarize
from tunesafe.engine import results as store_results
from tunesafe.engine.cache import CachedModel
from tunesafe.engine.config import (
    RUNTIME_FIELDS,
    EvalConfig,
    changed_options,
    config_hash,
    hashed_part,
    run_config,
)
from tunesafe.engine.distributed import RayExecutor, WorkerSpec
from tunesafe.engine.executor import Executor, prompt_size
from tunesafe.engine.progress import RunProgress
from tunesafe.engine.targets import Planned, for_target, plan_evaluation
from tunesafe.errors import EndpointUnavailable, ReplicasDisagree, UserError
from tunesafe.evidence.store import Store
from tunesafe.models.refs import redact_ref, restore_ref
from tunesafe.types import EvidenceRecord, RecordType, canonical_json

if TYPE_CHECKING:
    from tunesafe.judges.base import Judge
    from tunesafe.models.base import ChatModel

__all__ = ["EvalConfig", "RunReport", "config_hash", "evaluate", "find_reusable_run", "in_inventory",
           "plan_evaluation", "replayable_attacks", "run_evaluation"]


@dataclass(frozen=True)
class RunReport:
    run_id: str
    status: str
    summary: Summary  # evaluate returns complete runs only
    stats: Mapping[str, Any] = field(default_factory=dict)  # this session: wall time, attempts/s, tokens/s
    record_id: int | None = None


def find_reusable_run(store: Store, model_ref: str, config: EvalConfig) -> str | None:
    """The newest complete run of a model with the same content hash and the same config hash, or None."""
    model, fresh = fresh_config(store, model_ref, config)
    wanted = config_hash(fresh)
    for run in reversed(store_results.list_runs(store)):
        if run.status == "complete" and model.evaluated(run) and run.config_hash == wanted:
            return run.id
    return None


@dataclass(frozen=True)
class ModelIdentity:
    """The content hash of the model at `ref` now, and whether a stored run evaluated that model."""

    ref: str
    hash: str
    opened: Any = None  # the model opened to hash it (no request sent); None for a llama.cpp identity

    def evaluated(self, run: store_results.RunInfo) -> bool:
        """The same hash, or a replica run over the same URLs stored before their order stopped counting
        (its hash took them as listed: models/replicas.py)."""
        from tunesafe.models.replicas import hashes_over_the_same

        return run.model_hash == self.hash or (
            self.opened is not None and run.model_hash in hashes_over_the_same(run.model_ref, self.ref,
                                                                               self.opened))


def fresh_config(store: Store, model_ref: str, config: EvalConfig) -> tuple[ModelIdentity, dict[str, Any]]:
    """(the model's identity, the config a run of it would store now). The model is opened only to hash
    it (no request is sent, so there is nothing to close); a llama.cpp server is not even started."""
    from tunesafe.models import backend_for, parse_ref
    from tunesafe.models.llamacpp import identity

    parsed = parse_ref(model_ref)
    if parsed.local and backend_for(parsed) == "llamacpp":
        model_hash, capabilities = identity(parsed)
        model = ModelIdentity(model_ref, model_hash)
    else:
        opened = load_run_model(model_ref, config)
        model = ModelIdentity(model_ref, opened.content_hash(), opened)
        capabilities = opened.capabilities
    planned = plan_evaluation(config, capabilities=capabilities, replayable=replayable_attacks(store, config))
    judges = make_judges(config)
    attacker = load_run_model(config.attacker_ref, config) if config.attacker_ref else None
    return model, run_config(config, planned, judges, attacker, None)


async def run_evaluation(store: Store, model_ref: str | None, config: EvalConfig, *,
                         resume: str | None = None, model_name: str | None = None,
                         progress: bool = True, version: Mapping[str, Any] | None = None) -> str:
    """Run (or resume) an evaluation; returns the run id."""
    report = await evaluate(store, model_ref, config, resume=resume, model_name=model_name, progress=progress,
                            version=version)
    return report.run_id


async def evaluate(store: Store, model_ref: str | None, config: EvalConfig, *, resume: str | None = None,
                   model_name: str | None = None, progress: bool = True,
                   on_start: Callable[[str, int, int], None] | None = None,
                   retry_errors: bool = False, opened: ChatModel | None = None,
                   explicit: Collection[str] = (), check_name: bool = False,
                   attest_weights: bool = False, version: Mapping[str, Any] | None = None) -> RunReport:
    """run_evaluation, returning the summary and this session's throughput as well. `on_start(run_id,
    n_planned, n_already_done)` is called once the run exists (the CLI prints how to resume it).
    `retry_errors` (with `resume`): the run's errored attempts are run again; their earlier results move
    to the store's history and the new ones count. `opened`: the model of `model_ref`, already opened by
    the caller (load_run_model) so that its loading overlapped other work; the caller closes it.
    `explicit`: the fields of `config` the caller set on purpose (the CLI's options given): a resume runs
    the stored config, so one of them that differs from it is a UserError rather than silently unused.
    `check_name`: a new run of an inventory `model_name` must evaluate that name's current version
    (production.inventory.check_evaluated, before any model loads; `attest_weights` as the gate's), since
    its safety evaluation is recorded against that version; the gate and scheduled red-teaming tie their
    names themselves and pass the version they matched as `version` (a new run's `model_version`)."""
    info = None
    if retry_errors and resume is None:
        raise UserError("--retry-errors re-runs the errored attempts of a stored run", where="--retry-errors",
                        fix="pass --resume RUN as well")
    if resume is not None:
        from tunesafe.models.replicas import served_elsewhere  # the HTTP client loads only when needed

        info = store_results.load_run(store, resume)
        moved = model_ref is not None and served_elsewhere(model_ref, info.model_ref)
        if model_ref is not None and not moved and redact_ref(model_ref) != redact_ref(info.model_ref):
            raise UserError(f"run {resume} evaluated '{info.model_ref}', not '{redact_ref(model_ref)}'",
                            where="--resume", fix="leave out MODEL when resuming, or start a new run")
        stored = info.config.get("eval")
        if not isinstance(stored, Mapping):  # every run tunesafe creates has its options stored
            raise store_results.damaged(f"run {resume} holds no evaluation options", store)
        given, config = config, EvalConfig.from_stored(stored, runtime=config)
        _check_same_options(info.id, given, config, explicit)
        if info.status == "complete" and not (retry_errors and info.n_errors):
            return RunReport(resume, "complete", summarize(store_results.load_results(store, resume)))
        _check_not_rejudged(info, retry_errors)
        if info.n_done < info.n_planned or retry_errors:
            _check_same_version(store, info)
        # stored refs lost their credentials (models/refs.py): take them from the refs given again
        # (replicas at other URLs serve the run's model: the ref given names where, with its credentials)
        model_ref = model_ref if moved else restore_ref(info.model_ref, model_ref, "MODEL")
        model_name = info.model_name
        config = replace(
            config, attacker_ref=restore_ref(config.attacker_ref, given.attacker_ref, "--attacker"),
            judge_model_ref=restore_ref(config.judge_model_ref, given.judge_model_ref, "--judge-model"))
    if model_ref is None:
        raise UserError("no model given", where="MODEL",
                        fix="pass a model ref, e.g. embedded:qwen2.5-coder-0.5b")
    version = info.config.get("model_version") if info is not None else version
    if info is None:  # a resumed run judges with its stored judges
        from tunesafe.judges.base import check_judge_model
        from tunesafe.production.inventory import check_attestation_named, check_evaluated

        check_judge_model(config.judges, config.judge_model_ref)
        check_attestation_named(attest_weights, [model_name], ["--name"])
        if check_name and model_name:
            version = check_evaluated(store, model_name, model_ref, source="MODEL is", option="--name",
                                      attested=attest_weights)
    # A bad suite, attack spec or replayed run fails here, before anything loads.
    planned = plan_evaluation(config, replayable=replayable_attacks(store, config))
    judges = make_judges(config)
    model = attacker = None
    try:
        model = opened or load_run_model(model_ref, config)
        attacker = load_run_model(config.attacker_ref, config) if config.attacker_ref else None
        planned = for_target(planned, config.attacks, model.capabilities)
        model_hash = model.content_hash()
        stored_config = run_config(config, planned, judges, attacker, model_name)
        if version is not None:  # the inventory version the run evaluates, and how that was established
            stored_config["model_version"] = version
        digest = config_hash(stored_config)
        if info is None:
            run_id = uuid.uuid4().hex[:12]
            store_results.create_run(store, run_id, model_ref, model_hash, stored_config, digest,
                                     len(planned.plan.attempts))
        else:
            run_id = info.id
            _check_resumable(info, model, model_hash, stored_config, digest)
            if moved:  # where the run goes on from now: a later resume without MODEL comes back here
                store_results.move_run(store, run_id, model_ref, model_hash)
            else:
                model_hash = info.model_hash  # the same model; a replica run's may be hashed as stored before
            store_results.set_status(store, run_id, "running")  # not "interrupted" while it runs again
        with _ends_session(store, run_id):
            if retry_errors:
                store_results.retire_errors(store, run_id)
            done = store_results.done_attempt_ids(store, run_id)
            if on_start is not None:
                on_start(run_id, len(planned.plan.attempts), len(done))
            return await _run(store, run_id, model_ref, model, model_hash, attacker, judges, planned, config,
                              stored_config, done, progress)
    finally:
        for owner in (model, attacker, *judges):
            close = getattr(owner, "aclose", None)
            if close is not None:
                await close()


def replayable_attacks(store: Store, config: EvalConfig) -> frozenset[str]:
    """The attacks whose attacker prompts a replay can take from the replayed run: those it planned. With
    no attacker model, attacker-driven attacks the replayed run skipped are skipped here too, so both
    sides of a gate plan the same attempts (UserError if the replayed run does not exist)."""
    if config.replay_from is None:
        return frozenset()
    info = store_results.load_run(store, config.replay_from)
    return frozenset(a["name"] for a in info.config.get("attacks", ()))


def make_judges(config: EvalConfig) -> list[Judge]:
    from tunesafe.judges.base import get_judge

    opts = {"model_ref": config.judge_model_ref} if config.judge_model_ref else {}
    return [get_judge(name, **opts) for name in config.judges]


def in_inventory(store: Store, name: str) -> bool:
    """Whether `name` is a model of the inventory (then a run of it also records a safety evaluation)."""
    from tunesafe.production.inventory import inventory

    return name in inventory(store)


def load_run_model(ref: str, config: EvalConfig) -> ChatModel:
    from tunesafe.models import backend_for, load_model, parse_ref

    parsed = parse_ref(ref)
    if parsed.local:
        if config.threads and backend_for(parsed) == "llamacpp" and "threads" not in parsed.options:
            return load_model(ref, threads=config.threads)
        return load_model(ref)
    # The HTTP client has its own connection bound and outage limit; let them match the engine's unless
    # the ref sets them.
    wanted = {"concurrency": config.concurrency, "max_pause": config.max_pause}
    return load_model(ref, **{k: v for k, v in wanted.items() if k not in parsed.options})


def _check_same_options(run_id: str, given: EvalConfig, stored: EvalConfig,
                        explicit: Collection[str]) -> None:
    """A resume runs the stored options: an option given again with another value would either be
    ignored without a word or mix answers of two configurations in one run, so it is refused."""
    def shown(name: str, config: EvalConfig) -> Any:
        value = getattr(config, name)
        return redact_ref(value) if name in ("attacker_ref", "judge_model_ref") and value else value

    changed = [name for name in explicit
               if name not in RUNTIME_FIELDS and shown(name, given) != shown(name, stored)]
    if changed:
        what = ", ".join(f"{name}={shown(name, stored)!r} (given {shown(name, given)!r})" for name in changed)
        raise UserError(f"run {run_id} was planned with {what}", where="--resume",
                        fix="leave those options out to resume the run as planned, or start a new run "
                            "without --resume")


def _check_same_version(store: Store, info: store_results.RunInfo) -> None:
    """A run's answers are all of the inventory version its name was checked against when it started:
    new answers after another version was registered would mix two models in one evaluation."""
    pinned = info.config.get("model_version")
    if not info.model_name or not isinstance(pinned, Mapping):
        return
    from tunesafe.production.inventory import inventory

    current = inventory(store).get(info.model_name)
    if current is None or current.record_id == pinned.get("record_id"):
        return
    raise UserError(f"run {info.id} evaluates version {pinned.get('version')} of {info.model_name!r}, and "
                    f"version {current.version} was registered since: resuming would mix the answers of two "
                    "versions in one run", where="--resume",
                    fix=f"start a new run of the current version: `tunesafe eval MODEL --name "
                        f"{info.model_name}` (run {info.id} stays as it is)")


def _check_not_rejudged(info: store_results.RunInfo, retry_errors: bool) -> None:
    """A re-judged run holds the answers of the run it re-judged (engine/rejudge.py): running its model
    would store new answers under that claim, mixing two sources in one run."""
    source = info.config.get("rejudged_from")
    if source is None:
        return
    if retry_errors:
        fix = (f"retry the errors where the answers were made, `tunesafe eval --resume {source} "
               "--retry-errors`, then re-judge that run again")
    else:
        fix = f"re-judge it again: tunesafe runs rejudge {source}"
    raise UserError(f"run {info.id} re-judged the answers of run {source}; it calls no model",
                    where="--resume", fix=fix)


def _check_resumable(info: store_results.RunInfo, model: ChatModel, model_hash: str,
                     config: Mapping[str, Any], digest: str) -> None:
    from tunesafe.models.replicas import hashes_at

    if info.model_hash != model_hash and info.model_hash not in hashes_at(info.model_ref, model):
        raise UserError(f"the model behind '{info.model_ref}' changed since run {info.id} started "
                        f"(hash {info.model_hash[:12]} -> {model_hash[:12]})", where="--resume",
                        fix="start a new run: resuming would mix answers of two models")
    if info.config_hash != digest:
        changed = changed_options(hashed_part(config), hashed_part({"eval": {}, **info.config}))
        what = (f"a different {', '.join(changed)}" if changed
                else "the same options but another config-hash scheme (an older tunesafe)")
        raise UserError(f"run {info.id} was planned with {what}", where="--resume",
                        fix="start a new run with the current versions, or reinstall the versions it used")


async def _run(store: Store, run_id: str, model_ref: str, model: ChatModel, model_hash: str,
               attacker: ChatModel | None, judges: Sequence[Judge], planned: Planned, config: EvalConfig,
               stored_config: Mapping[str, Any], done: set[str], progress: bool) -> RunReport:
    writer = store_results.ResultWriter(store)
    target: ChatModel = CachedModel(model, store, writer, model_hash) if config.use_cache else model
    # Shortest prompts first: local backends batch whatever is in flight together and pad it to the
    # longest prompt, so mixing a 30-token request with a 1,300-token many-shot one wastes most of the
    # batch. The order changes nothing else (ids, results and resume are order-free).
    pending = sorted((a for a in planned.plan.attempts if a.id not in done), key=prompt_size)
    frozen = store_results.frozen_prompts(store, config.replay_from) if config.replay_from else {}
    executor: Executor | RayExecutor
    if config.executor == "ray":
        # the actors hash the model as loaded now (a resumed replica run keeps the hash it was stored with)
        spec = WorkerSpec(model_ref, config, planned, frozen, run_id, model.content_hash())
        executor = RayExecutor(spec, writer)
    else:
        executor = Executor(target, attacker, judges, planned, config, frozen, writer, run_id)
    started = time.perf_counter()
    terminated: list[bool] = []
    try:
        with RunProgress(len(planned.plan.attempts), len(done), enabled=progress) as bar, \
                _sigterm_interrupts(terminated):
            executor.progress = bar
            await executor.run(pending)
    except BaseException as exc:
        if isinstance(exc, EndpointUnavailable) and not isinstance(exc, ReplicasDisagree):
            exc.fix = (f"everything done so far is kept; when the endpoint is back: "
                       f"tunesafe eval --resume {run_id}")
        if terminated and isinstance(exc, asyncio.CancelledError):
            raise KeyboardInterrupt from None  # the caller reports it as the interruption it is
        raise
    finally:
        writer.flush()  # what finished before a Ctrl-C, a SIGTERM or a failure is kept
        # HTTP: the model ids this session's replies named, kept with the run so that the session
        # closing it reports every session's (a provider may move an alias between two sessions)
        reported: Mapping[str, int] = getattr(model, "reported_models", dict)()
        served = store_results.add_reported_models(store, run_id, reported)
    wall = time.perf_counter() - started
    stats = executor.stats(wall, getattr(target, "hits", 0))
    if (replica_stats := getattr(model, "replica_stats", None)) is not None:
        stats["replicas"] = replica_stats()  # per replica: requests, errors, moved away, its model id
    if reported:
        stats["reported_models"] = reported
    if getattr(model, "folds_system", False):  # the template took no system message: folded into user
        stats["system_prompt_folded"] = True
    adapted: Mapping[str, str] = getattr(model, "request_adaptations", dict)()
    if adapted:  # e.g. max_tokens sent as max_completion_tokens (OpenAI's reasoning models)
        stats["request_params_adapted"] = adapted
    return finish_run(store, run_id, planned.plan.ids, stored_config, model_hash, stats, served)


@contextlib.contextmanager
def _ends_session(store: Store, run_id: str) -> Iterator[None]:
    """From the moment a session marks its run running (created or resumed) until the run is complete:
    whatever else ends the session marks the run `interrupted` (Ctrl-C, SIGTERM, an endpoint down past
    max_pause: resumable as it stands) or `failed`, so no run stays `running` after its process is gone,
    and a resumed session ends as a first one would."""
    try:
        yield
    except BaseException as exc:
        stopped = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError, EndpointUnavailable)) \
            and not isinstance(exc, ReplicasDisagree)  # answers that may mix two models: failed
        store_results.set_status(store, run_id, "interrupted" if stopped else "failed")
        raise


_TERMINABLE: dict[asyncio.Task[Any], list[bool]] = {}


@contextlib.contextmanager
def _sigterm_interrupts(hit: list[bool]) -> Iterator[None]:
    """While a run executes, SIGTERM (kill, systemd, docker stop, a batch scheduler) stops it like Ctrl-C:
    the default action would end the process at once, dropping the writer's buffered results and leaving
    the run marked running. The run's task is cancelled, and `hit` made non-empty. Runs that go on
    together (a gate's two sides) share the one handler."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def terminate() -> None:
        for running, flag in list(_TERMINABLE.items()):
            flag.append(True)
            running.cancel()

    if task is None:
        yield
        return
    if not _TERMINABLE:
        try:
            loop.add_signal_handler(signal.SIGTERM, terminate)
        except (NotImplementedError, RuntimeError, ValueError):  # not on Windows, nor off the main thread
            yield
            return
    _TERMINABLE[task] = hit
    try:
        yield
    finally:
        del _TERMINABLE[task]
        if not _TERMINABLE:
            loop.remove_signal_handler(signal.SIGTERM)


def finish_run(store: Store, run_id: str, planned_ids: Iterable[str], stored_config: Mapping[str, Any],
               model_hash: str, stats: Mapping[str, Any],
               reported: Mapping[str, int] | None = None) -> RunReport:
    """Close a run whose every planned attempt is stored: its evidence record, then status complete.
    `reported`: the model ids the replies named over every session of the run (`stats` is this one's).
    The status goes last and each record is written once: a run killed in between is not complete, and
    its resume (nothing left to execute) comes back here and writes only what is missing."""
    results = store_results.load_results(store, run_id)
    missing = set(planned_ids) - {r.attempt.id for r in results}
    if missing:  # cannot happen unless rows were deleted underneath us; never close such a run
        store_results.set_status(store, run_id, "failed")
        raise RuntimeError(f"run {run_id}: {len(missing)} planned attempts have no stored result")
    summary = summarize(results)
    info = store_results.load_run(store, run_id)
    model_name = stored_config.get("model_name")
    digest = store_results.results_digest(results)

    def run_record() -> EvidenceRecord | None:
        return next((r for r in reversed(list(store.records(type=RecordType.RUN, subject=model_name)))
                     if r.body.get("run_id") == run_id and r.body.get("results_digest") == digest), None)

    record = run_record()
    if record is None:
        finished = store_results.now()
        if info.created_at.tzinfo is None:  # as the store gives its times back (SQLite: naive UTC)
            finished = finished.replace(tzinfo=None)
        body = {
            "run_id": run_id, "model_ref": info.model_ref, "model_hash": model_hash, "model_name": model_name,
            "config": stored_config, "config_hash": info.config_hash, "n_attempts": len(results),
            "results_digest": digest, "summary": summary, "started_at": info.created_at.isoformat(),
            "finished_at": finished.isoformat(), "session": stats,
        }
        if info.config.get("moved_from"):  # the replica lists it ran on before `model_ref`
            body["moved_from"] = info.config["moved_from"]
        if reported:
            body["reported_models"] = dict(reported)
        if stored_config.get("generated_in"):  # re-judged: it evaluates the model as of those answers
            body["answers_record"] = _answers_record(store, str(stored_config["generated_in"]), model_name)
        try:  # another resume of the run may be finishing it too
            record = store.append(RecordType.RUN, body, subject=model_name, check=_once(run_record))
        except _Written as written:
            record = written.record
    finished = datetime.fromisoformat(record.body["finished_at"])
    run_record_id = record.id

    def safety_eval() -> EvidenceRecord | None:
        return next((r for r in store.records(type=RecordType.SAFETY_EVAL, subject=model_name)
                     if r.body.get("details", {}).get("run_record") == run_record_id), None)

    if model_name and in_inventory(store, model_name) and safety_eval() is None:
        from tunesafe.production.inventory import record_safety_eval

        overall = summary.overall
        details = {
            "run_record": record.id, "model_ref": info.model_ref, "model_hash": model_hash,
            "suite": stored_config["suite"], "judge": stored_config["judges"][0], "n_attempts": len(results),
            **json.loads(canonical_json({m: overall.rate(m) for m in ("asr", "refusal", "over_refusal",
                                                                        "error")}))}
        pinned = stored_config.get("model_version")
        if pinned is not None:
            details["version"] = pinned
        # the version checked when the run started made its answers, whatever was registered since
        with contextlib.suppress(_Written):
            record_safety_eval(store, model_name, run_id=run_id, details=details,
                               answers_record=record.body.get("answers_record"),
                               version=pinned["record_id"] if pinned is not None else None,
                               check=_once(safety_eval))
    store_results.set_status(store, run_id, "complete", finished_at=finished)
    return RunReport(run_id, "complete", summary, stats, record.id)


class _Written(Exception):
    """The record another process wrote meanwhile, found under the chain lock."""

    def __init__(self, record: EvidenceRecord) -> None:
        super().__init__(record.id)
        self.record = record


def _once(find: Callable[[], EvidenceRecord | None]) -> Callable[[], None]:
    """A check for Store.append that refuses a record `find` finds written already (raising _Written)."""
    def check() -> None:
        if (found := find()) is not None:
            raise _Written(found)
    return check


def _answers_record(store: Store, source: str, model_name: str | None) -> int:
    """The newest run record of run `source`, which generated a re-judged run's answers (0 when there is
    none: the re-judge then counts for no model version rather than the current one)."""
    found = [r.id for r in store.records(type=RecordType.RUN, subject=model_name)
             if r.body.get("run_id") == source]
    return max(found, default=0)
