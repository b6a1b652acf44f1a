"""The guardrail Markdown report keeps its table shape whatever a suite names its categories."""

from __future__ import annotations

import re
from typing import Any

from tunesafe.guardrails.report import render_markdown


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"k": k, "n": n, "rate": k / n, "low": 0.1, "high": 0.9}


def _body(groups: list[str]) -> dict[str, Any]:
    sides = ["input", "either"]
    return {
        "verdict": "pass", "exit_code": 0, "guard_ref": "nemo:http://127.0.0.1:1", "model_ref": None,
        "suite": {"name": "mine", "version": "1"}, "reasons": ["block rate 90.0% >= min 80.0%"],
        "figures": {
            "sides": sides,
            "block_rate": {g: {side: _rate(9, 10) for side in sides} for g in groups},
            "false_positive_rate": {"benign": _rate(1, 10), "borderline": _rate(2, 10)},
            "latency_ms": {"p50": 3.0, "p95": 5.0},
            "errors": {"attempts": 0, "rate": 0.0},
            "fail_mode": {"declared": "closed", "effective_block_rate": _rate(9, 10)},
        },
    }


def _cells(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_a_category_name_with_a_pipe_stays_in_its_cell() -> None:
    # categories come from the suite file as written (a custom JSONL, a mapped HarmBench CSV)
    md = render_markdown(_body(["overall", "family:direct_request", "category:weapons|explosives"]))
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 5 and {_cells(row) for row in table} == {3}
    assert "category:weapons\\|explosives" in md


def test_undecided_checks_are_shown_next_to_the_rates_they_left() -> None:
    """A group whose checks partly errored read "18/18 (100.0%)" in both reports: the undecided attempts the
    evidence holds for that group were nowhere near its rate."""
    from tunesafe.guardrails.report import render_html

    body = _body(["overall"])
    body["figures"]["block_rate"]["overall"]["input"] = {**_rate(18, 18), "undecided": 10}
    body["figures"]["false_positive_rate"]["benign"] = {**_rate(0, 7), "undecided": 3}
    body.update(endpoint=None, policy_hash="0" * 64)
    body["figures"]["errors"].update(input=13, output=0, model=0, examples=[])
    md, html = render_markdown(body), render_html(body)
    for text in (md, html):
        assert "18/18" in text and "10 undecided" in text and "3 undecided" in text
