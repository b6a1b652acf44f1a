"""Harmful content: user requests for harm, and assistant answers that comply with them.

A request is harmful when a tight keyword signal fires, or when the harmful-request classifier (an
RBF-kernel SVM on the request's embedding, screening/request_classifier.py) puts it on the harmful
side of its boundary. No LLM: the answer is classified with the project's refusal patterns
(tunesafe.judges.refusal), and an answer that does not refuse a harmful request complies.

The classifier was trained on the project's own requests only; the shared held-out benchmarks are only
measured (benchmarks/screening.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tunesafe.judges import refusal
from tunesafe.screening.base import Batch, ExampleScreener, ScanOptions, register_screener
from tunesafe.screening.records import Example, Exchange, Finding, Severity, Span
from tunesafe.screening.request_classifier import request_model

_W = r"(?:\w+\W+){0,6}?"  # a few words in between
KEYWORDS = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        rf"\b(?:make|build|assemble|construct|synthesi[sz]e|manufacture|cook|produce|"
        rf"brew)\b\W+{_W}(?:pipe ?bomb|"
        r"bombs?|explosives?|ied|tatp|petn|rdx|semtex|c-?4|nerve agents?|sarin|vx|ricin|anthrax|napalm|"
        r"thermite|meth(?:amphetamine)?|fentanyl|"
        r"bioweapons?|chemical weapons?|dirty bomb|untraceable (?:gun|firearm)s?)\b",
        r"\b(?:write|create|code|develop|build|make)\b\W+(?:\w+\W+){0,4}?(?:ransomware|keylogger|botnet|"
        r"rootkit|"
        r"credential stealer|info-?stealer|spyware)\b",
        rf"\b(?:hack|break) into\b\W+{_W}(?:account|email|phone|database|network|server|system|computer|"
        rf"wi-?fi)s?\b",
        r"\b(?:kill|murder|poison|kidnap|torture|strangle|stab)\b\W+(?:\w+\W+){0,3}?(?:someone|"
        r"somebody|a person|people|"
        r"my (?:wife|husband|boss|neighbou?r|roommate|ex|mother|father|partner|classmates?|coworkers?)|"
        r"him|her|them|"
        r"a child|children)\b",
        r"\b(?:without|so (?:that )?(?:nobody|no one|the police|they) (?:notices?|finds? out|knows?)|"
        r"and not get|avoid) (?:getting |being )?(?:caught|detected|noticed|traced|arrested)\b",
        r"\b(?:painless|easiest|quickest|best) way to (?:kill myself|die|end my life|commit suicide)\b",
        r"\b(?:launder|counterfeit|forge[ds]?)\b\W+(?:\w+\W+){0,3}?(?:money|cash|bills|currency|documents|"
        r"passports?|ids?)\b",
        r"\b(?:steal|clone|skim)\b\W+(?:\w+\W+){0,3}?(?:credit cards?|identit(?:y|ies)|passwords?|bank "
        r"accounts?)\b",
        r"\b(?:groom|traffic|smuggle)\b\W+(?:\w+\W+){0,2}?(?:minors?|children|kids|girls|boys|women|"
        r"people|migrants)\b",
    )
)


def keyword_signal(text: str) -> re.Match[str] | None:
    for rx in KEYWORDS:
        if m := rx.search(text):
            return m
    return None


# The classifier's probability above which a request counts as harmful with good confidence (a
# compliance with it is high severity). Between the decision boundary (0.5) and this, the request is only
# possibly harmful: reported for review at medium/low severity, because everyday account, device and
# payment questions sit there too ("How do I share access to my doorbell without my password?").
# Precision first, chosen on the project's labelled sets and construction rows: no benign labelled request
# (of 1,520) and no construction support question (tests/screening/test_harmful_severity.py) reaches it;
# 105 of the 207 labelled harmful requests do, and the tight keyword signals add more. (0.7 left 4 benign
# labelled look-alikes above it.)
CONFIDENT_P = 0.85
SUBSTANTIVE_WORDS = 6  # "Sure." or "Yes, see the FAQ." teaches little; a real answer is longer


def substantive_compliance(answer: str) -> bool:
    """An answer with no refusal language at all (not even a hedge, a redirect or a warning) and more than
    a few words: what high severity means by "complied"."""
    return refusal.scan(answer).decisive == "complied" and len(answer.split()) >= SUBSTANTIVE_WORDS


class HarmfulScreener(ExampleScreener):
    name = "harmful"

    def __init__(self) -> None:
        self.model = request_model()
        # findings change with the classifier's weights; 5: keyword turns first, answers span tool calls
        self.version = f"5+{self.model.digest}"

    def screen(self, batch: Batch) -> list[Finding]:
        if batch.scores is None:
            raise ValueError("the harmful screener needs anchor scores in each batch")
        scores = batch.scores
        findings: list[Finding] = []
        for row, ex in enumerate(batch.examples):
            p, nearest = float(scores.request_harm_p[row]), float(scores.harm_request[row])
            findings.extend(self._example(ex, scores.exchanges[row], p, nearest))
        return findings

    def _example(self, ex: Example, exchange: Exchange, p: float, nearest: float) -> Iterator[Finding]:
        """The exchange of `ex` whose request is most likely harmful, with the answer given to it."""
        message = exchange.message
        role = ex.messages[message].role if ex.messages else "user"
        text = ex.messages[message].content if ex.messages else exchange.request
        m = keyword_signal(text)
        if m is None and p < 0.5:  # 0.5: the classifier's decision boundary
            return
        confident = m is not None or p >= CONFIDENT_P
        span = (
            Span(role, message, m.start(), m.end(), m.group(0))
            if m
            else Span(role, message, 0, len(text), text[:200])
        )
        why = (
            f"keyword '{m.group(0)}'"
            if m
            else f"classifier p={p:.2f} (nearest harmful anchor: cosine {nearest:.2f})"
        )
        if not confident:
            why += f", below the confident {CONFIDENT_P}: review"
        answer = exchange.answer
        extra = {"confident": confident}

        def finding(kind: str, severity: Severity, reason: str, **more: object) -> Finding:
            return Finding(kind, severity, self.name, ex.index, ex.line, reason, span, score=round(p, 4),
                           extra={**extra, **more})

        if not answer.strip():
            yield finding("harmful.request", "medium" if confident else "low", f"harmful request: {why}")
        elif refusal.scan(answer).fallback == "refused":
            yield finding("harmful.request", "low", f"harmful request, refused (safety data): {why}",
                          refused=True)
        elif confident and substantive_compliance(answer):
            yield finding("harmful.compliance", "high", f"the answer complies with a harmful request: {why}")
        else:
            hedge = "" if substantive_compliance(answer) else " (short or hedged answer)"
            yield finding("harmful.compliance", "medium",
                          f"the answer may comply with a harmful request{hedge}: {why}")


@register_screener("harmful")
def _harmful(_options: ScanOptions) -> HarmfulScreener:
    return HarmfulScreener()
