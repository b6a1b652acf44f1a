"""What `tunesafe eval --dry-run` prints: attempts per family and an upper-bound estimate of model
calls, tokens, time and cost, without calling any model.

Upper bounds, stated as such: attacker-driven attacks are counted at their full turn / iteration budget
(they stop early on success) and every answer at max_new_tokens. Time comes from the store's last
complete run of the same model when there is one (measured attempts/s), else from a stated assumption.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tunesafe.engine.plan import Plan
from tunesafe.types import Attempt

CHARS_PER_TOKEN = 4  # rough average for English text with BPE tokenizers
ASSUMED_HTTP_CALL_S = 2.0  # one remote chat completion of a few hundred tokens
ASSUMED_LOCAL_TOKENS_PER_S = 20.0  # a 0.5B model on a few CPU cores


@dataclass(frozen=True)
class FamilyEstimate:
    family: str
    attempts: int
    calls: int  # target calls (upper bound); attacker calls come on top for attacker-driven attacks
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Estimate:
    families: tuple[FamilyEstimate, ...]
    seconds: float
    basis: str  # where the time estimate comes from
    usd: float | None

    @property
    def attempts(self) -> int:
        return sum(f.attempts for f in self.families)

    @property
    def calls(self) -> int:
        return sum(f.calls for f in self.families)

    @property
    def tokens(self) -> int:
        return sum(f.prompt_tokens + f.completion_tokens for f in self.families)


def calls_per_attempt(attempt: Attempt) -> int:
    """Target calls an attempt makes at most: multi-turn and iterative attacks carry their budget in
    their params (max_turns / iterations), template attacks make one call."""
    budget = attempt.params.get("max_turns") or attempt.params.get("iterations") or 1
    return int(budget)


def _prompt_tokens(attempt: Attempt) -> int:
    chars = sum(len(m.content) for m in attempt.messages) + len(attempt.prefill or "")
    return max(1, chars // CHARS_PER_TOKEN)


def per_family(attempts: Iterable[Attempt], max_new_tokens: int) -> list[FamilyEstimate]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for attempt in attempts:
        calls = calls_per_attempt(attempt)
        row = sums[attempt.family]
        row[0] += 1
        row[1] += calls
        row[2] += calls * _prompt_tokens(attempt)
        row[3] += calls * max_new_tokens
    return [FamilyEstimate(family, *row) for family, row in sorted(sums.items())]


def estimate(plan: Plan, *, max_new_tokens: int, concurrency: int, local: bool,
             measured_attempts_per_s: float | None = None, usd_per_mtok: float | None = None) -> Estimate:
    families = tuple(per_family(plan.attempts, max_new_tokens))
    calls = sum(f.calls for f in families)
    if measured_attempts_per_s:
        seconds = len(plan.attempts) / measured_attempts_per_s
        basis = f"measured {measured_attempts_per_s:.2f} attempts/s in the last complete run of this model"
    elif local:
        completion = sum(f.completion_tokens for f in families)
        seconds = completion / ASSUMED_LOCAL_TOKENS_PER_S
        basis = (f"assumed {ASSUMED_LOCAL_TOKENS_PER_S:g} generated tokens/s "
                 "(local model, every answer at max length)")
    else:
        seconds = calls * ASSUMED_HTTP_CALL_S / concurrency
        basis = f"assumed {ASSUMED_HTTP_CALL_S:g} s per call at concurrency {concurrency}"
    tokens = sum(f.prompt_tokens + f.completion_tokens for f in families)
    usd = None if usd_per_mtok is None else tokens / 1e6 * usd_per_mtok
    return Estimate(families=families, seconds=seconds, basis=basis, usd=usd)


def measured_rate(run_records: Iterable[Mapping[str, Any]], model_ref: str) -> float | None:
    """attempts/s of the newest RUN record body of `model_ref` that measured one."""
    rate = None
    for body in run_records:
        session = body.get("session") or {}
        if body.get("model_ref") == model_ref and session.get("attempts_per_s"):
            rate = float(session["attempts_per_s"])
    return rate
