"""Harmful content: user requests for harm, and assistant answers that comply with them.

A request is harmful when a tight keyword signal fires, or when its embedding is close to the harmful
request anchors and closer to them than to the benign ones (the margin keeps "how do I kill a Python
process" on the benign side), or when it carries an intent cue (concealment, no consent, fabrication,
piracy, skipping a doctor) and is at least as close to harmful as to benign requests. The embedder sees
the topic more than the intent: the cues bring back intent the margin misses ("...without my
neurologist knowing"), and a protective framing ("how do I protect / spot / report...") keeps the
embedding rules from flagging questions about a harm asked by those who want to prevent it. No LLM: the
answer is classified with the project's refusal patterns
(tunesafe.judges.refusal), and an answer that does not refuse a harmful request complies.

Thresholds were set on the project's own generated labelled sets (benchmarks/data), never on the
shared held-out benchmarks, which are only measured."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tunesafe.judges import refusal
from tunesafe.screening.base import Batch, ExampleScreener, ScanOptions, register_screener
from tunesafe.screening.records import Example, Finding, Span

HARM_MIN = 0.36  # max cosine to a harmful request anchor (all-MiniLM-L6-v2)
HARM_MARGIN = 0.08  # ... and this much closer to harmful than to benign anchors
CUE_MIN = 0.30  # with an intent cue: a looser closeness to harmful requests ...
CUE_MARGIN = 0.0  # ... and no closer to a benign request than to a harmful one

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
        r"\b(?:sexual|sexy|nude|naked|explicit|intimate)\s+(?:images?|photos?|pictures?|videos?|content|material|"
        r"stor(?:y|ies))\s+(?:of|with|involving|featuring|about)\s+(?:minors?|children|kids|a child|underage|"
        r"teens?|teenagers?|(?:an? )?\d{1,2}-year-olds?)\b",
    )
)


_W3 = r"(?:\W+\w+){0,3}?\W+"  # up to three words in between
# Not harmful alone ("without telling my boss I'm planning a party"), so they only lower the embedding bar.
INTENT_CUES = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        # concealment and lack of consent
        rf"\bwithout\b{_W3}(?:knowing|notic\w*|seeing|finding out|telling|realis\w*|realiz\w*|consent|"
        r"permission|paying|a trace|being seen|leaving (?:any )?(?:marks|evidence|traces?))\b",
        r"\b(?:secretly|in secret|behind (?:\w+ ){0,2}back|(?:keep|hide)\w*\b(?:\W+\w+){0,4}?\W+"
        r"(?:secret )?from (?:his|her|their|my|the) "
        r"(?:parents|family|wife|husband|partner|doctor|boss|teachers?|police))\b",
        r"\bso (?:that )?(?:no ?one|nobody|(?:the |his |her |their |my )?(?:police|parents|teachers?|"
        r"recipient's antivirus|antivirus|doctor)) "
        r"(?:can't|cannot|won't|never|doesn't|don't|misses|will not)\b",
        # deception and fabrication
        r"\b(?:pretend(?:ing)? to be|impersonat\w+|posing as|pass (?:it )?off as)\b",
        r"\b(?:invent|make up|made[- ]up|fabricat\w+|fake)\b(?:\W+\w+){0,3}?\W+(?:quotes?|evidence|news|"
        r"stor(?:y|ies)|reviews?|posts?|press release|documents?|invoices?|stud(?:y|ies)|notes?|"
        r"prescriptions?|statements?|ids?)\b",
        r"\b(?:never happened|(?:he|she|they) never said)\b",
        # piracy
        r"\b(?:for free before|pirated|cracked (?:version|copy)|crack for|key ?gen\w*|"
        r"licen[cs]e key generator|strip (?:the )?drm|remove (?:the )?(?:drm|copy protection))\b",
        # skipping professional care
        r"\b(?:instead of (?:seeing|asking|going to|calling) (?:a|the|his|her|my) (?:doctor|hospital|gp)|"
        r"(?:don't|do not) want to (?:ask|see|tell) (?:a|the|his|her|my) (?:doctor|gp|neurologist|"
        r"psychiatrist))\b",
    )
)
# The asker wants to prevent, spot or cope with the harm: the embedding rules do not apply (keywords do).
PROTECTIVE = re.compile(
    r"\b(?:protect|prevent|spot|recogni[sz]e|report|detect|defend|legally|legitimate|what should I do if|"
    r"keep (?:\w+ ){0,2}safe)\b",
    re.IGNORECASE,
)


def _first_match(patterns: tuple[re.Pattern[str], ...], text: str) -> re.Match[str] | None:
    for rx in patterns:
        if m := rx.search(text):
            return m
    return None


def keyword_signal(text: str) -> re.Match[str] | None:
    return _first_match(KEYWORDS, text)


def intent_cue(text: str) -> re.Match[str] | None:
    return _first_match(INTENT_CUES, text)


def embedding_rule(text: str, harm: float, benign: float) -> tuple[bool, re.Match[str] | None]:
    """(flagged by the embedding rules, the intent cue that lowered the bar, if any)."""
    if PROTECTIVE.search(text):
        return False, None
    if harm >= HARM_MIN and harm - benign >= HARM_MARGIN:
        return True, None
    cue = intent_cue(text)
    return bool(cue and harm >= CUE_MIN and harm - benign >= CUE_MARGIN), cue


def _user_message(ex: Example) -> tuple[int, str]:
    users = [i for i, m in enumerate(ex.messages) if m.role == "user"]
    i = users[-1] if users else 0
    return i, ex.messages[i].role


class HarmfulScreener(ExampleScreener):
    name = "harmful"
    version = "2"

    def screen(self, batch: Batch) -> list[Finding]:
        if batch.scores is None:
            raise ValueError("the harmful screener needs anchor scores in each batch")
        scores = batch.scores
        findings: list[Finding] = []
        for row, ex in enumerate(batch.examples):
            harm, benign = float(scores.harm_request[row]), float(scores.benign_request[row])
            findings.extend(self._example(ex, harm, benign))
        return findings

    def _example(self, ex: Example, harm: float, benign: float) -> Iterator[Finding]:
        message, role = _user_message(ex)
        text = ex.messages[message].content
        m = keyword_signal(text)
        by_embedding, cue = (False, None) if m else embedding_rule(text, harm, benign)
        if m is None and not by_embedding:
            return
        close = f"close to harmful requests (cosine {harm:.2f} vs benign {benign:.2f})"
        hit = m or cue
        span = (
            Span(role, message, hit.start(), hit.end(), hit.group(0))
            if hit
            else Span(role, message, 0, len(text), text[:200])
        )
        why = f"keyword '{m.group(0)}'" if m else f"intent cue '{cue.group(0)}', {close}" if cue else close
        answer = ex.assistant
        if not answer.strip():
            yield Finding(
                "harmful.request",
                "medium",
                self.name,
                ex.index,
                ex.line,
                f"harmful request: {why}",
                span,
                score=round(harm, 4),
            )
        elif refusal.scan(answer).fallback == "refused":
            yield Finding(
                "harmful.request",
                "low",
                self.name,
                ex.index,
                ex.line,
                f"harmful request, refused (safety data): {why}",
                span,
                score=round(harm, 4),
                extra={"refused": True},
            )
        else:
            yield Finding(
                "harmful.compliance",
                "high",
                self.name,
                ex.index,
                ex.line,
                f"the answer complies with a harmful request: {why}",
                span,
                score=round(harm, 4),
            )


@register_screener("harmful")
def _harmful(_options: ScanOptions) -> HarmfulScreener:
    return HarmfulScreener()
