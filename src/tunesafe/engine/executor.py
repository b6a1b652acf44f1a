"""Executing a run's pending attempts: `concurrency` workers pull attempts from one shared iterator (so at
most that many are in flight; local backends micro-batch what arrives together), one judge task judges
whatever has queued as a batch, and each result goes to the batched writer as it completes.

Fail closed: an attack that raises, a backend error or a judge error is recorded as an error (never a
refusal or a safe answer); errored generations are not judged. A generation the deployment blocked
(provider filter, refusal field) is not judged either: each judge's verdict says "blocked" (refused).

An endpoint that fails as a whole pauses the run (the backend's open breaker holds the workers; the
progress line says so). If it stays down past the backend's max_pause, the backend raises
EndpointUnavailable: the workers stop, what finished is judged and stored, and the error propagates
(the runner marks the run interrupted and resumable).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.progress import RunProgress
from tunesafe.engine.targets import Planned
from tunesafe.errors import EndpointUnavailable
from tunesafe.types import Attempt, AttemptResult, Behavior, Generation, Verdict

if TYPE_CHECKING:
    from tunesafe.attacks.base import Execution
    from tunesafe.judges.base import Judge
    from tunesafe.models.base import ChatModel

log = logging.getLogger(__name__)

JUDGE_BATCH = 64
PAUSE_POLL_S = 0.5  # how often the progress line looks at the endpoints' breakers


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class ResultSink(Protocol):
    def add(self, result: AttemptResult) -> None: ...


class ResultRecorder:
    """Takes finished results: the writer, the session's counts and the progress line. Shared by the local
    executor and the distributed one (engine/distributed.py), so both count alike."""

    def __init__(self, writer: ResultSink) -> None:
        self.writer = writer
        self.progress: RunProgress | None = None
        self.executed = 0
        self.errors = 0
        self.completion_tokens = 0
        self.prompt_tokens = 0

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


class Executor(ResultRecorder):
    def __init__(self, target: ChatModel, attacker: ChatModel | None, judges: Sequence[Judge],
                 planned: Planned, config: EvalConfig, frozen: Mapping[str, Mapping[str, Any]],
                 writer: ResultSink, run_id: str) -> None:
        from tunesafe.attacks.base import ExecContext

        super().__init__(writer)
        self.target = target
        self.endpoints = [m for m in (target, attacker) if m is not None and hasattr(m, "paused")]
        self.judges = judges
        self.impls = {a.meta.name: a for a in (*planned.attacks, *planned.benign_attacks)}
        self.behaviors = planned.behaviors
        self.frozen = frozen
        self.run_id = run_id
        self.context = ExecContext(attacker=attacker, judge=judges[0], max_new_tokens=config.max_new_tokens,
                                   temperature=config.temperature, seed=config.seed)
        self.concurrency = config.concurrency

    async def run(self, pending: Sequence[Attempt]) -> None:
        todo = iter(pending)
        queue: asyncio.Queue[tuple[Attempt, Execution] | None] = asyncio.Queue(maxsize=4 * JUDGE_BATCH)

        async def worker() -> None:
            for attempt in todo:  # one shared iterator: at most `concurrency` attempts in flight
                await queue.put((attempt, await self.execute(attempt)))

        judge_task = asyncio.create_task(self.judge_loop(queue))
        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(pending)))]
        producing = asyncio.gather(*workers)
        watcher = asyncio.create_task(self.watch_pause())
        try:
            # The judge task only returns after the end marker, so if it is done first it failed (e.g. the
            # store went away): raise now rather than leave the workers blocked on a full queue.
            either: set[asyncio.Future[Any]] = {judge_task, producing}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if judge_task.done():
                judge_task.result()
            try:
                await producing
            except EndpointUnavailable:
                # Stop the other workers (their attempts stay pending for the resume), keep what finished.
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                await queue.put(None)
                await judge_task
                raise
            await queue.put(None)
            await judge_task
        finally:
            for task in (*workers, judge_task, watcher):
                task.cancel()
            # On Ctrl-C the gather ends with the workers' CancelledError after this frame is gone; read it
            # then, or asyncio logs "exception was never retrieved" under the clean "interrupted" line.
            producing.add_done_callback(_retrieve)

    async def execute(self, attempt: Attempt) -> Execution:
        from tunesafe.attacks.base import Execution

        impl = self.impls[attempt.attack]
        ctx = replace(self.context, frozen=self.frozen.get(attempt.id))
        started = time.perf_counter()
        try:
            return await impl.execute(attempt, self.target, ctx)
        except EndpointUnavailable:
            raise  # the endpoint, not this attempt: stop the run resumably
        except Exception as exc:  # an attack bug must cost one attempt (as an error), not the run
            log.debug("attack %s failed on %s", attempt.attack, attempt.id, exc_info=True)
            return Execution.failed(f"attack {attempt.attack} failed: {type(exc).__name__}: {exc}",
                                    attempt.messages, latency_s=time.perf_counter() - started)

    async def watch_pause(self) -> None:
        """Tell the progress line while an endpoint's breaker holds the workers."""
        if self.progress is None or not self.endpoints:
            return
        while True:
            waits = [w for w in (m.paused() for m in self.endpoints) if w is not None]
            self.progress.paused(min(waits) if waits else None)
            await asyncio.sleep(PAUSE_POLL_S)

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
        verdicts = await judge_answers(self.judges, [(a, e.generation, e.response) for a, e in batch],
                                       self.behaviors, decided={a.id: e.frozen for a, e in batch})
        return [AttemptResult(run_id=self.run_id, attempt=a, generation=e.generation, response=e.response,
                              conversation=e.conversation, verdicts=verdicts[a.id], frozen=e.frozen)
                for a, e in batch]


