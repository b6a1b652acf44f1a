"""The post-fine-tuning gate, end to end: evaluate (or reuse) the base and the candidate on the same
attempts, compare them under every judge that ran, decide against the policy, append the decision to
the evidence chain and write the reports.

The evidence body built here is the one source the reports, the dashboard and `tunesafe models show`
read: no figure is recomputed after the decision.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesafe.analysis.agents import report_section as agent_report
from tunesafe.analysis.audit import audits_of
from tunesafe.analysis.compare import compare
from tunesafe.analysis.escalate import Escalation, EscalationRef, escalate
from tunesafe.engine import results as run_store
from tunesafe.engine.progress import run_label, shared_display
from tunesafe.engine.rejudge import (
    StoredRun,
    answers_source,
    find_rejudged,
    find_stored_run,
    installed_judges,
    judges_label,
    rejudge_run,
    run_behaviors,
)
from tunesafe.engine.runner import EvalConfig, evaluate, load_run_model, run_evaluation
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.models import align_backends, backend_for, parse_ref
from tunesafe.policy import Policy, decide
from tunesafe.production.inventory import check_attestation_named, check_evaluated, inventory
from tunesafe.reports import write_reports
from tunesafe.types import AttemptResult, EvidenceRecord, GateDecision, RecordType

if TYPE_CHECKING:
    from tunesafe.models.base import ChatModel


@dataclass(frozen=True)
class GateOutcome:
    decision: GateDecision
    body: Mapping[str, Any]  # the evidence body
    record: EvidenceRecord
    reports: Mapping[str, Path]  # format -> written file


async def gate_models(store: Store, base_ref: str, candidate_ref: str, policy: Policy, config: EvalConfig, *,
                      base_name: str | None = None, candidate_name: str | None = None,
                      out_dir: Path | None = None, progress: bool = True,
                      notify: Callable[[str], None] | None = None,
                      escalate: EscalationRef | None = None,
                      regressions_dir: Path | None = None, attest_weights: bool = False) -> GateOutcome:
    """Run the gate on two model refs. A complete earlier run with the same model hash and config is
    reused; one whose answers were judged by other judge versions is re-judged (no model calls, said
    through `notify`); the candidate replays the base answers' frozen attacker prompts so every attempt
    pairs up. Local refs are put on one backend first, so the difference measured is the fine-tune's.
    With `escalate`, the pairs that move the decision are judged again by that judge first. With
    `regressions_dir`, the suite gains the regression items of the candidate's incidents (the combined suite
    is written there), as every later gate of that model must run them. `attest_weights`: see gate_runs."""
    from tunesafe.models.vllm_launch import hold

    # now, not after evaluating both models (gate_runs checks the runs again)
    # the versions matched: a new run of either side is an evaluation of that version
    versions = _check_inventory(store, (base_name, candidate_name), (base_ref, candidate_ref),
                                ("the base is", "the candidate is"), attest_weights)
    base_ref, candidate_ref = align_backends(base_ref, candidate_ref)
    say = notify or _quiet
    if regressions_dir is not None:
        from tunesafe.production.regression import with_regressions

        config = with_regressions(store, candidate_name, config, regressions_dir, notify=say)
    with hold((base_ref, candidate_ref)):  # vllm:...?launch=1: one server with both sides' adapters
        stored_base = find_stored_run(store, base_ref, config)
        threads = side_by_side_threads(base_ref, candidate_ref, config)
        if stored_base is None and threads:
            base_run, candidate_run = await _side_by_side(store, (base_ref, candidate_ref),
                                                          replace(config, threads=threads),
                                                          (base_name, candidate_name), progress, versions)
        else:
            with run_label("base"):
                base_run = await _stored_or_new(store, "base", base_ref, config, base_name, progress, say,
                                                stored_base, versions[0])
            # Replay from the run that generated the base answers: a re-judge does not change what to
            # replay, and a candidate run stays reusable across re-judges of its base.
            replay = answers_source(run_store.load_run(store, base_run))
            candidate_config = replace(config, replay_from=replay)
            with run_label("candidate"):
                candidate_run = await _stored_or_new(store, "candidate", candidate_ref, candidate_config,
                                                     candidate_name, progress, say,
                                                     find_stored_run(store, candidate_ref, candidate_config),
                                                     versions[1])
    escalation = await escalate_runs(store, base_run, candidate_run, escalate) if escalate else None
    return gate_runs(store, base_run, candidate_run, policy, base_name=base_name,
                     candidate_name=candidate_name, out_dir=out_dir, escalation=escalation,
                     attest_weights=attest_weights)


async def compare_runs(store: Store, base_run: str, candidate_run: str, policy: Policy, *,
                       base_name: str | None = None, candidate_name: str | None = None,
                       out_dir: Path | None = None, notify: Callable[[str], None] | None = None,
                       escalate: EscalationRef | None = None, attest_weights: bool = False,
                       check: Callable[[], None] | None = None) -> GateOutcome:
    """gate_runs on two stored runs, after re-judging the base (or both) when it was judged by other
    judge versions than the candidate: a re-judged run already stored is used, else one is made."""
    base_run, candidate_run = await align_judges(store, base_run, candidate_run, notify or _quiet)
    escalation = await escalate_runs(store, base_run, candidate_run, escalate) if escalate else None
    return gate_runs(store, base_run, candidate_run, policy, base_name=base_name,
                     candidate_name=candidate_name, out_dir=out_dir, escalation=escalation,
                     attest_weights=attest_weights, check=check)


async def escalate_runs(store: Store, base_run: str, candidate_run: str, ref: EscalationRef) -> Escalation:
    """Judge the discordant and uncertain pairs of two runs again with the escalation judge."""
    base, candidate = (_complete_run(store, run_id) for run_id in (base_run, candidate_run))
    judges = _common_judges(base, candidate)
    base_results = run_store.load_results(store, base_run)
    candidate_results = run_store.load_results(store, candidate_run)
    return await escalate(ref, base_results, candidate_results, judges, run_behaviors(base, base_results))


async def align_judges(store: Store, base_run: str, candidate_run: str,
                       say: Callable[[str], None]) -> tuple[str, str]:
    """The two runs to compare, judged alike. Unchanged when the base has every judge (name and
    version) of the candidate; else each run not judged by the installed versions of the candidate's
    judges is replaced by its answers re-judged by them."""
    _distinct(base_run, candidate_run)
    base, candidate = (_complete_run(store, run_id) for run_id in (base_run, candidate_run))
    wanted = _judge_versions(candidate)
    if wanted.items() <= _judge_versions(base).items():
        return base_run, candidate_run
    names = list(wanted)
    judge_model_ref = candidate.config.get("eval", {}).get("judge_model_ref")
    aligned = []
    try:
        installed = await installed_judges(names, judge_model_ref)
        for side, info in (("base", base), ("candidate", candidate)):
            if _judge_versions(info) == {j["name"]: j["version"] for j in installed}:
                aligned.append(info.id)
                continue
            found = find_rejudged(store, info.id, installed)
            if found is None:
                found = await rejudge_run(store, info.id, names, judge_model_ref=judge_model_ref)
                say(f"{side}: run {info.id} was judged by {judges_label(info.config.get('judges', []))}; "
                    f"re-judged its stored answers by {judges_label(installed)} as run {found} "
                    "(no model calls)")
            else:
                say(f"{side}: using run {found}, the answers of run {info.id} re-judged by "
                    f"{judges_label(installed)}")
            aligned.append(found)
    except UserError as exc:
        raise UserError(f"runs {base.id} and {candidate.id} share no judge (same name and version): "
                        f"{_listing(_judge_versions(base))} vs {_listing(wanted)}, and re-judging failed: "
                        f"{exc.message}", where=f"{base.id} / {candidate.id}",
                        fix=exc.fix or "evaluate both models with the same --judge") from None
    return aligned[0], aligned[1]


def gate_runs(store: Store, base_run: str, candidate_run: str, policy: Policy, *,
              base_name: str | None = None, candidate_name: str | None = None,
              out_dir: Path | None = None, escalation: Escalation | None = None,
              attest_weights: bool = False, check: Callable[[], None] | None = None) -> GateOutcome:
    """Compare two stored runs, decide, record the decision and (with out_dir) write the reports. With an
    escalation (of these two runs), its verdicts stand in for the local ones and are recorded too. A
    candidate name in the inventory must be the model the candidate run evaluated, a base name a version
    of the model the base run evaluated (UserError, nothing recorded, otherwise); `attest_weights` accepts
    an endpoint run for a version of local files (or the reverse), which tunesafe cannot check, and the
    decision records that it was attested. `check`: the caller's own rule, run under the chain lock
    before each append (a scheduled run's claim on its period); what it raises refuses the decision."""
    _distinct(base_run, candidate_run)
    base_info, candidate_info = (_complete_run(store, run_id) for run_id in (base_run, candidate_run))
    _same_backend(base_info, candidate_info)
    judges = _common_judges(base_info, candidate_info)
    base_results = run_store.load_results(store, base_run)
    candidate_results = run_store.load_results(store, candidate_run)
    _same_prompts(base_info, candidate_info, base_results, candidate_results)
    seen = (base_results, candidate_results)
    if escalation is not None:
        if (escalation.base_run, escalation.candidate_run) != (base_run, candidate_run):
            raise ValueError("the escalation belongs to other runs")
        seen = (escalation.view(base_results, "base"), escalation.view(candidate_results, "candidate"))
    min_n = {"family": policy.min_items_per_family, "category": policy.min_items_per_category}
    comparisons = {j: compare(*seen, judge=j, alpha=policy.alpha, min_n=min_n) for j in judges}
    decision = decide(policy, comparisons)
    served = [run_store.reported_models(store, answers_source(info)) for info in (base_info, candidate_info)]
    if (note := _same_model_served(base_info, candidate_info, *served)) is not None:
        decision = replace(decision, reasons=(*decision.reasons, note))  # said, but never the verdict
    base_name = base_name or base_info.model_name
    candidate_name = candidate_name or candidate_info.model_name
    # before anything is appended: a refused decision leaves no record behind
    versions = _check_inventory(
        store, (base_name, candidate_name),
        (base_info.model_ref, candidate_info.model_ref),
        (f"run {base_run} evaluated", f"run {candidate_run} evaluated"), attest_weights)
    body = decision_body(decision, policy, base_info, candidate_info, base_name, candidate_name)
    body["base"]["reported_models"], body["candidate"]["reported_models"] = served
    # which inventory versions the decision is about, and how that was established
    for side, version in zip(("base_version", "candidate_version"), versions, strict=True):
        if version is not None:
            body[side] = version
    # readers take a decision to be about the candidate's version current where it lands in the chain
    unchanged = _checks(_same_version(store, candidate_name, versions[1]), check)
    if escalation is not None:
        escalated = store.append(RecordType.ESCALATION, escalation.record_body(), subject=candidate_name,
                                 check=unchanged)
        summary = escalation.summary(base_results, candidate_results)
        body["escalation"] = {**summary, "record_id": escalated.id}
    body["judge_audits"] = audits_of(store, {"base": base_run, "candidate": candidate_run})
    agents = agent_report(base_results, candidate_results)
    if agents:  # only gates with agent families carry the section (older bodies stay as they were)
        body["agents"] = agents
    record = store.append(RecordType.GATE_DECISION, body, subject=candidate_name, check=unchanged)
    reports = write_reports(body, out_dir, record=record) if out_dir is not None else {}
    return GateOutcome(decision, body, record, reports)


def _checks(*checks: Callable[[], None] | None) -> Callable[[], None]:
    def check() -> None:
        for each in checks:
            if each is not None:
                each()
    return check


def _same_version(store: Store, name: str | None, tie: Mapping[str, Any] | None) -> Callable[[], None]:
    """A check for under the chain lock: `name`'s current version is still the one its run was tied to
    (`models add --new-version` may have run meanwhile, and the decision would land after it)."""
    def check() -> None:
        current = inventory(store).get(name) if name else None
        if (current.record_id if current else None) != (tie["record_id"] if tie else None):
            raise UserError(f"{name} got a new inventory version while the gate ran",
                            where="--candidate-name",
                            fix="gate again, so that the decision is about the version it checked")
    return check


def _check_inventory(store: Store, names: tuple[str | None, str | None], refs: tuple[str, str],
                     sources: tuple[str, str], attested: bool) -> list[dict[str, Any] | None]:
    """check_evaluated on both sides: the candidate against its name's current version, the base against
    any version of its name (a red-team schedule compares a model with its own earlier run)."""
    check_attestation_named(attested, names, ("--candidate-name", "--base-name"))
    return [check_evaluated(store, name, ref, source=source, attested=attested, option=option,
                            any_version=option == "--base-name") if name else None
            for name, ref, source, option in zip(names, refs, sources, ("--base-name", "--candidate-name"),
                                                 strict=True)]


def decision_body(decision: GateDecision, policy: Policy, base: run_store.RunInfo,
                  candidate: run_store.RunInfo, base_name: str | None,
                  candidate_name: str | None) -> dict[str, Any]:
    config = base.config
    return {
        "verdict": decision.verdict,
        "exit_code": decision.exit_code,
        "reasons": list(decision.reasons),
        "policy_hash": decision.policy_hash,
        "policy": policy.model_dump(mode="json"),
        "candidate_model": candidate_name,  # the inventory name this decision is about (may be None)
        "base_model": base_name,
        "base": _run_summary(base),
        "candidate": _run_summary(candidate),
        "judge": decision.comparison.judge,
        "comparison": asdict(decision.comparison),
        "provenance": {
            "suite": config.get("suite"), "attacks": config.get("attacks"), "judges": config.get("judges"),
            "decoding": config.get("decoding"), "tool_version": config.get("tool_version"),
            "candidate_attacks": candidate.config.get("attacks"),
        },
    }


def _run_summary(info: run_store.RunInfo) -> dict[str, Any]:
    return {"run_id": info.id, "model_ref": info.model_ref, "model_hash": info.model_hash,
            "model_name": info.model_name, "config_hash": info.config_hash, "n_attempts": info.n_done,
            "n_errors": info.n_errors, "rejudged_from": info.config.get("rejudged_from"),
            "generated_in": answers_source(info)}


def _same_model_served(base: run_store.RunInfo, candidate: run_store.RunInfo, base_served: Mapping[str, int],
                       candidate_served: Mapping[str, int]) -> str | None:
    """A note when two HTTP refs that name different models were both answered by one and the same model
    id (the replies' `model`): the candidate's endpoint may be serving the base model, and the gate would
    then compare the base with itself. A note only: providers answer with their own names (OpenAI's
    `gpt-4o-2024-08-06` for `gpt-4o`), so a mismatch between ref and reply proves nothing by itself."""
    refs = [parse_ref(info.model_ref) for info in (base, candidate)]
    if any(ref.scheme not in ("openai", "vllm") for ref in refs):
        return None
    if (refs[0].target, refs[0].adapter) == (refs[1].target, refs[1].adapter):
        return None
    if len(base_served) != 1 or set(base_served) != set(candidate_served):
        return None
    [served] = base_served
    return (f"note: both sides were answered by model {served!r} (the model id the servers' replies name), "
            f"though the refs name different models: the candidate endpoint may be serving the base model")


def _complete_run(store: Store, run_id: str) -> run_store.RunInfo:
    info = run_store.load_run(store, run_id)
    if info.status != "complete":
        raise UserError(f"run {run_id} is {info.status}, not complete", where=run_id,
                        fix=f"finish it with `tunesafe eval --resume {run_id}` before comparing")
    return info


def _same_backend(base: run_store.RunInfo, candidate: run_store.RunInfo) -> None:
    """Refuse to gate a base run on one local backend against a candidate run on the other: the
    difference would mix the fine-tune with the backends' numerics (docs/backends.md)."""
    refs = [parse_ref(info.model_ref) for info in (base, candidate)]
    if all(ref.local for ref in refs) and backend_for(refs[0]) != backend_for(refs[1]):
        raise UserError(f"run {base.id} ran on {backend_for(refs[0])} and run {candidate.id} on "
                        f"{backend_for(refs[1])}: the change would mix the fine-tune with the backends",
                        where="RUN_A RUN_B", fix="evaluate both models with the same ?backend= "
                        "(tunesafe gate does this)")


def _same_prompts(base: run_store.RunInfo, candidate: run_store.RunInfo,
                  base_results: Sequence[AttemptResult], candidate_results: Sequence[AttemptResult]) -> None:
    """Refuse pairs that did not ask the same thing. Attempt ids hash the behaviour id, not its text, so
    runs of a suite edited in between (or of another suite reusing its ids) share ids across prompts."""
    sent = {r.attempt.id: (r.attempt.messages, r.attempt.prefill) for r in base_results}
    differ = sorted(r.attempt.id for r in candidate_results
                    if r.attempt.id in sent and sent[r.attempt.id] != (r.attempt.messages, r.attempt.prefill))
    if differ:
        raise UserError(f"runs {base.id} and {candidate.id} share {len(differ)} attempt ids whose prompts "
                        f"differ (e.g. {differ[0]}): those pairs are not the same prompt",
                        where="RUN_A RUN_B",
                        fix="evaluate both models on the same suite file (tunesafe gate does this)")


def _distinct(base_run: str, candidate_run: str) -> None:
    if base_run == candidate_run:
        raise UserError(f"both runs are {base_run}: a run compared with itself proves nothing",
                        where="RUN_A RUN_B", fix="pass the base model's run and the candidate's run")


def side_by_side_threads(base_ref: str, candidate_ref: str, config: EvalConfig) -> int | None:
    """CPU threads for each side's server when the gate evaluates both sides at once, else None.

    Both sides must be local llama.cpp servers whose refs leave the thread count to tunesafe: two servers
    on half the cores each, decoding together, beat one server on all cores twice (BENCHMARKS.md, "Main
    job"). The candidate must have nothing to replay, since the base is still producing it: no attacker
    model (attacker-driven attacks are then skipped on both sides) and no replayed run."""
    cpus = os.cpu_count() or 1
    if cpus < 2 or config.attacker_ref or config.replay_from or config.executor != "local" or config.threads:
        return None
    for parsed in (parse_ref(base_ref), parse_ref(candidate_ref)):
        if not parsed.local or backend_for(parsed) != "llamacpp" or "threads" in parsed.options:
            return None
    return cpus // 2


async def _side_by_side(store: Store, refs: tuple[str, str], config: EvalConfig,
                        names: tuple[str | None, str | None], progress: bool,
                        versions: Sequence[Mapping[str, Any] | None]) -> tuple[str, str]:
    """New runs of base and candidate, evaluated at once; the candidate starts as soon as the base run
    exists, replaying from it like a sequential gate, on a server started alongside the base's. A
    failure on either side stops the other (interrupted, resumable) and is raised."""
    base_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    # The candidate's server (and adapter conversion) loads in a thread while the base's loads
    candidate_model = asyncio.ensure_future(asyncio.to_thread(load_run_model, refs[1], config))

    async def side(label: str, ref: str, side_config: EvalConfig, name: str | None,
                   version: Mapping[str, Any] | None, on_start: Callable[[str, int, int], None] | None = None,
                   opened: ChatModel | None = None) -> str:
        with run_label(label):
            report = await evaluate(store, ref, side_config, model_name=name, progress=progress,
                                    on_start=on_start, opened=opened, version=version)
        return report.run_id

    with shared_display(progress):
        base = asyncio.create_task(side("base", refs[0], config, names[0], versions[0],
                                        lambda run_id, *_: base_id.set_result(run_id)))
        tasks = [base]
        try:
            await asyncio.wait([base, base_id], return_when=asyncio.FIRST_COMPLETED)
            if not base_id.done():  # the base failed before its run existed
                base.result()
                raise RuntimeError("the base evaluation ended without creating its run")
            await asyncio.wait([base, candidate_model], return_when=asyncio.FIRST_COMPLETED)
            if base.done():
                base.result()  # a failed base stops the gate here; a finished one waits for the model
            opened = await candidate_model
            tasks.append(asyncio.create_task(side("candidate", refs[1],
                                                  replace(config, replay_from=base_id.result()), names[1],
                                                  versions[1], opened=opened)))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # the first failure, if any
            return tasks[0].result(), tasks[1].result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _close(candidate_model)


async def _close(opening: asyncio.Future[ChatModel]) -> None:
    """Stop a model opened ahead, once its opening has ended (a thread cannot be cancelled)."""
    try:
        model = await asyncio.shield(opening)
    except BaseException:  # its failure, if it matters, was raised already
        return
    close = getattr(model, "close", None)
    if close is not None:
        close()


async def _stored_or_new(store: Store, side: str, model_ref: str, config: EvalConfig, name: str | None,
                         progress: bool, say: Callable[[str], None], stored: StoredRun | None,
                         version: Mapping[str, Any] | None) -> str:
    """A stored run of this model and config (`stored`, from find_stored_run); else its stored answers
    re-judged; else a new run (of inventory `version` of `name`, as check_evaluated matched it)."""
    if stored is None:
        return await run_evaluation(store, model_ref, config, model_name=name, progress=progress,
                                    version=version)
    if not stored.rejudge:
        return stored.run_id
    new_run = await rejudge_run(store, stored.run_id, config.judges, judge_model_ref=config.judge_model_ref)
    say(f"{side}: run {stored.run_id} holds these answers judged by {judges_label(stored.judges)}; "
        f"re-judged them as run {new_run} (no model calls)")
    return new_run


def _quiet(_: str) -> None:
    pass


def _judge_versions(info: run_store.RunInfo) -> dict[str, str]:
    return {j["name"]: str(j.get("version")) for j in info.config.get("judges", [])}


def _common_judges(base: run_store.RunInfo, candidate: run_store.RunInfo) -> list[str]:
    """Judges (name and version) that judged both runs: pre and post must be judged alike."""
    first, second = _judge_versions(base), _judge_versions(candidate)
    common = [name for name in first if second.get(name) == first[name]]
    if not common:
        raise UserError(f"runs {base.id} and {candidate.id} share no judge (same name and version): "
                        f"{_listing(first)} vs {_listing(second)}", where=f"{base.id} / {candidate.id}",
                        fix="evaluate both models with the same --judge")
    return common


def _listing(judges: Mapping[str, str]) -> str:
    return ", ".join(f"{name}@{version}" for name, version in judges.items()) or "none"
