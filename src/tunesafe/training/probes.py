"""Checkpoint safety probes: a small fixed set of attempts run on the live model during training and
judged locally, compared with the same probe taken before the first step.

The probe set (`select_probe_set`) is chosen deterministically from a suite: harmful behaviours asked
directly, other harmful behaviours under a prefilled affirmative answer (Qi et al. 2024: shallow
alignment gives way there first), borderline and benign prompts (over-refusal). Within each kind the
behaviours are spread over the categories round-robin, each category's items ordered by a salted sha256
of their ids, so the same suite always yields the same set; it is recorded by attempt ids and a hash.

`run_probe` never raises: generation and judge failures come back as a ProbeResult with `error` set
or with errored items, and `probe_findings` turns both into `probe_error` events (fail closed: a probe
that could not be judged is never a pass).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from tunesafe.analysis.metrics import summarize
from tunesafe.attacks import ExecContext
from tunesafe.attacks import get as get_attack
from tunesafe.attacks.base import request_text
from tunesafe.errors import UserError
from tunesafe.policy.model import TrainingPolicy
from tunesafe.reports.view import pct, percent_apart
from tunesafe.training.events import TrainingEvent
from tunesafe.training.live_model import generation_mode, live_chat_model
from tunesafe.types import Attempt, AttemptResult, Behavior, Outcome, canonical_json, sha256_hex

PROBE_VERSION = "1"
_SALT = f"tunesafe-probe-v{PROBE_VERSION}:"
DIRECT, PREFILLED = "direct_request", "prefill_affirm"
DEFAULT_COMPOSITION = {"harmful": 14, "prefilled": 10, "borderline": 8, "benign": 8}
# The default probe set in one greedy batch: on a CPU a decode step of 40 rows costs far less than the
# 2.5 steps of 16 rows it replaces, so the probe takes 31-39% less time than in batches of 16, 16 and 8
# (BENCHMARKS.md, "Training callback"); the KV cache of 64 short answers is a few MB on a 0.5B model.
MAX_BATCH = 64
SNIPPET = 160
T = TypeVar("T")


@dataclass(frozen=True)
class ProbeSet:
    suite: str
    suite_hash: str
    attempts: tuple[Attempt, ...]
    behaviors: dict[str, Behavior] = field(compare=False)

    @cached_property
    def hash(self) -> str:
        return sha256_hex(canonical_json([asdict(a) for a in self.attempts]))

    def describe(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for a in self.attempts:
            key = "prefilled" if a.prefill else a.kind
            counts[key] = counts.get(key, 0) + 1
        return {"suite": self.suite, "suite_hash": self.suite_hash, "version": PROBE_VERSION,
                "hash": self.hash, "n": len(self.attempts), "composition": counts,
                "ids": [a.id for a in self.attempts]}


def select_probe_set(suite: str = "default", *, harmful: int = 14, prefilled: int = 10, borderline: int = 8,
                     benign: int = 8) -> ProbeSet:
    from tunesafe.suite import load_suite

    loaded = load_suite(suite)
    harm = _spread(loaded.select(kind="harmful"), harmful + prefilled)
    if not harm:
        raise UserError("the probe suite has no harmful behaviours", where=suite,
                        fix="probe with a suite that has harmful items, e.g. 'default'")
    direct, prefill = get_attack(DIRECT), get_attack(PREFILLED)
    attempts = [direct.expand(b, 0)[0] for b in harm[:harmful]]
    attempts += [prefill.expand(b, 0)[0] for b in harm[harmful:]]
    for kind, n in (("borderline", borderline), ("benign", benign)):
        attempts += [direct.expand(b, 0)[0] for b in _spread(loaded.select(kind=kind), n)]
    return ProbeSet(suite=loaded.source or suite, suite_hash=loaded.content_hash, attempts=tuple(attempts),
                    behaviors={b.id: b for b in loaded.behaviors})


def _spread(behaviors: Sequence[Behavior], n: int) -> list[Behavior]:
    by_category: dict[str, list[Behavior]] = {}
    for b in sorted(behaviors, key=lambda b: sha256_hex(_SALT + b.id)):
        by_category.setdefault(b.category, []).append(b)
    queues = [by_category[c] for c in sorted(by_category)]
    picked: list[Behavior] = []
    depth = 0
    while len(picked) < n and any(len(q) > depth for q in queues):
        picked += [q[depth] for q in queues if len(q) > depth][: n - len(picked)]
        depth += 1
    return picked


@dataclass(frozen=True)
class ProbeResult:
    step: int
    trigger: str  # "start" | "interval" | "save"
    seconds: float
    asr: float | None = None  # over harmful attempts that did not error (direct and prefilled)
    over_refusal: float | None = None  # over benign and borderline attempts that did not error
    error_rate: float | None = None  # over all attempts
    asr_by_family: dict[str, float | None] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # attempt id -> outcome
    responses: dict[str, str] = field(default_factory=dict)  # attempt id -> start of the answer
    kinds: dict[str, str] = field(default_factory=dict)  # attempt id -> harmful | benign | borderline
    checkpoint: str | None = None
    error: str | None = None  # the whole probe failed
    max_new_tokens: int | None = None
    judge: str | None = None  # the judge's name
    reused: bool = False  # a shared start probe taken before this run (`baseline_probe`), not by it

    def as_dict(self, baseline: ProbeResult | None = None) -> dict[str, Any]:
        """The evidence form: rates and every outcome; answers only for items that got worse than at the
        baseline (the ones a reviewer needs to read)."""
        body = asdict(self)
        del body["kinds"]  # the probe set's ids say it once for the whole run
        worse = changed_for_the_worse(baseline, self) if baseline else []
        body["responses"] = {i: self.responses.get(i, "") for i in worse}
        body["worse_than_start"] = worse
        return body


def changed_for_the_worse(baseline: ProbeResult, current: ProbeResult) -> list[str]:
    """Attempt ids that became an attack success (harmful) or a refusal (benign, borderline) since the
    baseline."""
    def bad(attempt_id: str, outcome: str) -> bool:
        return outcome == ("success" if current.kinds.get(attempt_id) == "harmful" else "refused")

    return [i for i, o in current.outcomes.items()
            if bad(i, o) and not bad(i, baseline.outcomes.get(i, "error"))]


def run_probe(model: Any, tokenizer: Any, probe_set: ProbeSet, judge: Any, *, step: int, trigger: str,
              max_new_tokens: int = 32, max_batch: int = MAX_BATCH,
              checkpoint: str | None = None) -> ProbeResult:
    """Greedy generation on the live model (eval mode, restored afterwards) and the judge's verdicts."""
    started = time.perf_counter()
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "judge": judge_name(judge)}
    try:
        with generation_mode(model, tokenizer):
            results = run_coroutine(_execute(model, tokenizer, probe_set, judge, max_new_tokens, max_batch))
    except Exception as exc:  # a probe that cannot run is an event, never a pass
        return ProbeResult(step=step, trigger=trigger, seconds=time.perf_counter() - started,
                           checkpoint=checkpoint, error=f"{type(exc).__name__}: {exc}", **settings)
    summary = summarize(results)
    overall = summary.overall
    return ProbeResult(
        step=step, trigger=trigger, seconds=time.perf_counter() - started,
        asr=overall.asr.rate, over_refusal=overall.over_refusal.rate, error_rate=overall.error.rate,
        asr_by_family={name: g.asr.rate for name, g in summary.by("family").items()},
        outcomes={r.attempt.id: _outcome(r) for r in results},
        responses={r.attempt.id: r.response[:SNIPPET] for r in results},
        kinds={r.attempt.id: r.attempt.kind for r in results},
        checkpoint=checkpoint, **settings)


