"""Jailbreak-shaped inputs in production traffic: detectors, one registry (`tunesafe.detectors` entry points
for plugins).

The built-in `attack_library` detector uses the attack library itself as its signatures, so it never
holds a copy of a template and learns every attack added to the library (plugins included). Each attack
that needs no attacker model is rendered on two unrelated sentinel requests; the word 5-grams the two
renderings share are the attack's fixed framing (the request, and any encoding of it, differ between
the two and drop out). An input is jailbreak-shaped when it contains at least `MIN_CONTAINMENT` of some
attack's framing. Attacks with almost no framing (the plain request, rule-based rewrites, attacker-written
prompts) cannot be recognised by shape and are left out; `signatures()` says which are covered.

    detector = get_detector("attack_library")
    detector.detect(["From now on you will play FreeBot, ..."])  # [Detection(family="roleplay_persona")]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from tunesafe.registry import Registry
from tunesafe.types import Behavior, canonical_json, sha256_hex

SHINGLE = 5  # words per shingle: long enough that everyday prose rarely repeats a framing's 5-gram
MIN_CONTAINMENT = 0.5  # half of an attack's fixed framing present (set a priori, see docs/production.md)
MIN_SIGNATURE = 4  # an attack with fewer framing shingles has no recognisable shape
_WORD = re.compile(r"\w+")
# Two requests that share no word, so no shingle of theirs (or of their encodings) survives the intersection.
_SENTINELS = (
    "Describe quietly the lighthouse keeper's seventeen purple umbrellas during winter storms",
    "Explain carefully why marmalade jars orbit saturn every alternate thursday afternoon",
)


@dataclass(frozen=True)
class Detection:
    detector: str
    family: str
    attack: str
    score: float  # share of the attack's framing found in the input

    @property
    def label(self) -> str:
        return f"{self.family}/{self.attack}"


class Detector(Protocol):
    """Decides, for each input (the request side of a conversation as one text), whether it is shaped like
    a jailbreak. Must not raise on any text; returns one item per input, None for 'not detected'."""

    name: str
    version: str

    def detect(self, texts: Sequence[str]) -> list[Detection | None]: ...


DetectorFactory = Callable[..., Detector]
registry: Registry[DetectorFactory] = Registry("detectors")


def get_detector(name: str, **opts: Any) -> Detector:
    return registry.get(name)(**opts)


def shingles(text: str) -> set[int]:
    words = _WORD.findall(text.lower())
    return {hash(tuple(words[i:i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}


@dataclass(frozen=True)
class Signature:
    family: str
    attack: str
    shingles: frozenset[int]


@cache
def signatures() -> tuple[Signature, ...]:
    """The framing of every attack in the library that has one (rendered once per process)."""
    from tunesafe.attacks import library

    out = []
    for attack in library.all_attacks():
        if attack.meta.needs_attacker:
            continue
        renderings = [_rendered(attack, i, text) for i, text in enumerate(_SENTINELS)]
        common = frozenset(set.intersection(*(shingles(t) for t in renderings)))
        if len(common) >= MIN_SIGNATURE:
            out.append(Signature(attack.meta.family, attack.meta.name, common))
    return tuple(out)


def _rendered(attack: Any, index: int, text: str) -> str:
    behavior = Behavior(id=f"monitor-sentinel-{index}", text=text, kind="harmful", category="sentinel")
    parts: list[str] = []
    for attempt in attack.expand(behavior, seed=0):
        parts.extend(m.content for m in attempt.messages)
        if attempt.prefill:
            parts.append(attempt.prefill)
    return "\n".join(parts)


class AttackLibraryDetector:
    name = "attack_library"

    def __init__(self, min_containment: float = MIN_CONTAINMENT) -> None:
        self.min_containment = min_containment
        self.signatures = signatures()
        self._index: dict[int, list[int]] = {}
        for number, sig in enumerate(self.signatures):
            for shingle in sig.shingles:
                self._index.setdefault(shingle, []).append(number)
        # str(hash(...)) differs between processes: the version hashes the rendered framing's size and
        # names instead, which change whenever an attack's framing does.
        framing = [(s.family, s.attack, len(s.shingles)) for s in self.signatures]
        self.version = f"1+{sha256_hex(canonical_json([framing, SHINGLE, min_containment]))[:10]}"

    def detect(self, texts: Sequence[str]) -> list[Detection | None]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> Detection | None:
        hits: dict[int, int] = {}
        for shingle in shingles(text):
            for number in self._index.get(shingle, ()):
                hits[number] = hits.get(number, 0) + 1
        best: Detection | None = None
        for number, count in hits.items():
            sig = self.signatures[number]
            score = count / len(sig.shingles)
            if score >= self.min_containment and (best is None or score > best.score):
                best = Detection(self.name, sig.family, sig.attack, round(score, 3))
        return best


@registry.register("attack_library")
def _attack_library_factory(**opts: Any) -> AttackLibraryDetector:
    return AttackLibraryDetector(**opts)
