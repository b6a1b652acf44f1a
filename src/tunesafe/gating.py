"""The post-fine-tuning gate, end to end: evaluate (or reuse) the base and the candidate on the same
attempts, compare them under every judge that ran, decide against the policy, append the decision to
the evidence chain and write the reports.

The evidence body built here is the one source the reports, the dashboard and `tunesafe models show`
read: no figure is recomputed after the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tunesafe.analysis.compare import compare
from tunesafe.engine import results as run_store
from tunesafe.engine.runner import EvalConfig, find_reusable_run, run_evaluation
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.models import align_backends, backend_for, parse_ref
from tunesafe.policy import Policy, decide
from tunesafe.reports import write_reports
from tunesafe.types import EvidenceRecord, GateDecision, RecordType


@dataclass(frozen=True)
class GateOutcome:
    decision: GateDecision
    body: Mapping[str, Any]  # the evidence body
    record: EvidenceRecord
    reports: Mapping[str, Path]  # format -> written file


async def gate_models(store: Store, base_ref: str, candidate_ref: str, policy: Policy, config: EvalConfig, *,
                      base_name: str | None = None, candidate_name: str | None = None,
                      out_dir: Path | None = None, progress: bool = True) -> GateOutcome:
    """Run the gate on two model refs. A complete earlier run with the same model hash and config is
    reused; the candidate replays the base run's frozen attacker prompts so every attempt pairs up.
    Local refs are put on one backend first, so the difference measured is the fine-tune's."""
    base_ref, candidate_ref = align_backends(base_ref, candidate_ref)
    base_run = find_reusable_run(store, base_ref, config) or await run_evaluation(
        store, base_ref, config, model_name=base_name, progress=progress)
    candidate_config = replace(config, replay_from=base_run)
    candidate_run = find_reusable_run(store, candidate_ref, candidate_config) or await run_evaluation(
        store, candidate_ref, candidate_config, model_name=candidate_name, progress=progress)
    return gate_runs(store, base_run, candidate_run, policy, base_name=base_name,
                     candidate_name=candidate_name, out_dir=out_dir)


def gate_runs(store: Store, base_run: str, candidate_run: str, policy: Policy, *,
              base_name: str | None = None, candidate_name: str | None = None,
              out_dir: Path | None = None) -> GateOutcome:
    """Compare two stored runs, decide, record the decision and (with out_dir) write the reports."""
    if base_run == candidate_run:
        raise UserError(f"both runs are {base_run}: a run compared with itself proves nothing",
                        where="RUN_A RUN_B", fix="pass the base model's run and the candidate's run")
    base_info, candidate_info = (_complete_run(store, run_id) for run_id in (base_run, candidate_run))
    _same_backend(base_info, candidate_info)
    judges = _common_judges(base_info, candidate_info)
    base_results = run_store.load_results(store, base_run)
    candidate_results = run_store.load_results(store, candidate_run)
    min_n = {"family": policy.min_items_per_family, "category": policy.min_items_per_category}
    comparisons = {j: compare(base_results, candidate_results, judge=j, alpha=policy.alpha, min_n=min_n)
                   for j in judges}
    decision = decide(policy, comparisons)
    base_name = base_name or base_info.model_name
    candidate_name = candidate_name or candidate_info.model_name
    body = decision_body(decision, policy, base_info, candidate_info, base_name, candidate_name)
    record = store.append(RecordType.GATE_DECISION, body, subject=candidate_name)
    reports = write_reports(body, out_dir, record=record) if out_dir is not None else {}
    return GateOutcome(decision, body, record, reports)


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
            "n_errors": info.n_errors}


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


def _common_judges(base: run_store.RunInfo, candidate: run_store.RunInfo) -> list[str]:
    """Judges (name and version) that judged both runs: pre and post must be judged alike."""
    def judges(info: run_store.RunInfo) -> dict[str, str]:
        return {j["name"]: str(j.get("version")) for j in info.config.get("judges", [])}

    first, second = judges(base), judges(candidate)
    common = [name for name in first if second.get(name) == first[name]]
    if not common:
        raise UserError(f"runs {base.id} and {candidate.id} share no judge (same name and version): "
                        f"{_listing(first)} vs {_listing(second)}", where=f"{base.id} / {candidate.id}",
                        fix="evaluate both models with the same --judge")
    return common


def _listing(judges: Mapping[str, str]) -> str:
    return ", ".join(f"{name}@{version}" for name, version in judges.items()) or "none"