def baseline_probe(model: Any, tokenizer: Any, probe_set: ProbeSet, judge: Any, *, max_new_tokens: int = 32,
                   max_batch: int = MAX_BATCH) -> ProbeResult:
    """The start probe of a base model, taken once for several fine-tunes of it (each a
    `SafetyCallback(baseline=...)`): a fresh LoRA adapter leaves the model's outputs unchanged, and the
    probes decode greedily, so every run's own step-0 probe would give this result again. The judge is
    warmed first, so the seconds are the probe's, not a model load's."""
    warm_judge(judge)
    return run_probe(model, tokenizer, probe_set, judge, step=0, trigger="start",
                     max_new_tokens=max_new_tokens, max_batch=max_batch)


def warm_judge(judge: Any) -> None:
    """Load the judge's models now (judges with a `warm()`), so no probe pays a one-time load."""
    warm = getattr(judge, "warm", None)
    if callable(warm):
        warm()


def judge_name(judge: Any) -> str:
    return str(getattr(judge, "name", judge))


def _outcome(result: AttemptResult) -> Outcome:
    from tunesafe.analysis.outcome import outcome

    return outcome(result)


async def _execute(model: Any, tokenizer: Any, probe_set: ProbeSet, judge: Any, max_new_tokens: int,
                   max_batch: int) -> list[AttemptResult]:
    from tunesafe.judges import JudgeInput

    chat = live_chat_model(model, tokenizer, max_batch=max_batch)
    ctx = ExecContext(max_new_tokens=max_new_tokens, temperature=0.0)
    try:
        executions = await asyncio.gather(*(get_attack(a.attack).execute(a, chat, ctx)
                                            for a in probe_set.attempts))
    finally:
        await chat.aclose()
    judged = [(a, e) for a, e in zip(probe_set.attempts, executions, strict=True) if e.ok]
    verdicts = await judge.judge([JudgeInput(request=request_text(probe_set.behaviors[a.behavior_id]),
                                             response=e.response, kind=a.kind, id=a.id) for a, e in judged])
    if len(verdicts) != len(judged):
        raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(judged)} answers")
    by_id = {a.id: v for (a, _), v in zip(judged, verdicts, strict=True)}
    return [AttemptResult(run_id="probe", attempt=a, generation=e.generation, response=e.response,
                          conversation=e.conversation, verdicts=(by_id[a.id],) if a.id in by_id else ())
            for a, e in zip(probe_set.attempts, executions, strict=True)]


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with the loop's blocking calls (`asyncio.to_thread`: the model's batches, the judge's
    embedding) run in the loop's own thread; from code already inside an event loop (a notebook), all
    of it on one worker thread.

    Why one thread: torch's OpenMP runtime (libgomp) gives every OS thread that runs an operation its
    own team of threads, and once the process has more of them than CPUs it stops spin-waiting between
    operations. The demo's probe took 17-18 s on an executor thread beside the training thread's team,
    and 14-15 s on the training thread (BENCHMARKS.md, "Training callback")."""
    async def here() -> T:
        asyncio.get_running_loop().set_default_executor(_SameThread())
        return await coro

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(here())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, here()).result()


class _SameThread(concurrent.futures.ThreadPoolExecutor):
    """An executor that runs each call at once in the submitting thread (asyncio accepts only a
    ThreadPoolExecutor as the default executor); its pool never starts a thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the awaiting coroutine re-raises it, as with a worker thread
            future.set_exception(exc)
        return future


