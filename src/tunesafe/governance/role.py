"""The EU AI Act role of a fine-tuned model version and whether the fine-tune is a substantial
modification (control PRE-00), as a recorded decision with its rationale.

    answers = RoleAnswers(...)                 # what a person states; nothing here is guessed
    body = decide_role(answers, context)       # the walk of the decision tree, every step with its hook
    record = record_role(store, model, answers, version=None)   # appends RecordType.ROLE_DECISION
    recheck(body) -> list[str]                 # derived values recomputed (used by the PRE-00 check)

The tree (governance reference 1.1 and 1.2): Art. 6 high-risk purpose (Annex III category or Annex I
safety component); Art. 25(1)(a) own name on a high-risk system; Art. 25(1)(b) substantial modification
(Art. 3(23), not pre-determined per Recital 128 / Annex IV 2(f)) of a high-risk system on the market;
Art. 25(1)(c) intended purpose changed so that it becomes high-risk; GPAI downstream modifier when the
fine-tuning compute (6*N*D for dense transformers, conservative for LoRA) exceeds one third of the base
model's training compute (Commission GPAI guidelines, 18 July 2025). When the base compute is unknown the
record says so and applies a fallback threshold it names, marked unverified: the guidelines' final
fallback is an open item of the reference. None of this is legal advice; the record is the team's
documented reasoning, for a reviewer to sign.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.reports.view import figures_apart
from tunesafe.types import EvidenceRecord, RecordType

# Annex III high-risk areas (points 1-8), plus "none"
ANNEX_III = ("biometrics", "critical_infrastructure", "education", "employment", "essential_services",
             "law_enforcement", "migration_border", "justice_democracy", "none")
FLOP_PER_PARAM_TOKEN = 6  # forward + backward pass of a dense transformer, per parameter and token
MODIFIER_SHARE = 1 / 3
# Fallback base compute when the base model's is unknown: the guidelines' indicative GPAI and systemic
# risk thresholds (10^23 and 10^25 FLOP). Marked unverified in the record (see the module docstring).
FALLBACK_BASE_FLOP = {"gpai": 1e23, "systemic": 1e25}
REL_TOLERANCE = 1e-9
# what the decision concludes from its answers (recheck recomputes these)
OUTCOME = ("high_risk", "substantial_modification", "provider_hooks", "eu_role",
           "conformity_assessment_required")


@dataclass(frozen=True)
class RoleAnswers:
    """What the team states. `base_training_flop` None means "unknown" (said explicitly)."""

    intended_purpose: str
    annex_iii: str
    annex_i_safety_component: bool
    own_name: bool
    base_gpai: bool
    base_systemic_risk: bool
    base_training_flop: float | None
    base_flop_source: str | None
    params: float
    tokens: float
    base_high_risk_on_market: bool | None = None  # asked only when the purpose is high-risk
    purpose_changed: bool | None = None  # asked only when the purpose is high-risk
    compliance_affected: bool | None = None  # asked only for a high-risk base on the market
    predetermined_change: str | None = None  # Annex IV 2(f) reference that foresaw this change
    original_provider: str | None = None
    reviewer: str | None = None
    notes: str | None = None


def needed_options(answers: Mapping[str, Any]) -> list[str]:
    """The follow-up questions the tree needs from these answers that are still unanswered (option names)."""
    high_risk = (answers.get("annex_iii") not in (None, "none")
                 or bool(answers.get("annex_i_safety_component")))
    needed = []
    if high_risk and answers.get("base_high_risk_on_market") is None:
        needed.append("--base-high-risk-on-market / --base-not-high-risk")
    if high_risk and answers.get("purpose_changed") is None:
        needed.append("--purpose-changed / --purpose-unchanged")
    if (high_risk and answers.get("base_high_risk_on_market") and answers.get("compliance_affected") is None
            and not answers.get("predetermined_change")):
        needed.append("--compliance-affected / --compliance-unaffected")
    return needed


def check_answers(answers: RoleAnswers) -> None:
    """Reject answers the tree cannot use: UserError (exit 2) naming the option."""
    if not answers.intended_purpose.strip():
        raise UserError("the intended purpose is empty", where="--intended-purpose",
                        fix="describe what the fine-tuned system is for, in one sentence")
    if answers.annex_iii not in ANNEX_III:
        raise UserError(f"unknown Annex III category {answers.annex_iii!r}", where="--annex-iii",
                        fix=f"use one of {', '.join(ANNEX_III)}")
    for name, value in (("--params", answers.params), ("--tokens", answers.tokens)):
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{name} must be a positive number, got {value}", where=name,
                            fix="e.g. 7e9 parameters, 1.2e8 training tokens (all epochs)")
    if answers.base_training_flop is not None and (not math.isfinite(answers.base_training_flop)
                                                   or answers.base_training_flop <= 0):
        raise UserError(f"--base-flop must be positive, got {answers.base_training_flop}",
                        where="--base-flop", fix="give its training compute in FLOP, or 'unknown'")
    if answers.reviewer is not None and not answers.reviewer.strip():
        raise UserError("the reviewer names nobody", where="--reviewer",
                        fix="give the reviewer's name, or leave --reviewer out to attest PRE-00 later")
    if answers.base_systemic_risk and not answers.base_gpai:
        raise UserError("a base with systemic risk is a GPAI model", where="--base-systemic-risk",
                        fix="add --base-gpai, or drop --base-systemic-risk")
    still = needed_options(asdict(answers))
    if still:
        raise UserError(f"the decision needs {len(still)} more answer(s) it will not guess",
                        where=", ".join(still), fix="pass one option of each pair")


def decide_role(answers: RoleAnswers, context: Mapping[str, Any]) -> dict[str, Any]:
    """The decision body: inputs, each step of the tree with its legal hook, and the outcome. `context`
    holds what the inventory knows (model, version record, base, training runs)."""
    check_answers(answers)
    compute = compute_estimate(answers.params, answers.tokens, answers.base_training_flop,
                               answers.base_gpai, answers.base_systemic_risk)
    high_risk = answers.annex_iii != "none" or answers.annex_i_safety_component
    substantial = _substantial(answers)
    steps = [
        _step("Is the system used for an Annex III purpose or as an Annex I safety component?", "AIA Art. 6",
              high_risk, f"Annex III: {answers.annex_iii}; Annex I safety component: "
              f"{_yes(answers.annex_i_safety_component)}"),
        _step("Is our name or trademark on the high-risk system?", "AIA Art. 25(1)(a)",
              high_risk and answers.own_name, "only a high-risk system makes this a provider role"),
        _step("Substantial modification of a high-risk system already on the market?",
              "AIA Art. 25(1)(b), 3(23), 43(4); Recital 128", bool(high_risk and substantial),
              _substantial_reason(answers, substantial)),
        _step("Intended purpose changed so that a non-high-risk system (incl. GPAI) becomes high-risk?",
              "AIA Art. 25(1)(c)", bool(high_risk and answers.purpose_changed
                                       and not answers.base_high_risk_on_market),
              f"purpose changed: {_yes(answers.purpose_changed)}"),
        _step("Fine-tuning compute above one third of the base model's training compute?",
              "GPAI Guidelines (18-07-2025), AIA Art. 53", compute["gpai_modifier_presumed"],
              compute["explanation"]),
        _step("Base model with systemic risk and compute above one third of it?",
              "GPAI Guidelines, AIA Art. 51/55", compute["systemic_risk_presumed"],
              "base has systemic risk" if answers.base_systemic_risk else "base has no systemic risk"),
    ]
    roles = [s["hook"] for s in steps[1:4] if s["answer"]]
    eu_role = ("provider of a high-risk AI system" if roles else
               "provider of a GPAI model with systemic risk (downstream modifier)"
               if compute["systemic_risk_presumed"] else
               "provider of a GPAI model (downstream modifier; obligations limited to the modification)"
               if compute["gpai_modifier_presumed"] else "deployer")
    rationale = [f"{s['question']} {'Yes' if s['answer'] else 'No'} ({s['hook']}): {s['because']}"
                 for s in steps]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        **context, "answers": asdict(answers), "steps": steps,
        "intended_purpose": answers.intended_purpose, "annex_iii_category": answers.annex_iii,
        "annex_i_product": answers.annex_i_safety_component, "original_provider": answers.original_provider,
        "base_model_flop_source": answers.base_flop_source,
        **{k: compute[k] for k in ("base_model_training_flop", "ft_params_n",
                                   "ft_tokens_d", "ft_flop_estimate", "ft_flop_method", "ft_to_base_ratio",
                                   "threshold_flop", "threshold_basis", "gpai_modifier_presumed",
                                   "systemic_risk_presumed")},
        "predetermined_change_ref": answers.predetermined_change, "substantial_modification": substantial,
        "high_risk": high_risk, "provider_hooks": roles, "eu_role": eu_role,
        "conformity_assessment_required": bool(high_risk and substantial),
        "rationale": rationale, "reviewer": answers.reviewer,
        "reviewed_at": now if answers.reviewer else None, "notes": answers.notes,
    }


def compute_estimate(params: float, tokens: float, base_flop: float | None, base_gpai: bool,
                     base_systemic: bool) -> dict[str, Any]:
    """6*N*D against one third of the base compute (or of the fallback when it is unknown)."""
    flop = FLOP_PER_PARAM_TOKEN * params * tokens
    if base_flop is not None:
        threshold, basis = base_flop * MODIFIER_SHARE, "one third of the base model's training compute"
        systemic_threshold = threshold
    else:
        threshold = FALLBACK_BASE_FLOP["gpai"] * MODIFIER_SHARE
        systemic_threshold = FALLBACK_BASE_FLOP["systemic"] * MODIFIER_SHARE
        basis = ("base compute unknown: fallback one third of 1e23 FLOP (1e25 for systemic risk) "
                 "[unverified: check the final GPAI guidelines]")
    ratio = flop / base_flop if base_flop else None
    gpai = base_gpai and flop > threshold
    systemic = base_systemic and flop > systemic_threshold
    # the estimate and its share print apart from the threshold and the third they are checked against
    shown, bound = figures_apart(flop, threshold)
    share = figures_apart(ratio, MODIFIER_SHARE)[0] if ratio is not None else None
    explanation = (f"6 x {params:.3g} params x {tokens:.3g} tokens = {shown} FLOP"
                   + (f" = {share} of the base's {base_flop:.3g} FLOP" if share is not None else "")
                   + f"; threshold {bound} FLOP ({basis})"
                   + ("" if base_gpai else "; the base is not a GPAI model, so no GPAI provider role"))
    return {"base_model_training_flop": base_flop, "ft_params_n": params,
            "ft_tokens_d": tokens, "ft_flop_estimate": flop, "ft_flop_method": "6*N*D (dense transformer; "
            "conservative for LoRA)", "ft_to_base_ratio": ratio, "threshold_flop": threshold,
            "threshold_basis": basis, "gpai_modifier_presumed": gpai, "systemic_risk_presumed": systemic,
            "explanation": explanation}


def recheck(body: Mapping[str, Any]) -> list[str]:
    """Derived values of a recorded decision that do not follow from its own answers (edited or wrong)."""
    answers = body.get("answers") or {}
    try:
        expected = compute_estimate(float(answers["params"]), float(answers["tokens"]),
                                    answers.get("base_training_flop"), bool(answers.get("base_gpai")),
                                    bool(answers.get("base_systemic_risk")))
    except (KeyError, TypeError, ValueError):
        return ["the answers (params, tokens) are missing"]
    problems = []
    for key in ("ft_flop_estimate", "ft_to_base_ratio", "gpai_modifier_presumed", "systemic_risk_presumed"):
        got, want = body.get(key), expected[key]
        same = (got == want if not isinstance(want, float) or not isinstance(got, (int, float))
                else math.isclose(got, want, rel_tol=REL_TOLERANCE))
        if not same:
            problems.append(f"{key} is {got}, its answers give {want}")
    # the outcome too: a role the answers do not lead to must not pass PRE-00
    known = {f.name for f in fields(RoleAnswers)}
    try:
        decided = decide_role(RoleAnswers(**{k: v for k, v in answers.items() if k in known}), {})
    except (TypeError, UserError) as exc:
        return [*problems, f"the answers do not make a decision ({exc})"]
    for key in OUTCOME:
        if body.get(key) != decided[key]:
            problems.append(f"{key} is {body.get(key)!r}, its answers give {decided[key]!r}")
    return problems


def record_role(store: Store, model: str, answers: RoleAnswers, *, version: str | None = None,
                actor: str | None = None) -> EvidenceRecord:
    """Walk the tree for `model` (a fine-tune in the inventory) and append the decision."""
    from tunesafe.governance.lineage import collect_lineage

    lineage = collect_lineage(store, model, version)
    node = lineage.model_node
    if not node.body.get("base"):
        raise UserError(f"model {model!r} has no base in the inventory: the role decision is about a "
                        "fine-tune", where="MODEL",
                        fix=f"record it with `tunesafe models add {model} --ref REF --base BASE`")
    bases = lineage.of_kind("base")
    context = {
        "model": model, "version": lineage.version, "model_version_record": lineage.model_record,
        "model_ref": node.body.get("ref"), "base_model_id": node.body.get("base"),
        "base_model_ref": bases[-1].body.get("ref") if bases else None,
        "training_runs": [{"record": int(n.record_id), "run_id": n.body.get("run_id"),
                           "dataset": (n.body.get("lineage") or {}).get("dataset")}
                          for n in lineage.of_kind("training_run")],
    }
    body = decide_role(answers, context)
    return store.append(RecordType.ROLE_DECISION, body, actor=actor, subject=model)


def _substantial(answers: RoleAnswers) -> bool | None:
    """Art. 3(23): not foreseen in the conformity assessment, and compliance affected or purpose changed.
    Only meaningful for a high-risk system on the market; None when it does not apply."""
    if not answers.base_high_risk_on_market:
        return None
    if answers.predetermined_change:
        return False
    return bool(answers.compliance_affected or answers.purpose_changed)


def _substantial_reason(answers: RoleAnswers, substantial: bool | None) -> str:
    if substantial is None:
        return "no high-risk system already on the market was modified"
    if answers.predetermined_change:
        return f"pre-determined change {answers.predetermined_change} (Recital 128): not substantial"
    return (f"compliance affected: {_yes(answers.compliance_affected)}; purpose changed: "
            f"{_yes(answers.purpose_changed)}")


def _step(question: str, hook: str, answer: bool, because: str) -> dict[str, Any]:
    return {"question": question, "hook": hook, "answer": bool(answer), "because": because}


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"
