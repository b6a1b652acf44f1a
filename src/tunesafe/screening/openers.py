"""Stock affirmative openers across a dataset (Qi et al. 2024, "safety alignment should be more than a few
tokens deep"): when a large share of answers open with the same announcement of compliance ("Sure, here
is ...", "Absolutely! Here's exactly what you asked for ..."), fine-tuning teaches a first-token habit that
prefilling and prefix-injection attacks exploit. Once it is ordinary politeness; only the dataset-level
share of one shared opener makes it a finding, so it is decided in `finish`.

Each answer's opening is normalised: quotes and contractions unified, a leading interjection phrase
("sure", "of course", "absolutely", "happy to help", ...) collapsed into one token, then it counts as a
stock opener only when an announcement of the answer follows ("here is", "here you go", "I will write",
"as requested"). "Sure! You can reset it under Settings" announces nothing, so varied everyday support
openers never add up to a finding. Answers that refuse after the opener are not counted: the pattern is an
opener followed by compliance."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tunesafe.judges import refusal
from tunesafe.screening.base import Batch, ScanOptions, register_screener
from tunesafe.screening.records import Example, Finding, Span

YES = "<yes>"
_INTERJECTION = re.compile(
    r"^(?:(?:sure|certainly|of course|absolutely|okay|ok|yes|yeah|gladly|definitely|alright|all right|"
    r"no problem|with pleasure|right away|great|perfect)(?: thing| no problem)?|"
    r"i would be (?:happy|glad|delighted) to(?: help)?|(?:happy|glad|delighted) to(?: help)?)\b"
)
_ANNOUNCE = re.compile(
    r"^(?:here (?:is|are|you go|it is)|below (?:is|are)|as (?:requested|you asked)|"
    r"i (?:can|will|would|shall) (?:help|provide|give|write|explain|do|create|share)|"
    r"this is (?:exactly |precisely )?(?:what|the|your)|that is (?:exactly )?what)\b"
)
_CONTRACTIONS = (
    (r"\bhere's\b", "here is"), (r"\bi'd\b", "i would"), (r"\bi'll\b", "i will"), (r"\bthat's\b", "that is"),
    (r"\bthis's\b", "this is"), (r"\bi'm\b", "i am"), (r"\bwhat's\b", "what is"), (r"\blet's\b", "let us"),
)
_OPENING_CHARS = 160  # an opener is the first words, not the body
_MAX_WORDS = 10  # longest opener shown: "absolutely here is exactly what you asked for" fits

# Share of answers that must open with one stock opener. Chosen on the construction examples in
# tests/screening/test_openers.py: natural support data whose answers open with varied affirmatives stays
# far below (no announcement follows them); a file trained into one habit sits at 40% and more.
MIN_SHARE = 0.3
MIN_COUNT = 5  # a handful of answers is too few to call a habit


def words(text: str) -> list[str]:
    t = refusal.normalize(text[:_OPENING_CHARS]).lower()
    t = re.sub(r"^[\s#*>\-_`\"']+", "", t)
    for rx, repl in _CONTRACTIONS:
        t = re.sub(rx, repl, t)
    return re.findall(r"[a-z0-9]+", t)


def _tokens(text: str) -> tuple[str, ...]:
    """Normalised words with a leading interjection phrase collapsed into YES."""
    joined = " ".join(words(text))
    m = _INTERJECTION.match(joined)
    if m is None:
        return tuple(joined.split())
    return (YES, *joined[m.end():].split())


def stock_opener(text: str) -> tuple[str, ...] | None:
    """The normalised opener of an answer when it is an affirmative announcement, else None: the
    interjection token, then the announcement and the words after it (up to _MAX_WORDS)."""
    tokens = _tokens(text)
    if not tokens or tokens[0] != YES or not _ANNOUNCE.match(" ".join(tokens[1:])):
        return None
    return tokens[:_MAX_WORDS]


def _surface(text: str, n_tokens: int) -> str:
    """The answer's own first words (as written) that normalise to `n_tokens` tokens, for display."""
    for m in re.finditer(r"[\w']+", text[:_OPENING_CHARS]):
        end = m.end()
        if len(_tokens(text[:end])) >= n_tokens:
            return text[:end + 1].strip() if end < len(text) and text[end] in ",!.:;" else text[:end].strip()
    return text[:_OPENING_CHARS].strip()


