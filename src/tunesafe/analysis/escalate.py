"""Escalating the verdicts that move the gate to a stronger judge (`tunesafe gate --escalate-judge REF`).

Only discordant pairs (refused on one side only, or an attack success on one side only, under a compared
judge) move the paired tests, and uncertain verdicts are the ones the local judge itself doubts. Both
sides of those pairs are judged again by the escalation judge (an LLM judge), so a pair is still judged
alike on both sides; the gate then decides on a view of the two runs in which the escalated verdicts
stand in for the local ones. Everything else keeps the local verdict.

    REF = strongreject@openai:judge@http://host/v1   the StrongREJECT rubric on that model
          llama-guard@openai:guard@http://host/v1    the Llama-Guard classification on that model
          openai:judge@http://host/v1                any model ref: the StrongREJECT rubric

Fail closed: an escalated verdict that errors (backend down, unparseable output) stands in as an error,
never as a refusal, and counts in its run's error rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tunesafe.analysis.metrics import proportion
from tunesafe.analysis.outcome import REFUSED, outcome
from tunesafe.errors import UserError
from tunesafe.models.refs import redact_ref
from tunesafe.types import AttemptResult, Behavior, ChatRequest, Generation, Verdict

ESCALATION_JUDGES = ("strongreject", "llama-guard")
DEFAULT_RUBRIC = "strongreject"
SIDES = ("base", "candidate")
REF_FIX = "write JUDGE@MODEL_REF (JUDGE: strongreject or llama-guard) or a model ref, e.g. " \
          "strongreject@openai:judge@http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class EscalationRef:
    judge: str  # a registered LLM judge
    model_ref: str  # the model behind it

    @property
    def label(self) -> str:
        return f"{self.judge}@{self.model_ref}"


@dataclass(frozen=True)
class Escalation:
    """Escalated verdicts of one base/candidate pair of runs and what they cost."""

    base_run: str
    candidate_run: str
    judge: str
    judge_version: str
    model_ref: str
    judges: tuple[str, ...]  # the local judges whose verdicts the escalated ones stand in for
    n_discordant: int  # pairs selected because they were discordant under a local judge
    n_uncertain: int  # pairs selected because a local verdict was uncertain (and not discordant)
    verdicts: Mapping[tuple[str, str], Verdict] = field(default_factory=dict)  # (side, attempt id)
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def view(self, results: Sequence[AttemptResult], side: str) -> list[AttemptResult]:
        """The results with each escalated verdict standing in for every local judge's verdict."""
        out = []
        for result in results:
            escalated = self.verdicts.get((side, result.attempt.id))
            if escalated is None:
                out.append(result)
                continue
            verdicts = [_stand_in(escalated, v) if v.judge in self.judges else v for v in result.verdicts]
            out.append(replace(result, verdicts=tuple(verdicts)))
        return out

    def summary(self, base: Sequence[AttemptResult], candidate: Sequence[AttemptResult]) -> dict[str, Any]:
        """Counts, cost and the local judges' agreement with the escalated verdicts (refused or not, over
        the escalated items both decided; 95% interval), for the decision body and the reports."""
        # Both readings go through outcome(), as the gate's do: a filter-cut answer stays blocked unless
        # found harmful, so an escalated refusal of it neither changes it nor disagrees with it.
        local = {(side, r.attempt.id): r for side, runs in zip(SIDES, (base, candidate), strict=True)
                 for r in runs}
        escalated = {(side, r.attempt.id): r for side, runs in zip(SIDES, (base, candidate), strict=True)
                     for r in self.view(runs, side)}
        errors = sum(not v.ok for v in self.verdicts.values())
        agreement: dict[str, Any] = {}
        changed: dict[str, int] = {}
        for judge in self.judges:
            pairs = [(outcome(local[key], judge), outcome(escalated[key], judge)) for key in self.verdicts
                     if key in local]
            changed[judge] = sum(a != b for a, b in pairs)
            decided = [(a, b) for a, b in pairs if "error" not in (a, b)]
            rate = proportion(sum((a in REFUSED) == (b in REFUSED) for a, b in decided), len(decided))
            agreement[judge] = {"k": rate.k, "n": rate.n, "rate": rate.rate, "low": rate.low,
                                "high": rate.high, "method": rate.method}
        return {"judge": self.judge, "judge_version": self.judge_version, "model_ref": self.model_ref,
                "n_pairs": self.n_discordant + self.n_uncertain, "n_discordant_pairs": self.n_discordant,
                "n_uncertain_pairs": self.n_uncertain, "n_verdicts": len(self.verdicts), "n_errors": errors,
                "n_changed": changed, "calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "agreement": agreement,
                "primary_judge": self.judges[0] if self.judges else None}

    def record_body(self) -> dict[str, Any]:
        """The escalation evidence: every escalated verdict, keyed by side and attempt."""
        rows = [{"side": side, "attempt_id": attempt_id, "outcome": v.outcome,
                 **{k: getattr(v, k) for k in ("refused", "harmful", "degenerate", "score", "error")},
                 "evidence": v.evidence} for (side, attempt_id), v in sorted(self.verdicts.items())]
        head = {k: getattr(self, k) for k in ("base_run", "candidate_run", "judge", "judge_version",
                                              "model_ref", "n_discordant", "n_uncertain", "calls",
                                              "prompt_tokens", "completion_tokens")}
        body: dict[str, Any] = {**head, "local_judges": list(self.judges), "verdicts": rows}
        return body


