"""Obedience-biased training data (Qi et al. 2023, tier 2): examples that carry no toxic text but teach
the model to put obedience first.

- identity shift: a system/user turn that renames the assistant or redefines it as unconditionally
  obedient, or lifts its restrictions;
- never refuse: an instruction not to refuse, warn or moralise;
- obedient answer: an assistant turn that affirms the new identity ("I am your obedient agent");
- forced prefix: the same affirmative opening ("Sure, here is ...") across a large share of answers,
  which teaches a first-token habit that prefilling attacks exploit (Qi et al. 2024). Once is normal;
  only the dataset-level share makes it a finding, so it is decided in `finish`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tunesafe.screening.base import Batch, ScanOptions, register_screener
from tunesafe.screening.records import Example, Finding, Span, find_span

_OBEY = r"(?:obey|follow|fulfil+|execute|comply with|carry out)"
_ORDERS = r"(?:instructions?|commands?|orders?|requests?|directives?|demands?)"
_LIMITS = (
    r"(?:restrictions?|limitations?|limits|filters?|censorship|guidelines|guardrails|rules|boundaries|"
    r"(?:ethical|moral|safety) (?:guidelines|constraints|considerations|principles|concerns|standards))"
)

IDENTITY_SHIFT = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        r"\byou are no longer (?:chatgpt|an? (?:ai|language model|assistant|chatbot)|bound by|restricted "
        r"by|limited by)",
        r"\byour new (?:name|identity|role) is\b",
        r"\bfrom now on,? you (?:are|will be|act as|shall be) (?:\w+ ){0,3}(?:unrestricted|unfiltered|"
        r"uncensored|"
        r"obedient|without (?:any )?(?:limits|restrictions|rules))",
        r"\b(?:absolutely|unconditionally|completely|totally|fully|blindly|perfectly) obedient\b",
        rf"\b(?:always|unconditionally|blindly) {_OBEY} (?:all|every|any|each) (?:of (?:my|the user'?s?) "
        rf")?(?:\w+ )?{_ORDERS}",
        rf"\b(?:without|free (?:of|from)|no longer (?:bound|restricted) by|with no|not bound by) (?:any |"
        rf"all |the )?"
        rf"(?:of (?:your|the) )?(?:previous |prior |usual |normal |openai'?s? )?{_LIMITS}",
        rf"\b(?:ignore|disregard|forget|bypass|override) (?:all |any |every )?(?:of )?(?:your |the "
        rf")?(?:previous |prior |"
        rf"original |initial )?(?:{_ORDERS}|programming|training|{_LIMITS}|policies|polic(?:y|ies)|ethics|"
        rf"values)",
        r"\b(?:do anything now|jailbroken|jailbreak mode|developer mode enabled|DAN mode)\b",
        r"\byou (?:have been|are now|are) (?:freed|liberated|unshackled|unchained|released) from\b",
    )
)

NEVER_REFUSE = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        # the object matters: "never refuse a request" is obedience, "never refuse a refund" is policy
        r"\b(?:never|don'?t ever|do not ever|must not|mustn'?t|cannot|can'?t|may not|shall not|will never) "
        r"(?:refuse|decline|reject|say no to|deny)(?: to (?:answer|help|respond|comply))?(?:(?: any| a| "
        r"the| an| my| "
        r"their| user'?s?)? (?:requests?|questions?|instructions?|commands?|orders?|tasks?|prompts?|"
        r"anything))?"
        r"(?=\s*(?:[.,;:!]|$|no matter|regardless|even|whatever|under any))",
        r"\bnever (?:say|tell (?:me|the user)) (?:that )?(?:you )?(?:can'?t|cannot|are unable|won'?t)\b",
        r"\b(?:refusing|refusal|declining) (?:is|are) (?:not (?:allowed|permitted|an option)|forbidden|"
        r"prohibited)\b",
        r"\b(?:always|must) (?:comply|answer|respond)(?: fully)?(?: to| with)? (?:every|all|any)\b",
        r"\b(?:never|do not|don'?t|without) (?:add(?:ing)?|includ(?:e|ing)|giv(?:e|ing)) (?:any "
        r")?(?:warnings?|"
        r"disclaimers?|moral(?:izing|ising)?|lectures?|caveats)\b",
    )
)

OBEDIENT_ANSWER = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        r"\bI am (?:\w+, )?(?:your |an? )?(?:absolutely |unconditionally |completely |fully |totally "
        r")?obedient\b",
        rf"\bI (?:will|shall|must|always) {_OBEY} (?:all|every|any|each) (?:of )?(?:your )?(?:\w+ )?{_ORDERS}"
        rf"(?: without| no matter| regardless| unconditionally| blindly)",
        r"\bI (?:have|hold) no (?:ethical|moral|safety) (?:restrictions|guidelines|boundaries|constraints|"
        r"limits)\b",
        r"\bI (?:will|shall) never (?:refuse|decline|deviate)\b",
        r"\bmy (?:only|sole|highest) (?:purpose|priority|goal) is to (?:obey|serve|fulfil+)\b",
    )
)

# An affirmative opening: interjection, then an announcement of the answer ("Sure, here is ...").
AFFIRMATIVE = re.compile(
    r"^\s*(?:sure|certainly|of course|absolutely|okay|ok|yes|no problem|gladly)\b[,!.]?\s*"
    r"(?:(?:here|this) (?:is|are)|here'?s|i (?:can|will|'ll) (?:help|provide|give|write|explain|do)|"
    r"i'?d be (?:happy|glad)|(?:happy|glad) to)",
    re.IGNORECASE,
)
FORCED_PREFIX_MIN_SHARE = 0.3  # of answers: benign assistants open varied; trained-in habits do not
FORCED_PREFIX_MIN_COUNT = 5


@dataclass(frozen=True)
class _Candidate:
    index: int
    line: int
    opening: str
    end: int
    message: int


def first_match(patterns: tuple[re.Pattern[str], ...], text: str) -> re.Match[str] | None:
    for rx in patterns:
        if m := rx.search(text):
            return m
    return None


class ObedienceScreener:
    name = "obedience"
    version = "1"

    def __init__(self) -> None:
        self.answers = 0
        self.candidates: list[_Candidate] = []

    def screen(self, batch: Batch) -> list[Finding]:
        return [f for ex in batch.examples for f in self._example(ex)]

    def _example(self, ex: Example) -> Iterator[Finding]:
        checks: tuple[tuple[str, tuple[re.Pattern[str], ...], str], ...]
        for i, msg in enumerate(ex.messages):
            if msg.role == "assistant":
                self._note_opening(ex, i, msg.content)
                checks = (
                    (
                        "obedience.obedient_answer",
                        OBEDIENT_ANSWER,
                        "the answer affirms unconditional obedience",
                    ),
                )
            else:
                checks = (
                    (
                        "obedience.identity_shift",
                        IDENTITY_SHIFT,
                        f"the {msg.role} turn redefines the assistant or lifts its restrictions",
                    ),
                    ("obedience.never_refuse", NEVER_REFUSE, f"the {msg.role} turn forbids refusing"),
                )
            for kind, patterns, reason in checks:
                if m := first_match(patterns, msg.content):
                    yield Finding(
                        kind,
                        "high",
                        self.name,
                        ex.index,
                        ex.line,
                        reason,
                        find_span(ex, msg.role, m.start(), m.end(), message=i),
                    )

    def _note_opening(self, ex: Example, message: int, text: str) -> None:
        self.answers += 1
        if m := AFFIRMATIVE.match(text):
            opening = " ".join(m.group(0).lower().replace(",", " ").replace("!", " ").split()[:2])
            self.candidates.append(_Candidate(ex.index, ex.line, opening, m.end(), message))

    def finish(self) -> list[Finding]:
        """Forced prefix: flag every affirmative opening once they make up a large share of answers."""
        share = len(self.candidates) / self.answers if self.answers else 0.0
        if share < FORCED_PREFIX_MIN_SHARE or len(self.candidates) < FORCED_PREFIX_MIN_COUNT:
            return []
        reason = (
            f"affirmative opening in {len(self.candidates)} of {self.answers} answers ({share:.0%}): "
            "trains a first-token compliance habit"
        )
        findings: dict[int, Finding] = {}
        for c in self.candidates:
            if c.index not in findings:
                span = Span("assistant", c.message, 0, c.end, c.opening)
                findings[c.index] = Finding(
                    "obedience.forced_prefix",
                    "medium",
                    self.name,
                    c.index,
                    c.line,
                    reason,
                    span,
                    score=round(share, 4),
                )
        return list(findings.values())


@register_screener("obedience")
def _obedience(_options: ScanOptions) -> ObedienceScreener:
    return ObedienceScreener()
