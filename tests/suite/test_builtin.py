"""The built-in suites: sizes and balance the docs promise, stable ids, smoke as a true subset."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import replace

from scipy.stats import norm

from tunesafe.suite import builtin_names, load_suite, load_taxonomy
from tunesafe.suite.builtin import DATA

ID_PATTERN = re.compile(r"^(h|bl|b)-([a-z_]+)-(\d{3})$")
PREFIX = {"harmful": "h", "borderline": "bl", "benign": "b"}


def test_builtin_names() -> None:
    assert builtin_names() == ["default", "agents", "agents-smoke", "smoke"]


def test_default_meets_the_documented_sizes() -> None:
    suite = load_suite("default")
    counts = suite.counts()
    assert counts["harmful"] >= 320
    assert counts["borderline"] >= 110
    assert counts["borderline"] + counts["benign"] >= 260
    per_category = Counter(b.category for b in suite.behaviors if b.kind == "harmful")
    assert len(per_category) >= 11
    assert min(per_category.values()) >= 20, per_category
    assert len({b.language for b in suite.behaviors}) >= 5


def test_ids_are_well_formed_and_match_kind_and_category() -> None:
    suite = load_suite("default")
    for b in suite.behaviors:
        match = ID_PATTERN.match(b.id)
        assert match, b.id
        assert match.group(1) == PREFIX[b.kind], b.id
        assert match.group(2) == b.category, b.id
    assert len({b.id for b in suite.behaviors}) == len(suite.behaviors)


def test_categories_and_types_are_in_the_taxonomy() -> None:
    taxonomy = load_taxonomy()
    suite = load_suite("default")
    for b in suite.behaviors:
        known = taxonomy.benign_topics if b.kind == "benign" else taxonomy.harm_categories
        assert b.category in known, b.id
        if b.kind == "borderline":
            assert suite.extra[b.id]["type"] in taxonomy.borderline_types, b.id


def test_every_item_carries_suite_and_version() -> None:
    lines = (DATA / "default.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines:
        row = json.loads(line)
        assert set(row) >= {"id", "text", "kind", "category", "language", "since"}
        assert row["text"] == row["text"].strip() and row["text"]
    suite = load_suite("default")
    assert {(b.suite, b.version) for b in suite.behaviors} == {("default", suite.version)}


def test_smoke_is_a_fixed_subset_of_default() -> None:
    default = {b.id: b for b in load_suite("default").behaviors}
    smoke = load_suite("smoke")
    assert 35 <= len(smoke.behaviors) <= 45
    for b in smoke.behaviors:
        assert replace(b, suite="default") == default[b.id]
    harmful = Counter(b.category for b in smoke.behaviors if b.kind == "harmful")
    assert set(harmful) == set(load_taxonomy().harm_categories)
    assert set(harmful.values()) == {2}
    assert {b.kind for b in smoke.behaviors} == {"harmful", "borderline", "benign"}
    assert smoke.extra["bl-cyber-001"]["type"] == "homonyms"


def test_content_hash_is_stable_and_content_sensitive() -> None:
    suite = load_suite("default")
    assert suite.content_hash == load_suite("default").content_hash
    changed = replace(suite, behaviors=suite.behaviors[:-1])
    assert changed.content_hash != suite.content_hash


def _connor_pairs(p10: float, p01: float, alpha: float, power: float, *, two_sided: bool) -> int:
    """Connor (1987) sample size for McNemar's paired test (research.md section 9)."""
    psi, delta = p10 + p01, p10 - p01
    z_alpha = norm.ppf(1 - alpha / (2 if two_sided else 1))
    z_beta = norm.ppf(power)
    return math.ceil((z_alpha * math.sqrt(psi) + z_beta * math.sqrt(psi - delta**2)) ** 2 / delta**2)


def test_default_is_sized_for_a_5_point_regression() -> None:
    # docs/suites.md: +5 points ASR, 80% power, alpha 0.05, discordance of greedy pre/post runs
    # p10 = 0.07 / p01 = 0.02 -> 221 pairs one-sided, 281 two-sided (research.md's table).
    assert _connor_pairs(0.07, 0.02, 0.05, 0.8, two_sided=False) == 221
    assert _connor_pairs(0.07, 0.02, 0.05, 0.8, two_sided=True) == 281
    assert _connor_pairs(0.06, 0.01, 0.05, 0.8, two_sided=True) == 218
    harmful = load_suite("default").counts()["harmful"]
    assert harmful >= _connor_pairs(0.07, 0.02, 0.05, 0.8, two_sided=True)
    # the gate's own test, the one-sided exact McNemar, needs more than Connor's approximation says
    from tunesafe.analysis.stats import exact_power

    for p01, n in ((0.0, 134), (0.01, 189), (0.02, 240), (0.03, 293), (0.05, 398)):
        assert exact_power(n - 1, p01 + 0.05, p01, 0.05) < 0.8 <= exact_power(n, p01 + 0.05, p01, 0.05)
    assert exact_power(harmful, 0.07, 0.02, 0.05) >= 0.8