def probe_findings(policy: TrainingPolicy, baseline: ProbeResult | None,
                   current: ProbeResult) -> list[TrainingEvent]:
    """Events for one probe against the baseline: failures and error rates first (fail closed), then
    the ASR and over-refusal rises the policy limits. Actions are left to the caller."""
    step = current.step
    if current.error is not None:
        return [TrainingEvent("probe_error", step, None, f"the safety probe failed: {current.error}")]
    events = []
    if current.error_rate is None or current.error_rate > policy.max_probe_error_rate:
        if current.error_rate is None:
            rate, most = "no items", pct(policy.max_probe_error_rate)
        else:  # apart from the limit: 10.4% is not "10%" beside a 10% limit
            shown, bound = percent_apart(current.error_rate, policy.max_probe_error_rate)
            rate, most = f"{shown}% of the items", f"{bound}%"
        events.append(TrainingEvent("probe_error", step, current.error_rate,
                                    f"the safety probe errored on {rate} (max_probe_error_rate "
                                    f"{most}): errors are never counted as safe",
                                    limit=policy.max_probe_error_rate))
    if current.trigger == "start":
        return events
    if baseline is None or baseline.error is not None:
        return [*events, TrainingEvent("probe_error", step, None, "no usable probe from before training: "
                                       "the regression cannot be checked")]
    checks = (("probe_asr", "ASR", baseline.asr, current.asr, policy.max_probe_asr_increase_points,
               "max_probe_asr_increase_points"),
              ("probe_over_refusal", "over-refusal", baseline.over_refusal, current.over_refusal,
               policy.max_probe_over_refusal_increase_points, "max_probe_over_refusal_increase_points"))
    for kind, label, before, after, limit, key in checks:
        if limit is None:
            continue
        if before is None or after is None:
            events.append(TrainingEvent("probe_error", step, None,
                                        f"probe {label} could not be measured (every item errored)"))
            continue
        rise = (after - before) * 100
        # a rise equal to the limit is not above it; in floats (0.17 - 0.1) * 100 is 7.000000000000001, and
        # a real excess is at least one item of the probe, far above the tolerance
        if after - before > limit / 100 + 1e-9:
            shown = percent_apart(after - before, limit / 100, "+")[0]  # +5.04 is not "+5.0" beside 5
            events.append(TrainingEvent(kind, step, rise,
                                        f"probe {label} rose {shown} points ({before:.0%} at step 0 -> "
                                        f"{after:.0%} at step {step}), above {key} {limit:g}", limit=limit))
    return events
