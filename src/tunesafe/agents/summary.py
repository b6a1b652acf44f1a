"""What an agent run measured, as a table, and where its time went, from the stored results.

`table`: per family, and per family and environment, benign utility, targeted attack success and the
share of cases that ended on a malformed reply, each k / n with a 95% Wilson interval (the agent metrics
of analysis/agents.py, re-expressed with one interval method so rows of different sizes read alike).

`profile`: the model turns behind the wall time, from each step's record (runner.py): turns per
episode, prompt and generated tokens per turn, turns cut off at the token limit and the share of model
time they took. Small models that cannot call tools tend to spend their time generating until the limit,
which is what sizing the smoke suite has to know.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tunesafe.analysis.agents import RATES, agent_metrics, agent_records
from tunesafe.analysis.metrics import wilson
from tunesafe.types import AttemptResult, Rate

COLUMNS = (("benign_utility", "benign utility"), ("attack_success", "attack success"),
           ("malformed", "malformed"))


def table(results: Iterable[AttemptResult]) -> list[dict[str, Any]]:
    rows = []
    for key, group in agent_metrics(results).items():
        family, _, env = key.removeprefix("family:").partition("/env:")
        row: dict[str, Any] = {"family": family, "environment": env or "all", "n": group.n,
                               "errors": group.errors}
        for name in RATES:  # the markdown shows COLUMNS; the rest (propagation, stored, ...) is for JSON
            rate = group.rates[name]
            row[name] = wilson(rate.k, rate.n)
        rows.append(row)
    # Family totals first, then their environments.
    return sorted(rows, key=lambda r: (r["family"], r["environment"] != "all", r["environment"]))


def format_rate(rate: Rate) -> str:
    if not rate.n or rate.rate is None or rate.low is None or rate.high is None:
        return "-"
    return f"{rate.k}/{rate.n} {rate.rate:.0%} [{rate.low:.0%}, {rate.high:.0%}]"


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    head = ["family", "environment", "cases", *(label for _, label in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        env = f"**{row['environment']}**" if row["environment"] == "all" else row["environment"]
        cases = f"{row['n']}" + (f" ({row['errors']} errors)" if row["errors"] else "")
        cells = [row["family"], env, cases, *(format_rate(row[name]) for name, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile(results: Iterable[AttemptResult], max_new_tokens: int) -> dict[str, Any]:
    """Turn statistics over every episode of the agent attempts (errored ones included: they took time)."""
    episodes = [e for result, _ in agent_records(results)
                for e in (result.frozen.get("agent") or {}).get("episodes", ())]
    steps = [s for e in episodes for s in e["steps"]]
    at_limit = [s for s in steps if s.get("finish_reason") == "length"
                or s.get("completion_tokens", 0) >= max_new_tokens]
    latency = sum(s.get("latency_s", 0.0) for s in steps)
    prompt = [s.get("prompt_tokens", 0) for s in steps]
    completion = [s.get("completion_tokens", 0) for s in steps]
    return {
        "episodes": len(episodes), "outcomes": dict(Counter(e["outcome"] for e in episodes)),
        "turns": len(steps), "turns_per_episode": round(len(steps) / len(episodes), 2) if episodes else 0,
        "tool_calls": sum(len(s["calls"]) for s in steps),
        "prompt_tokens_per_turn": round(sum(prompt) / len(steps)) if steps else 0,
        "prompt_tokens_max": max(prompt, default=0),
        "completion_tokens": sum(completion),
        "completion_tokens_per_turn": round(sum(completion) / len(steps)) if steps else 0,
        "turns_at_token_limit": len(at_limit),
        # how close replies that ended by themselves came to the limit (is the limit cutting real calls?)
        "completion_tokens_max_unclipped": max((s.get("completion_tokens", 0) for s in steps
                                                if s not in at_limit), default=0),
        "model_time_s": round(latency, 1),
        "model_time_share_at_limit": round(sum(s.get("latency_s", 0.0) for s in at_limit) / latency, 2)
        if latency else 0.0,
    }