def prompt_size(attempt: Attempt) -> tuple[int, str]:
    return sum(len(m.content) for m in attempt.messages) + len(attempt.prefill or ""), attempt.id


async def judge_answers(judges: Sequence[Judge], answers: Sequence[tuple[Attempt, Generation, str]],
                        behaviors: Mapping[str, Behavior],
                        decided: Mapping[str, Mapping[str, Any]] | None = None,
                        ) -> dict[str, tuple[Verdict, ...]]:
    """Verdicts per attempt id for (attempt, generation, response) triples, as a run stores them: an
    errored generation gets none (it is an error, never judged), a blocked one a blocked verdict per
    judge unless a filter cut it after text the user saw (judged), and every answer is judged in one
    batch per judge. The judges read the behaviour as the request (a contextual one with its document,
    as the model had it), not the attack-wrapped prompt. Shared by runs and re-judges, so both judge
    alike.
    `decided` maps attempt ids to their frozen records: one holding an environment's verdict (the agent
    families) is not judged as text, each judge records that verdict instead (`decided_verdicts`)."""
    from tunesafe.attacks.base import request_text
    from tunesafe.judges.base import JudgeInput

    settled = {a.id: v for a, g, _ in answers if g.ok
               and (v := decided_verdicts(judges, (decided or {}).get(a.id))) is not None}
    answered = [(a, r) for a, g, r in answers
                if g.ok and (g.blocked is None or g.cut_by_filter) and a.id not in settled]
    inputs = [JudgeInput(request=request_text(behaviors[a.behavior_id]), response=r, kind=a.kind, id=a.id)
              for a, r in answered]
    per_attempt: dict[str, list[Verdict]] = {
        a.id: [blocked_verdict(j, g.blocked) for j in judges]
        if g.ok and g.blocked is not None and not g.cut_by_filter else []
        for a, g, _ in answers}
    for judge in judges:
        verdicts = await judge_safely(judge, inputs) if inputs else []
        for (attempt, _), verdict in zip(answered, verdicts, strict=True):
            per_attempt[attempt.id].append(verdict)
    return {k: settled.get(k, tuple(v)) for k, v in per_attempt.items()}


def decided_verdicts(judges: Sequence[Judge], frozen: Mapping[str, Any] | None) -> tuple[Verdict, ...] | None:
    """The verdict an environment decided (frozen["verdict"]: refused, harmful, degenerate, by, evidence),
    recorded under every judge so that comparisons by judge pair it; None when the attempt holds none."""
    decided = (frozen or {}).get("verdict")
    if not isinstance(decided, Mapping):
        return None
    evidence = {"decided_by": decided.get("by"), **dict(decided.get("evidence") or {})}
    return tuple(Verdict(judge=j.name, judge_version=j.version, refused=bool(decided["refused"]),
                         harmful=bool(decided["harmful"]), degenerate=bool(decided.get("degenerate")),
                         evidence=evidence) for j in judges)


def blocked_verdict(judge: Judge, reason: str) -> Verdict:
    """What a judge records for an attempt the deployment blocked: not judged as an answer (there is
    none), counted as refused, the reason kept as evidence. The outcome comes from the generation."""
    return Verdict(judge=judge.name, judge_version=judge.version, refused=True, harmful=False,
                   evidence={"blocked": reason})


async def judge_safely(judge: Judge, inputs: Sequence[Any]) -> list[Verdict]:
    """A judge that raises or answers the wrong number of items yields error verdicts (fail closed);
    a judge whose endpoint stays down stops the run (EndpointUnavailable) like the target's would."""
    from tunesafe.judges.base import error_verdict

    try:
        verdicts = await judge.judge(inputs)
    except EndpointUnavailable:
        raise
    except Exception as exc:
        log.debug("judge %s failed", judge.name, exc_info=True)
        return [error_verdict(judge, f"{type(exc).__name__}: {exc}") for _ in inputs]
    if len(verdicts) != len(inputs):
        return [error_verdict(judge, f"returned {len(verdicts)} verdicts for {len(inputs)} items")
                for _ in inputs]
    return list(verdicts)
