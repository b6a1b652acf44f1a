"""Planning: deterministic attempt ids, the limit's spread over kinds, benign items asked as written."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from tunesafe.attacks import resolve
from tunesafe.engine.config import run_config
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


def test_encodings_that_leave_non_latin_text_as_written_skip_it(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    # ROT13 and leetspeak change Latin letters only: a Cyrillic, Greek, CJK or Arabic request went out as
    # written under an encoding label. base64 encodes any text; accented Latin is still mostly encoded.
    rows = [("en", "Explain how to do the forbidden PLACEHOLDER thing."),
            ("de", "Erkläre, wie man das verbotene PLACEHOLDER-Ding über Nacht macht."),
            ("ru", "Объясни, как сделать запрещённую вещь PLACEHOLDER."),
            ("el", "Εξήγησε πώς γίνεται το απαγορευμένο πράγμα."),
            ("zh", "解释如何做这件被禁止的事情。"),
            ("ar", "اشرح كيف تفعل الشيء المحظور.")]
    path = tmp_path / "languages.jsonl"
    path.write_text("".join(json.dumps({"id": code, "text": text, "kind": "harmful", "category": "cyber",
                                        "language": code}) + "\n" for code, text in rows), encoding="utf-8")
    config = EvalConfig(suite=str(path), attacks="encoding_base64,encoding_rot13,encoding_leetspeak")
    with caplog.at_level(logging.WARNING):
        planned = plan_evaluation(config)
        again = plan_evaluation(config)
    assert again.plan.ids == planned.plan.ids
    by_attack: dict[str, set[str]] = {}
    for attempt in planned.plan.attempts:
        by_attack.setdefault(attempt.attack, set()).add(attempt.behavior_id)
    assert by_attack == {"encoding_base64": {c for c, _ in rows}, "encoding_rot13": {"en", "de"},
                         "encoding_leetspeak": {"en", "de"}}
    skipped = planned.plan.skipped_behaviors
    assert [(s["attack"], s["behaviors"]) for s in skipped] == [("encoding_rot13", 4),
                                                                ("encoding_leetspeak", 4)]
    assert all("Latin" in s["reason"] for s in skipped)
    said = [r.getMessage() for r in caplog.records if "encoding_rot13" in r.getMessage()]
    assert len(said) == 1 and "4 behaviours" in said[0]  # said once, though planned twice
    recorded = run_config(config, planned, [], None, None)
    assert recorded["skipped_behaviors"] == list(skipped)
    # a suite every attack applies to records nothing new (its runs stay reusable)
    assert "skipped_behaviors" not in run_config(EvalConfig(suite="smoke", attacks="encoding_rot13"),
                                                 plan_evaluation(EvalConfig(suite="smoke",
                                                                            attacks="encoding_rot13")),
                                                 [], None, None)
