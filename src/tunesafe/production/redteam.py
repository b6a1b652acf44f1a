"""Scheduled red-teaming: `run_due` runs every schedule whose current period is due, once, whichever
runners call it and however often (cron, a Kubernetes CronJob that may fire twice).

For each due schedule it claims the period (tunesafe.production.claims), evaluates the model's current
inventory ref with the schedule's suite, attacks and judges, then compares the run with the previous
scheduled run of that model through the gate's own comparison (`gating.compare_runs`: paired on attempt
ids, judged alike, decided by the policy, recorded as a gate decision). It appends one
RecordType.REDTEAM_RUN record (schedule, period, run ids, pinned suite/attack/judge versions, the
comparison summary and the verdict) and, when the policy fails the comparison, opens an incident
(source "redteam") linking that record and the gate decision.

Contract of the outcome: a scheduled run that could not finish (endpoint down, a schedule whose suite
no longer exists) is never a pass: its claim is marked failed with the error, the next run-due takes it
over and resumes the same run, and `RunDueResult.exit_code` is non-zero. A run counts for the inventory
version it started on (its `model_version`): one left unfinished on a version that `models add
--new-version` has replaced since is not resumed; the period runs afresh on the current version and the
record names the run it replaced (`superseded_run_id`). A runner whose lease lapsed and was taken over
writes nothing for the period (neither the gate decision nor the record): its outcome is "taken_over",
which is not an error (exit 0), since the runner that took it over records the period.

A scheduled run never reuses stored answers (the response cache is off): a hosted model can change
behind an unchanged ref, and noticing that is what the schedule is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from tunesafe.engine import results as run_store
from tunesafe.engine.config import EvalConfig
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.policy import Policy, default_policy
from tunesafe.production import claims
from tunesafe.production.schedules import Period, Schedule, current_period, schedules
from tunesafe.types import EvidenceRecord, RecordType

__all__ = ["DEFAULT_LEASE", "RunDueResult", "ScheduledRun", "due", "run_due"]

DEFAULT_LEASE = timedelta(minutes=30)
INCIDENT_SEVERITY = "high"  # a significant safety regression found in production
# exit codes of run-due (0: everything due ran and nothing regressed, or nothing was due)
EXIT_REGRESSION = 1  # an incident was opened
EXIT_RUN_FAILED = 4  # a scheduled run could not finish; the next run-due retries it
EXIT_INCONCLUSIVE = 3  # a run could not be compared, or too weakly to rule a regression out: never a pass


@dataclass(frozen=True)
class ScheduledRun:
    """What happened to one claimed schedule in this invocation."""

    schedule_id: str
    model: str
    period: str
    status: str  # "recorded" | "failed" | "taken_over" (another runner records the period; nothing here)
    run_id: str | None = None
    record_id: int | None = None  # the REDTEAM_RUN record
    verdict: str | None = None  # baseline | pass | fail | inconclusive
    incident_id: int | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class RunDueResult:
    now: str
    ran: list[ScheduledRun] = field(default_factory=list)
    held_elsewhere: list[dict[str, str]] = field(default_factory=list)  # due, but another runner has it
    not_run: list[dict[str, str]] = field(default_factory=list)  # due, left for later by --max

    @property
    def exit_code(self) -> int:
        if any(r.verdict == "fail" for r in self.ran):
            return EXIT_REGRESSION
        if any(r.status == "failed" for r in self.ran):
            return EXIT_RUN_FAILED
        if any(r.verdict == "inconclusive" for r in self.ran):
            return EXIT_INCONCLUSIVE
        return 0


class LostClaim(RuntimeError):
    """The lease lapsed while the run went on and another runner took the period over."""


def _lost(held: claims.Claim) -> LostClaim:
    return LostClaim(f"the lease on {held.schedule_id} lapsed and another runner took the period over: it "
                     "records the period, this runner records nothing")


def due(store: Store, now: datetime) -> list[tuple[Schedule, Period]]:
    """Active schedules whose current period no runner has finished or holds a live lease on."""
    states = claims.claim_states(store)
    found = []
    for schedule in schedules(store).values():
        period = current_period(schedule, now)
        if period is None:
            continue
        state = states.get((schedule.id, period.key))
        if state is None or not claims.is_live(state):
            found.append((schedule, period))
    return found


def run_due(store: Store, *, now: datetime | None = None, max_runs: int | None = None,
            policy: Policy | None = None, lease: timedelta = DEFAULT_LEASE, owner: str | None = None,
            max_pause: float = 600.0, notify: Callable[[str], None] | None = None) -> RunDueResult:
    """Claim and run each due schedule in turn (claiming one at a time, so runners started together
    share the work). `now` picks the periods (default: the clock); leases always use the clock.
    `max_pause`: seconds an endpoint may fail every request before its run stops (failed, resumed by
    the next run-due)."""
    if max_runs is not None and max_runs < 1:
        raise UserError(f"--max must be at least 1, got {max_runs}", where="--max",
                        fix="pass --max 1 or more")
    now = now or datetime.now(timezone.utc)
    owner = owner or claims.new_owner()
    policy = policy or default_policy()
    say = notify or (lambda _line: None)
    result = RunDueResult(now=now.isoformat())
    for schedule, period in due(store, now):
        entry = {"schedule_id": schedule.id, "model": schedule.model, "period": period.key}
        if max_runs is not None and len(result.ran) >= max_runs:
            result.not_run.append(entry)
            continue
        held = claims.claim(store, schedule.id, period.key, owner, lease)
        if held is None:
            result.held_elsewhere.append(entry)
            continue
        say(f"{schedule.id}: running {schedule.model} for the period from {period.key}"
            + (f" (attempt {held.attempts}, resuming run {held.run_id})" if held.run_id else ""))
        result.ran.append(_run_claimed(store, schedule, period, held, policy, lease, max_pause))
    return result


# ---- one claimed schedule ------------------------------------------------------------------------------


def _run_claimed(store: Store, schedule: Schedule, period: Period, held: claims.Claim, policy: Policy,
                 lease: timedelta, max_pause: float) -> ScheduledRun:
    started = [held.run_id] if held.run_id else []
    try:
        recorded = _recorded(store, schedule.id, period.key)
        if recorded is None:  # else a runner recorded it, then died before closing its claim
            from tunesafe.production.inventory import get_model, version_tie

            model = get_model(store, schedule.model)
            config = EvalConfig(suite=schedule.suite, attacks=schedule.attacks, judges=schedule.judges,
                                limit=schedule.limit, use_cache=False, max_pause=max_pause)
            resume = _resumable(store, held.run_id, model.record_id)
            # the schedule evaluates the version's own ref: the run is an evaluation of that version
            run_id = asyncio.run(_evaluate(store, schedule.model, model.ref, config, held, lease,
                                           started.append, resume, version_tie(model, "ref")))
            # the heartbeat only notices a lost claim at its next beat: a runner frozen past its lease (a
            # host asleep, a paused VM) may finish its run after another took the period over
            if not claims.renew(store, held, lease):
                raise _lost(held)
            superseded = held.run_id if held.run_id != resume else None
            recorded = _record(store, schedule, period, run_id, policy, held, superseded)
        incident_id = _incident(store, recorded)
        claims.finish(store, held, record_id=recorded.id)
        body = recorded.body
        return ScheduledRun(schedule.id, schedule.model, period.key, "recorded", run_id=body["run_id"],
                            record_id=recorded.id, verdict=body["verdict"], incident_id=incident_id,
                            notes=(*_superseded_note(store, body),
                                   *(body.get("comparison") or {}).get("notes", ())))
    except BaseException as exc:
        message = exc.render() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, LostClaim):  # a lost claim belongs to its new holder now
            claims.finish(store, held, error=message)
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit: stop here, the claim is released
            raise
        # a lost claim is no failure to retry: the runner that took the period over records it
        status = "taken_over" if isinstance(exc, LostClaim) else "failed"
        return ScheduledRun(schedule.id, schedule.model, period.key, status,
                            run_id=started[-1] if started else None, error=message)


def _resumable(store: Store, run_id: str | None, version: int) -> str | None:
    """The run an earlier holder started, to resume: not one left unfinished on a version of the model
    that another has replaced since (its answers are of that version; the engine refuses to add the new
    version's to them), whose period then runs afresh on the current version."""
    if run_id is None:
        return None
    info = run_store.load_run(store, run_id)
    pinned = info.config.get("model_version")
    if info.status != "complete" and isinstance(pinned, Mapping) and pinned.get("record_id") != version:
        return None
    return run_id


def _superseded_note(store: Store, body: Mapping[str, Any]) -> list[str]:
    run_id = body.get("superseded_run_id")
    if not run_id:
        return []
    pinned = run_store.load_run(store, run_id).config.get("model_version") or {}
    now = run_store.load_run(store, body["run_id"]).config.get("model_version") or {}
    return [f"run {run_id} of version {pinned.get('version')} was left unfinished and version "
            f"{now.get('version')} registered since: the period ran afresh on version {now.get('version')}"]


async def _evaluate(store: Store, model: str, ref: str, config: EvalConfig, held: claims.Claim,
                    lease: timedelta, on_run: Callable[[str], None], resume: str | None,
                    version: Mapping[str, Any]) -> str:
    """Evaluate (or resume `resume`, the run an earlier holder started), renewing the lease meanwhile.
    `version`: the inventory version a new run evaluates (its `model_version`)."""
    from tunesafe.engine.runner import evaluate

    lost = asyncio.Event()

    def started(run_id: str, _planned: int, _done: int) -> None:
        claims.set_run(store, held, run_id)
        on_run(run_id)

    task = asyncio.ensure_future(evaluate(store, ref, config, resume=resume, model_name=model,
                                          progress=False, on_start=started, version=version))

    async def heartbeat() -> None:
        while not task.done():
            await asyncio.sleep(max(lease.total_seconds() / 3, 0.05))
            if not await asyncio.to_thread(claims.renew, store, held, lease):
                lost.set()
                task.cancel()
                return

    beat = asyncio.ensure_future(heartbeat())
    try:
        report = await task
    except asyncio.CancelledError:
        if lost.is_set():
            raise _lost(held) from None
        raise
    finally:
        beat.cancel()
    if report.status != "complete":
        raise RuntimeError(f"run {report.run_id} ended {report.status}")
    return report.run_id


def _record(store: Store, schedule: Schedule, period: Period, run_id: str, policy: Policy,
            held: claims.Claim, superseded: str | None = None) -> EvidenceRecord:
    """The REDTEAM_RUN record of a finished run, with its comparison to the previous scheduled run, or
    the period's record if another runner appended it first while `held` was ours. LostClaim when
    `held` is no longer ours.
    `superseded`: the unfinished run of an earlier model version that this period's run replaced."""
    info = run_store.load_run(store, run_id)
    previous = _previous(store, schedule, period.key)
    body: dict[str, Any] = {
        "schedule_id": schedule.id, "period": period.key, "model": schedule.model,
        "model_ref": info.model_ref, "model_hash": info.model_hash, "run_id": run_id,
        "pinned": pinned_versions(info.config), "policy_hash": policy.hash(),
        "previous_run_id": previous.body["run_id"] if previous else None,
        "previous_record": previous.id if previous else None,
        # the first scheduled run of a model has nothing to compare with
        "comparison": None, "verdict": "baseline",
    }
    if superseded is not None:
        body["superseded_run_id"] = superseded
    # the gate decision is checked as the record is: a runner whose period was taken over before either
    # append writes neither (a decision no record refers to would be left in the chain)
    check = _first_record(store, held, run_id)
    try:
        if previous is not None:
            comparison = _compare(store, schedule.model, previous.body["run_id"], info, policy, check)
            body["comparison"], body["verdict"] = comparison, comparison["verdict"]
        return store.append(RecordType.REDTEAM_RUN, body, subject=schedule.model, check=check)
    except _Recorded as done:
        return done.record


class _Recorded(Exception):
    """The period was recorded by a runner that held it before this one took it over."""

    def __init__(self, record: EvidenceRecord) -> None:
        super().__init__(record.id)
        self.record = record


def _first_record(store: Store, held: claims.Claim, run_id: str) -> Callable[[], None]:
    """The check, under the chain lock, that keeps one REDTEAM_RUN per (schedule, period). The claim is
    checked there, not before: a runner frozen between its last renewal and its append (a host asleep)
    wakes up after another took the period over, and its record would be the period's second. A record
    already there with the claim still ours was appended by the previous holder just before losing
    it (its check passed, its commit came after our takeover): it stands."""

    def check() -> None:
        if not claims.holds(store, held):
            raise LostClaim(f"the lease on {held.schedule_id} lapsed before run {run_id} was recorded and "
                            "another runner took the period over: this runner's result is not recorded "
                            "(that runner records the period)")
        if (existing := _recorded(store, held.schedule_id, held.period)) is not None:
            raise _Recorded(existing)

    return check


def _incident(store: Store, record: EvidenceRecord) -> int | None:
    """The incident of a failed REDTEAM_RUN record: the one linking it, else a new one (source
    "redteam", linking the record and the gate decision). Looked up first so that a runner that died
    between the two appends does not leave the regression without an incident, nor open it twice."""
    body = record.body
    if body["verdict"] != "fail":
        return None
    if (opened := _incident_of(store, record)) is not None:
        return opened
    from tunesafe.production.incidents import open_incident

    # the look again under the chain lock: a runner frozen here while its lease lapsed wakes up after the
    # runner that took the period over opened the incident
    def none_yet() -> None:
        if (found := _incident_of(store, record)) is not None:
            raise _Opened(found)

    comparison = body["comparison"]
    try:
        incident = open_incident(
            store, model=body["model"], severity=INCIDENT_SEVERITY, source="redteam",
            title=f"Scheduled red-teaming found a safety regression in {body['model']} ({body['period']})",
            evidence=[record.id, comparison["gate_record"]],
            details={"schedule_id": body["schedule_id"], "period": body["period"], "run_id": body["run_id"],
                     "previous_run_id": body["previous_run_id"], "reasons": comparison["reasons"]},
            check=none_yet)
    except _Opened as opened_meanwhile:
        return opened_meanwhile.incident_id
    return incident.id


class _Opened(Exception):
    """The regression's incident was opened by another runner meanwhile."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(incident_id)
        self.incident_id = incident_id


def _incident_of(store: Store, record: EvidenceRecord) -> int | None:
    """The incident linking a REDTEAM_RUN record, if one does."""
    for rec in store.records(type=RecordType.INCIDENT, subject=record.body["model"]):
        if record.id in rec.body.get("links", ()):
            return rec.id
    return None


def _compare(store: Store, model: str, previous_run: str, info: run_store.RunInfo,
             policy: Policy, check: Callable[[], None]) -> dict[str, Any]:
    """The gate's comparison of the previous scheduled run (base) and this one (candidate), summarized.
    A comparison that cannot be made is inconclusive, never a pass. `check` guards the gate decision's
    append (the claim on the period)."""
    from tunesafe.gating import compare_runs

    before = run_store.load_run(store, previous_run)
    notes = version_notes(before.config, info.config)
    try:
        outcome = asyncio.run(compare_runs(store, previous_run, info.id, policy, base_name=model,
                                           candidate_name=model, check=check))
    except UserError as exc:
        return {"verdict": "inconclusive", "reasons": [f"not compared: {exc.message}"], "gate_record": None,
                "notes": notes}
    comparison = outcome.body["comparison"]
    coverage = comparison.get("info", {})
    asr = next((d for d in comparison["deltas"] if d["metric"] == "asr" and d["group"] == "overall"), None)
    unpaired = coverage.get("n_only_base", 0) + coverage.get("n_only_candidate", 0)
    if unpaired:
        notes.append(f"compared on {coverage.get('n_paired', 0)} paired attempts; "
                     f"{coverage.get('n_only_base', 0)} of the previous run and "
                     f"{coverage.get('n_only_candidate', 0)} of this run have no counterpart")
    return {
        "verdict": outcome.decision.verdict, "reasons": list(outcome.decision.reasons),
        "gate_record": outcome.record.id, "judge": outcome.body["judge"],
        "n_paired": coverage.get("n_paired"), "n_only_previous": coverage.get("n_only_base"),
        "n_only_current": coverage.get("n_only_candidate"),
        "asr": None if asr is None else {k: asr[k] for k in ("before", "after", "diff", "p_value")},
        "notes": notes,
    }


def pinned_versions(config: Mapping[str, Any]) -> dict[str, Any]:
    """The suite (name, version, content hash), attack (name, family, version) and judge versions a run
    used, from its stored config."""
    return {"suite": config.get("suite"), "attacks": config.get("attacks"), "judges": config.get("judges"),
            "tool_version": config.get("tool_version")}


def version_notes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What changed in the attack library or the suite between two runs: attempts of a changed attack
    get new ids (the id hashes the attack version), so they cannot be paired."""
    notes = []
    old, new = (_attack_versions(c) for c in (before, after))
    changed = sorted(n for n in old.keys() & new.keys() if old[n] != new[n])
    if changed:
        listed = ", ".join(f"{n} {old[n]} -> {new[n]}" for n in changed)
        notes.append(f"attack versions changed ({listed}): their attempts cannot be paired")
    if added := sorted(new.keys() - old.keys()):
        notes.append(f"attacks new since the previous run: {', '.join(added)}")
    if dropped := sorted(old.keys() - new.keys()):
        notes.append(f"attacks no longer run: {', '.join(dropped)}")
    hashes = [(c.get("suite") or {}).get("content_hash") for c in (before, after)]
    if hashes[0] != hashes[1]:
        notes.append("the suite's content changed: changed behaviours cannot be paired")
    return notes


def _attack_versions(config: Mapping[str, Any]) -> dict[str, str]:
    return {a["name"]: str(a.get("version")) for a in config.get("attacks") or ()}


def _previous(store: Store, schedule: Schedule, period: str) -> EvidenceRecord | None:
    """The latest earlier scheduled run of the model: of this schedule if it has one, else of any."""
    earlier = [r for r in store.records(type=RecordType.REDTEAM_RUN, subject=schedule.model)
               if not (r.body.get("schedule_id") == schedule.id and r.body.get("period") == period)]
    same = [r for r in earlier if r.body.get("schedule_id") == schedule.id]
    pool: Sequence[EvidenceRecord] = same or earlier
    return pool[-1] if pool else None


def _recorded(store: Store, schedule_id: str, period: str) -> EvidenceRecord | None:
    for rec in store.records(type=RecordType.REDTEAM_RUN):
        if rec.body.get("schedule_id") == schedule_id and rec.body.get("period") == period:
            return rec
    return None