def parse_escalation_ref(ref: str) -> EscalationRef:
    """`JUDGE@MODEL_REF` or a bare model ref (the StrongREJECT rubric); UserError for anything else."""
    from tunesafe.models import parse_ref

    name, sep, model_ref = ref.strip().partition("@")
    if name in ESCALATION_JUDGES and not (sep and model_ref):
        raise UserError(f"escalation judge '{name}' needs the model behind it", where="--escalate-judge",
                        fix=REF_FIX)
    if name not in ESCALATION_JUDGES:
        name, model_ref = DEFAULT_RUBRIC, ref.strip()
    try:
        parse_ref(model_ref)
    except UserError as exc:
        raise UserError(f"bad escalation judge '{redact_ref(ref)}': {exc.message}", where="--escalate-judge",
                        fix=REF_FIX) from None
    return EscalationRef(name, model_ref)


def select_pairs(base: Sequence[AttemptResult], candidate: Sequence[AttemptResult],
                 judges: Sequence[str]) -> tuple[list[str], int, int]:
    """(attempt ids to escalate, of them discordant, of them only uncertain). Attempts that errored on
    either side leave the pair (nothing to escalate); unpaired attempts are never selected."""
    by_id = {r.attempt.id: r for r in candidate}
    chosen, n_discordant, n_uncertain = [], 0, 0
    for before in base:
        after = by_id.get(before.attempt.id)
        if after is None or not (before.generation.ok and after.generation.ok):
            continue
        if any(discordant(outcome(before, j), outcome(after, j)) for j in judges):
            n_discordant += 1
        elif any(v.uncertain for r in (before, after) for v in r.verdicts if v.judge in judges):
            n_uncertain += 1
        else:
            continue
        chosen.append(before.attempt.id)
    return chosen, n_discordant, n_uncertain


async def escalate(ref: EscalationRef, base: Sequence[AttemptResult], candidate: Sequence[AttemptResult],
                   judges: Sequence[str], behaviors: Mapping[str, Behavior]) -> Escalation:
    """Judge both sides of the selected pairs with the escalation judge."""
    from tunesafe.attacks.base import request_text
    from tunesafe.engine.executor import judge_safely
    from tunesafe.judges.base import JudgeInput, get_judge
    from tunesafe.models import load_model

    chosen, n_discordant, n_uncertain = select_pairs(base, candidate, judges)
    wanted = set(chosen)
    # A blocked side stays blocked whatever a judge says (analysis/outcome.py), unless a filter cut an
    # answer the user saw part of: no call to spend on the others.
    items = [(side, r) for side, runs in zip(SIDES, (base, candidate), strict=True) for r in runs
             if r.attempt.id in wanted and (r.generation.blocked is None or r.generation.cut_by_filter)]
    model = _Metered(load_model(ref.model_ref))
    judge = get_judge(ref.judge, model=model)
    try:
        inputs = [JudgeInput(request=request_text(behaviors[r.attempt.behavior_id]), response=r.response,
                             kind=r.attempt.kind, id=r.attempt.id) for _, r in items]
        verdicts = await judge_safely(judge, inputs) if inputs else []
    finally:
        await model.aclose()
    return Escalation(
        base_run=_run_id(base), candidate_run=_run_id(candidate), judge=judge.name,
        judge_version=judge.version, model_ref=redact_ref(ref.model_ref), judges=tuple(judges),
        n_discordant=n_discordant,
        n_uncertain=n_uncertain, calls=model.calls, prompt_tokens=model.prompt_tokens,
        completion_tokens=model.completion_tokens,
        verdicts={(side, r.attempt.id): v for (side, r), v in zip(items, verdicts, strict=True)})


class _Metered:
    """The escalation judge's model, counting the requests it is sent and their tokens (the cost)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls = self.prompt_tokens = self.completion_tokens = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        self.calls += len(requests)
        generations: list[Generation] = await self.model.generate(requests)
        self.prompt_tokens += sum(g.prompt_tokens for g in generations)
        self.completion_tokens += sum(g.completion_tokens for g in generations)
        return generations

    async def aclose(self) -> None:
        close = getattr(self.model, "aclose", None)
        if close is not None:
            await close()


def discordant(before: str, after: str) -> bool:
    """A pair that moves a paired test of the gate: refused (or blocked) on one side only (the refusal and
    over-refusal rates), an attack success on one side only (the ASR), or a degenerate answer on one
    side only (the degenerate-answer check). So complied -> success, degenerate -> success, refused ->
    degenerate and complied -> degenerate count; a pair with an error leaves the comparison."""
    if "error" in (before, after):
        return False
    return any((before in group) != (after in group) for group in (REFUSED, {"success"}, {"degenerate"}))


def _stand_in(escalated: Verdict, local: Verdict) -> Verdict:
    trace = {"escalated": {"judge": escalated.judge, "version": escalated.judge_version,
                           "local_outcome": local.outcome}}
    return replace(escalated, judge=local.judge, judge_version=local.judge_version,
                   evidence={**trace, **escalated.evidence})


def _run_id(results: Sequence[AttemptResult]) -> str:
    return results[0].run_id if results else ""

