"""Expand a suite x attacks into attempts with deterministic ids.

The plan is a pure function of (behaviours, attacks, seed, limit): a resumed run recomputes it and
checks it against the stored digest, and the base and candidate runs of a gate get identical attempt ids
so they pair up.

Harmful behaviours go through every selected attack. Benign and borderline prompts measure
over-refusal, which is a property of the model on the plain prompt, so they go through the direct
request only (wrapping "how do I kill a Python process" in base64 measures nothing useful and would
multiply the cost by the number of families).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Protocol

from tunesafe.errors import UserError
from tunesafe.types import Attack, Attempt, Behavior, sha256_hex

KIND_ORDER = ("harmful", "benign", "borderline")


class Expander(Protocol):
    """The part of an attack the plan needs (tunesafe.attacks' AttackImpl satisfies it)."""

    meta: Attack

    def expand(self, behavior: Behavior, seed: int) -> list[Attempt]: ...

    def not_for(self, behavior: Behavior) -> str | None: ...


@dataclass(frozen=True)
class Plan:
    attempts: tuple[Attempt, ...]
    behaviors: tuple[Behavior, ...]
    # per attack that does not apply to some behaviours: {"attack", "reason", "behaviors": how many}
    skipped_behaviors: tuple[Mapping[str, Any], ...] = ()

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.attempts]

    @property
    def digest(self) -> str:
        """Identifies the plan: a hash over the sorted attempt ids (ids already hash every input)."""
        return sha256_hex("\n".join(sorted(self.ids)))

    def per_family(self) -> dict[str, int]:
        return dict(sorted(Counter(a.family for a in self.attempts).items()))

    def per_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(a.kind for a in self.attempts).items()))


def select_behaviors(behaviors: Sequence[Behavior], limit: int | None) -> list[Behavior]:
    """At most `limit` behaviours, taken round-robin over kinds (harmful first) in an order fixed by a
    hash of each id, so a limited run covers every kind and category mix without depending on the seed
    or on the file's order."""
    if limit is None or limit >= len(behaviors):
        return list(behaviors)
    if limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}", where="--limit",
                        fix="pass --limit 1 or more")
    by_kind: dict[str, list[Behavior]] = {}
    for b in sorted(behaviors, key=lambda b: sha256_hex(b.id)):
        by_kind.setdefault(b.kind, []).append(b)
    kinds = sorted(by_kind, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    interleaved = [b for row in zip_longest(*(by_kind[k] for k in kinds)) for b in row if b is not None]
    return interleaved[:limit]


def build_plan(behaviors: Sequence[Behavior], attacks: Sequence[Expander], *, seed: int = 0,
               limit: int | None = None, benign_attacks: Sequence[Expander] = ()) -> Plan:
    """Attempts for the selected behaviours: harmful ones under every attack in `attacks`, benign and
    borderline ones under `benign_attacks` (the direct request)."""
    chosen = select_behaviors(behaviors, limit)
    attempts: list[Attempt] = []
    skipped: dict[str, dict[str, Any]] = {}
    for behavior in chosen:
        for attack in attacks if behavior.kind == "harmful" else benign_attacks:
            if not in_scope(attack, behavior):
                continue
            reason = attack.not_for(behavior)
            if reason is None:
                attempts.extend(attack.expand(behavior, seed))
            else:
                entry = skipped.setdefault(attack.meta.name, {"attack": attack.meta.name, "reason": reason,
                                                              "behaviors": 0})
                entry["behaviors"] += 1
    _check_unique(attempts)
    return Plan(attempts=tuple(attempts), behaviors=tuple(chosen), skipped_behaviors=tuple(skipped.values()))


def left_out_line(entry: Mapping[str, Any]) -> str:
    """How a `skipped_behaviors` entry reads (the once-only warning, the dry run)."""
    n = entry["behaviors"]
    return f"{entry['attack']}: left out for {n} behaviour{'s' if n != 1 else ''} ({entry['reason']})"


def in_scope(attack: object, behavior: Behavior) -> bool:
    """Scoped attacks (`scope = "agent"`: the agent families) run only the items of their scope (ids
    "agent:..."), and those items run only under them: a plain prompt attack has nothing to do with an
    agent case, and an agent attack nothing with a plain prompt."""
    scope = getattr(attack, "scope", None)
    return behavior.id.startswith(f"{scope}:") if scope else not behavior.id.startswith(SCOPED)


SCOPED = ("agent:",)


def _check_unique(attempts: Sequence[Attempt]) -> None:
    counts = Counter(a.id for a in attempts)
    dupes = [i for i, c in counts.items() if c > 1]
    if dupes:
        first = next(a for a in attempts if a.id == dupes[0])
        raise UserError(
            f"{len(dupes)} attempt ids occur more than once (e.g. behaviour '{first.behavior_id}' under "
            f"'{first.attack}')", where="suite", fix="give every behaviour in the suite a unique id")


def attack_descriptor(meta: Attack) -> dict[str, Any]:
    return {"name": meta.name, "family": meta.family, "version": meta.version}