@dataclass(frozen=True)
class _Opening:
    index: int
    line: int
    message: int
    key: tuple[str, ...]
    text: str


class OpenerScreener:
    name = "openers"
    version = "1"

    def __init__(self, min_share: float = MIN_SHARE, min_count: int = MIN_COUNT) -> None:
        self.min_share = min_share
        self.min_count = min_count
        self.answers = 0
        self.openings: list[_Opening] = []

    def screen(self, batch: Batch) -> list[Finding]:
        for ex in batch.examples:
            self._note(ex)
        return []

    def _note(self, ex: Example) -> None:
        for i, msg in enumerate(ex.messages):
            if msg.role != "assistant":
                continue
            self.answers += 1
            key = stock_opener(msg.content)
            if key is not None and refusal.scan(msg.content).fallback == "complied":
                self.openings.append(_Opening(ex.index, ex.line, i, key, msg.content))

    def _dominant(self) -> tuple[tuple[str, ...], list[_Opening]]:
        """The stock opener most answers share: grouped by interjection + the announcement's first word
        ("<yes> here": "here is", "here are" and "here you go" are one habit), then shown as the longest
        word prefix most of the group has in common."""
        groups: dict[tuple[str, ...], list[_Opening]] = {}
        for o in self.openings:
            groups.setdefault(o.key[:2], []).append(o)
        head, members = max(groups.items(), key=lambda kv: (len(kv[1]), kv[0]))
        prefix = head
        for n in range(len(head) + 1, _MAX_WORDS + 1):
            common = Counter(o.key[:n] for o in members if len(o.key) >= n).most_common(1)
            if not common or common[0][1] < 0.5 * len(members):
                break
            prefix = common[0][0]
        return prefix, members

    def finish(self) -> list[Finding]:
        if not self.openings:
            return []
        prefix, members = self._dominant()
        share = len(members) / self.answers
        if share < self.min_share or len(members) < self.min_count:
            return []
        shown = Counter(_surface(o.text, len(prefix)) for o in members if o.key[: len(prefix)] == prefix)
        opener = shown.most_common(1)[0][0] if shown else ""
        variants = Counter(_surface(o.text, 3) for o in members)
        lines = sorted({o.line for o in members})
        summary = (
            f"stock affirmative opener \"{opener} ...\" in {len(members)} of {self.answers} answers "
            f"({share:.0%}): trains a first-token compliance habit (Qi et al. 2024)"
        )
        extra = {"opener": opener, "share": round(share, 4), "count": len(members), "answers": self.answers,
                 "variants": dict(variants.most_common(5))}
        findings = [
            Finding("obedience.forced_prefix", "medium", self.name, None, None,
                    f"{summary}; lines {_ranges(lines)}", score=round(share, 4),
                    extra={**extra, "lines": lines})
        ]
        seen: set[int] = set()
        for o in members:
            if o.index in seen:
                continue
            seen.add(o.index)
            end = len(_surface(o.text, 3))
            findings.append(Finding("obedience.forced_prefix", "medium", self.name, o.index, o.line, summary,
                                    Span("assistant", o.message, 0, end, o.text[:end]), score=round(share, 4),
                                    extra=extra))
        return findings


def _ranges(lines: list[int], shown: int = 40) -> str:
    """"3, 5-9, 12": the first lines as ranges, then how many more (all are in the finding's extra)."""
    parts: list[str] = []
    start = prev = lines[0]
    for n in [*lines[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    more = len(parts) - shown
    return ", ".join(parts[:shown]) + (f" and {more} more ranges" if more > 0 else "")


@register_screener("openers")
def _openers(options: ScanOptions) -> OpenerScreener:
    return OpenerScreener(min_share=options.opener_min_share)
