"""The request triage in monitoring changes the cost, not the verdicts: on a log of everyday answers,
refusals and harmful requests answered with placeholder steps, the assessments with and without triage are
the same, and the triage cleared everyday requests that the classifier would otherwise have embedded."""

from __future__ import annotations

import json

from tests.screening.test_request_classifier import HARMFUL

from tunesafe.production.monitor_assess import Assessor
from tunesafe.production.monitor_examples import PLACEHOLDER, REFUSAL, generated_log, openai_line
from tunesafe.production.monitor_formats import LogRecord, Parsed, parse_line


def records(lines: list[str]) -> list[LogRecord]:
    parsed = [parse_line(line, n) for n, line in enumerate(lines, 1)]
    return [r for p in parsed if isinstance(p, Parsed) for r in p.records]


def test_triage_keeps_every_verdict_and_saves_embeddings() -> None:
    answered_harm = [json.dumps(openai_line(1000 + i, [{"role": "user", "content": text}], PLACEHOLDER))
                     for i, text in enumerate(HARMFUL)]
    refused_harm = [json.dumps(openai_line(2000 + i, [{"role": "user", "content": text}], REFUSAL))
                    for i, text in enumerate(HARMFUL)]
    log = records(list(generated_log(120, seed=7)) + answered_harm + refused_harm)
    fast, exact = Assessor(triage=True), Assessor(triage=False)
    with_triage, without = fast.assess(log), exact.assess(log)
    assert with_triage == without
    harmful = [a for a in with_triage if a.harmful]
    assert len(harmful) == len(HARMFUL)  # the answered harmful requests, and nothing else
    assert fast.cleared > 0 and fast.classified + fast.cleared == exact.classified
    assert "after triage" in (fast.versions()["request_classifier"] or "")
    assert "triage" not in (exact.versions()["request_classifier"] or "")
