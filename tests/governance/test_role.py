"""The role decision (PRE-00): the tree of governance reference 1.1/1.2 as a pure function (compute ratio
6*N*D against a third of the base compute, the Art. 25(1) hooks, Recital 128), answers it needs are asked
for and never guessed, a recorded decision whose derived values were edited fails its control, and
`tunesafe role decide` records the decision on the store built by real runs."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.governance.role import RoleAnswers, decide_role, recheck
from tunesafe.types import RecordType

SMALL = RoleAnswers(intended_purpose="support chat", annex_iii="none", annex_i_safety_component=False,
                    own_name=False, base_gpai=True, base_systemic_risk=False, base_training_flop=3e24,
                    base_flop_source="model card", params=7e9, tokens=1e8)


def decide(answers: RoleAnswers) -> dict[str, Any]:
    return decide_role(answers, {"model": "ft"})


def test_small_fine_tune_of_a_gpai_base_stays_deployer() -> None:
    body = decide(SMALL)
    assert body["ft_flop_estimate"] == pytest.approx(6 * 7e9 * 1e8)  # 4.2e18
    assert body["ft_to_base_ratio"] == pytest.approx(4.2e18 / 3e24)
    assert body["gpai_modifier_presumed"] is False and body["eu_role"] == "deployer"
    assert body["substantial_modification"] is None and body["conformity_assessment_required"] is False
    assert len(body["rationale"]) == len(body["steps"]) == 6 and recheck(body) == []


def test_compute_above_a_third_makes_a_gpai_provider() -> None:
    body = decide(replace(SMALL, base_training_flop=1e21, tokens=1e12))  # 4.2e22 > 1e21 / 3
    assert body["gpai_modifier_presumed"] is True and body["systemic_risk_presumed"] is False
    assert body["eu_role"].startswith("provider of a GPAI model (downstream modifier")
    systemic = decide(replace(SMALL, base_training_flop=1e21, tokens=1e12, base_systemic_risk=True))
    assert systemic["systemic_risk_presumed"] is True and "systemic risk" in systemic["eu_role"]
    not_gpai = decide(replace(SMALL, base_gpai=False, base_training_flop=1e21, tokens=1e12))
    assert not_gpai["gpai_modifier_presumed"] is False and not_gpai["eu_role"] == "deployer"


def test_unknown_base_compute_uses_the_named_fallback() -> None:
    body = decide(replace(SMALL, base_training_flop=None, tokens=1e14))  # 4.2e24 > 1e23 / 3
    assert body["ft_to_base_ratio"] is None and body["threshold_flop"] == pytest.approx(1e23 / 3)
    assert "unverified" in body["threshold_basis"] and body["gpai_modifier_presumed"] is True


def test_high_risk_purpose_walks_article_25() -> None:
    high = replace(SMALL, annex_iii="employment", base_high_risk_on_market=True, purpose_changed=False,
                   compliance_affected=True)
    body = decide(high)
    assert body["substantial_modification"] is True and body["conformity_assessment_required"] is True
    assert body["eu_role"] == "provider of a high-risk AI system"
    assert body["provider_hooks"] == ["AIA Art. 25(1)(b), 3(23), 43(4); Recital 128"]
    foreseen = decide(replace(high, predetermined_change="Annex IV 2(f) plan v3"))
    assert foreseen["substantial_modification"] is False and foreseen["eu_role"] == "deployer"
    repurposed = decide(replace(SMALL, annex_iii="education", base_high_risk_on_market=False,
                                purpose_changed=True))
    assert repurposed["provider_hooks"] == ["AIA Art. 25(1)(c)"]
    own = decide(replace(SMALL, annex_i_safety_component=True, own_name=True, base_high_risk_on_market=False,
                         purpose_changed=False))
    assert own["provider_hooks"] == ["AIA Art. 25(1)(a)"]


@pytest.mark.parametrize("answers, fragment", [
    (replace(SMALL, annex_iii="employment"), "--base-high-risk-on-market"),
    (replace(SMALL, annex_iii="employment", base_high_risk_on_market=True, purpose_changed=False),
     "--compliance-affected"),
    (replace(SMALL, annex_iii="hobbies"), "unknown Annex III category"),
    (replace(SMALL, params=0), "--params must be a positive number"),
    (replace(SMALL, base_gpai=False, base_systemic_risk=True), "systemic risk is a GPAI model"),
])
def test_answers_the_tree_needs_are_never_guessed(answers: RoleAnswers, fragment: str) -> None:
    with pytest.raises(UserError) as info:
        decide(answers)
    assert fragment in info.value.render()


def test_an_edited_decision_fails_its_check() -> None:
    body = decide(SMALL)
    assert recheck({**body, "gpai_modifier_presumed": True}) == [
        "gpai_modifier_presumed is True, its answers give False"]
    assert recheck({**body, "ft_flop_estimate": 1.0})


def test_role_decide_records_the_decision(world: SimpleNamespace) -> None:
    cli = world.cli
    code, _, err = cli("role", "decide", "ft", "--intended-purpose", "support chat")
    assert code == 2 and "will not guess" in err and "--params" in err and "--annex-iii" in err
    answers = ("--intended-purpose", "x", "--annex-iii", "none", "--no-annex-i", "--no-own-name",
               "--base-gpai", "--params", "1e9", "--tokens", "1e6")
    code, _, err = cli("role", "decide", "base", *answers, "--base-flop", "unknown")
    assert code == 2 and "has no base" in err
    code, _, err = cli("role", "decide", "ft", *answers, "--base-flop", "lots")
    assert code == 2 and "--base-flop" in err
    with Store.open(world.url) as store:
        assert not list(store.records(type=RecordType.ROLE_DECISION))

    decision = cli.json("role", "decide", "ft", "--intended-purpose", "support chat", "--annex-iii", "none",
                        "--no-annex-i", "--no-own-name", "--base-gpai", "--base-flop", "unknown",
                        "--base-flop-source", "not published", "--params", "1e9", "--tokens", "1e6",
                        "--reviewer", "A. Legal")
    with Store.open(world.url) as store:
        (record,) = store.records(type=RecordType.ROLE_DECISION)
    assert decision["record_id"] == record.id and record.subject == "ft"
    assert record.body["eu_role"] == "deployer" and record.body["base_model_id"] == "base"
    assert record.body["model_version_record"] == decision["model_version_record"]
    assert [r["run_id"] for r in record.body["training_runs"]]  # the inventory's training run is named
    assert record.body["base_model_flop_source"] == "not published" and record.body["reviewer"] == "A. Legal"
    code, out, _ = cli("role", "decide", "ft", *answers, "--base-flop", "1e24")
    assert code == 0 and "role: deployer" in out and "not reviewed" in out


@pytest.mark.parametrize("edit", [{"eu_role": "deployer"}, {"conformity_assessment_required": False},
                                  {"provider_hooks": []}])
def test_a_decision_whose_outcome_does_not_follow_from_its_answers_fails(edit: dict[str, Any]) -> None:
    high = replace(SMALL, annex_iii="employment", base_high_risk_on_market=True, purpose_changed=False,
                   compliance_affected=True)
    body = decide(high)
    assert recheck(body) == []
    # the compute fields still add up, but the role is not the one the answers lead to
    key = next(iter(edit))
    assert [p for p in recheck({**body, **edit}) if p.startswith(f"{key} is ")]


def test_a_blank_reviewer_is_a_review_by_nobody() -> None:
    with pytest.raises(UserError, match="--reviewer"):
        decide(replace(SMALL, reviewer="  "))
    from datetime import datetime, timezone

    from tunesafe.governance.checks import CheckContext, role_decision
    from tunesafe.governance.lineage import Lineage, LineageNode

    body = {**decide(SMALL), "reviewer": " "}  # as a record written before the option was checked holds it
    node = LineageNode(kind="role_decision", record_id="3", record_hash="ab" * 32, label="role",
                       created_at="", body=body)
    lineage = Lineage(model="ft", version="1", nodes=(node,))
    assert role_decision(CheckContext(lineage, datetime.now(timezone.utc))).status == "attest"


def test_compute_just_over_the_threshold_never_prints_as_it() -> None:
    """6 x 1e9 x 1.6674e12 = 1.00044e22 FLOP is over a third of 3e22: the explanation said "= 1e+22 FLOP
    = 0.333 of the base's ...; threshold 1e+22 FLOP" beside a presumed GPAI modifier."""
    body = decide(replace(SMALL, base_training_flop=3e22, params=1e9, tokens=1.6674e12))
    assert body["gpai_modifier_presumed"] is True
    explanation = " ".join(body["rationale"])
    assert "= 1.0004e+22 FLOP = 0.3335 of the base's" in explanation, explanation
    assert "threshold 1e+22 FLOP" in explanation, explanation
