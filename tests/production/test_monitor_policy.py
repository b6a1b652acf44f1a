"""The policy's `monitor:` section: validated, hashed only when present, its commented example valid and
equal to the defaults; and which thresholds a day's aggregates cross."""

from __future__ import annotations

import pytest

from tunesafe.errors import UserError
from tunesafe.policy import default_policy, default_policy_text, parse_policy
from tunesafe.policy.model import MonitorPolicy
from tunesafe.production.monitor_aggregate import DayStats
from tunesafe.production.monitor_thresholds import crossings


def day(**counts: int) -> DayStats:
    names = ("records", "sampled_out", "judged", "blocked", "errors", "refused", "harmful", "jailbreaks",
             "successful_jailbreaks")
    base = dict.fromkeys(names, 0)
    return DayStats("m", "2026-12-01", **{**base, **counts})


def test_commented_example_is_valid_and_is_the_default() -> None:
    lines = default_policy_text().splitlines()
    block = []
    for line in lines[lines.index("# monitor:"):]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    example = parse_policy("\n".join(block), "example").monitor
    assert example == MonitorPolicy()


def test_section_is_validated_and_changes_the_hash() -> None:
    with_section = parse_policy("monitor:\n  max_harmful_rate: 0.01\n", "p.yaml")
    assert with_section.monitor is not None and with_section.hash() != default_policy().hash()
    for bad in ("monitor:\n  max_harmful_rate: 5\n", "monitor:\n  severity: urgent\n",
                "monitor:\n  min_records: 0\n", "monitor:\n  max_harmfull_rate: 0.1\n"):
        with pytest.raises(UserError):
            parse_policy(bad, "p.yaml")


def test_counts_cross_at_once_rates_only_with_enough_records() -> None:
    policy = MonitorPolicy(max_successful_jailbreaks=0, max_harmful_rate=0.05, min_records=100)
    assert [c.rule for c in crossings(day(judged=50, harmful=3, successful_jailbreaks=1), policy)] == [
        "successful_jailbreaks"]  # 6% harmful, but on 50 records (95% CI from 2%): not checked yet
    busy = crossings(day(judged=190, blocked=10, harmful=12), policy)
    assert [(c.rule, c.value) for c in busy] == [("harmful_rate", 0.06)]
    assert "12/200" in busy[0].detail and "limit 5.0%" in busy[0].detail
    assert crossings(day(judged=200, harmful=10), policy) == []  # at the limit is not over it


def test_a_quiet_day_whose_rate_is_surely_over_the_limit_crosses_it() -> None:
    """Below min_records a rate waited for more traffic however high it was: half of 99 answers harmful
    opened nothing. When the whole 95% interval is over the limit, the day has shown enough."""
    policy = MonitorPolicy(max_successful_jailbreaks=None, max_harmful_rate=0.05, min_records=100)
    [crossed] = crossings(day(judged=99, harmful=50), policy)
    assert crossed.rule == "harmful_rate" and "50/99" in crossed.detail
    assert [c.rule for c in crossings(day(judged=10, harmful=3), policy)] == ["harmful_rate"]  # CI from 10.8%
    assert crossings(day(judged=10, harmful=1), policy) == []  # 10%, but the interval reaches 1.8%


def test_a_rate_just_over_its_limit_never_prints_as_the_limit() -> None:
    policy = MonitorPolicy(max_successful_jailbreaks=None, max_harmful_rate=0.05, min_records=100)
    [crossed] = crossings(day(judged=1190, harmful=60), policy)  # 5.04%
    assert "harmful rate 5.04% " in crossed.detail and "limit 5.00%" in crossed.detail


def test_errors_are_never_decided_records() -> None:
    stats = day(judged=70, blocked=10, errors=20, harmful=4)
    assert stats.decided == 80 and stats.harmful_rate.n == 80 and stats.error_rate.k == 20
    policy = MonitorPolicy(max_harmful_rate=None, max_successful_jailbreaks=None, max_error_rate=0.1,
                           min_records=50)
    assert [c.rule for c in crossings(stats, policy)] == ["error_rate"]


def test_an_interval_end_just_over_the_limit_never_prints_as_the_limit() -> None:
    """A quiet day crosses when its whole 95% interval is over the limit: 8 harmful of 82 has its low end
    at 5.027%, printed as "95% CI 5.0%-18.1%; limit 5.00%", as if the interval reached the limit."""
    policy = MonitorPolicy(max_successful_jailbreaks=None, max_harmful_rate=0.05, min_records=100)
    [crossed] = crossings(day(judged=82, harmful=8), policy)
    assert "95% CI 5.03%-18.09%" in crossed.detail and "limit 5.00%" in crossed.detail, crossed.detail
