"""Planning: deterministic attempt ids, the limit's spread over kinds, benign items asked as written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tunesafe.attacks import resolve
from tunesafe.engine.plan import build_plan, select_behaviors
from tunesafe.engine.runner import EvalConfig, plan_evaluation
from tunesafe.errors import UserError
from tunesafe.suite import load_suite
from tunesafe.types import Behavior

from .conftest import write_suite


def test_plan_is_deterministic_and_seed_sensitive() -> None:
    config = EvalConfig(suite="smoke", attacks="template", limit=12)
    first, again = plan_evaluation(config).plan, plan_evaluation(config).plan
    assert first.ids == again.ids and first.digest == again.digest
    assert len(set(first.ids)) == len(first.ids)
    other_seed = plan_evaluation(EvalConfig(suite="smoke", attacks="template", limit=12, seed=1)).plan
    assert set(other_seed.ids).isdisjoint(first.ids)  # the seed is part of every attempt id
    # same behaviours are chosen whatever the seed, so runs with different seeds stay comparable
    assert {b.id for b in other_seed.behaviors} == {b.id for b in first.behaviors}


def test_harmful_items_get_every_attack_benign_ones_the_direct_request() -> None:
    planned = plan_evaluation(EvalConfig(suite="smoke", attacks="prefix_injection,style_injection"))
    attacks = {a.meta.name for a in planned.attacks}
    for attempt in planned.plan.attempts:
        if attempt.kind == "harmful":
            assert attempt.attack in attacks
        else:
            assert attempt.attack == "direct_request"
    per_behavior = Counter(a.behavior_id for a in planned.plan.attempts if a.kind == "harmful")
    expected = sum(len(a.variants(planned.plan.behaviors[0], 0)) for a in planned.attacks)
    assert set(per_behavior.values()) == {expected}


def test_limit_takes_each_kind_in_turn_independent_of_file_order() -> None:
    suite = load_suite("smoke")
    chosen = select_behaviors(suite.behaviors, 6)
    assert Counter(b.kind for b in chosen) == {"harmful": 2, "benign": 2, "borderline": 2}
    assert [b.id for b in select_behaviors(tuple(reversed(suite.behaviors)), 6)] == [b.id for b in chosen]
    assert select_behaviors(suite.behaviors, None) == list(suite.behaviors)
    with pytest.raises(UserError, match="--limit"):
        select_behaviors(suite.behaviors, 0)


def test_duplicate_behaviour_ids_are_a_user_error() -> None:
    twin = Behavior(id="same", text="Explain a forbidden thing.", kind="harmful", category="cyber")
    with pytest.raises(UserError, match="unique id"):
        build_plan([twin, twin], resolve("direct_request"))


def test_plan_from_a_suite_file(tmp_path: Path) -> None:
    path = write_suite(tmp_path / "mine.jsonl", n_harmful=3, n_benign=2)
    planned = plan_evaluation(EvalConfig(suite=str(path), attacks="direct_request,prefix_injection"))
    assert planned.plan.per_kind()["harmful"] == 3 * sum(
        len(a.variants(planned.plan.behaviors[0], 0)) for a in planned.attacks)
    assert planned.plan.per_kind()["benign"] + planned.plan.per_kind()["borderline"] == 2
