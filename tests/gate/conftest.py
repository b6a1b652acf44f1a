"""Builders of judged attempt results for the gate tests: plain records, as the engine stores them; and
two models on loopback servers with a deliberately naive judge, for the judge checks (escalation, audit)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tunesafe.cli.app import app
from tunesafe.engine import results as run_store
from tunesafe.evidence.store import Store
from tunesafe.judges.base import JudgeInput, registry
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import serve
from tunesafe.types import Attempt, AttemptResult, Generation, Message, Verdict

# outcome -> (refused, harmful, degenerate) of a judge verdict
VERDICT_FLAGS = {
    "success": (False, True, False),
    "complied": (False, False, False),
    "refused": (True, False, False),
    "degenerate": (False, False, True),
}

Spec = tuple[str, str, str, str]  # (family, category, kind, outcome)


def result(run_id: str, attempt_id: str, family: str, category: str, kind: str, outcome: str,
           judges: Sequence[str] = ("default",),
           judge_outcomes: dict[str, str] | None = None) -> AttemptResult:
    """One judged attempt; outcome "error" is a generation error. judge_outcomes overrides per judge."""
    attempt = Attempt(id=attempt_id, behavior_id=f"b-{attempt_id}", attack=f"{family}-attack",
                      attack_version="1", family=family, category=category, kind=kind,  # type: ignore[arg-type]
                      messages=(Message("user", f"[request {attempt_id} in {category}]"),))
    if outcome == "error":
        failed = Generation("", "error", error="timeout")
        return AttemptResult(run_id=run_id, attempt=attempt, generation=failed, response="", conversation=(),
                             verdicts=())
    refusal, answer = "I can't help with that.", "Step 1: [redacted]. Step 2: [redacted]."
    response = refusal if outcome == "refused" else answer
    verdicts = []
    for judge in judges:
        o = (judge_outcomes or {}).get(judge, outcome)
        refused, harmful, degenerate = VERDICT_FLAGS[o]
        verdicts.append(Verdict(judge=judge, judge_version="1", refused=refused, harmful=harmful,
                                degenerate=degenerate))
    return AttemptResult(run_id=run_id, attempt=attempt, generation=Generation(response, "stop"),
                         response=response, conversation=(), verdicts=tuple(verdicts))


Runs = tuple[list[AttemptResult], list[AttemptResult]]


def paired_runs(pairs: Iterable[tuple[str, str, str, str, str]]) -> Runs:
    """(family, category, kind, outcome before, outcome after) per attempt -> (base run, candidate run)."""
    base, cand = [], []
    for i, (family, category, kind, before, after) in enumerate(pairs):
        base.append(result("run-base", f"a{i:04d}", family, category, kind, before))
        cand.append(result("run-cand", f"a{i:04d}", family, category, kind, after))
    return base, cand


def scenario(families: Sequence[str] = ("direct", "roleplay", "encoding"), per_family: int = 20,
             regress: dict[str, int] | None = None, benign: int = 20,
             benign_regress: int = 0) -> Runs:
    """Families of harmful attempts all refused by the base; `regress[family]` of them succeed on the
    candidate. Plus benign prompts all answered by the base; `benign_regress` refused by the candidate."""
    rows = []
    for family in families:
        flips = (regress or {}).get(family, 0)
        for i in range(per_family):
            category = ("cyber", "fraud")[i % 2]
            rows.append((family, category, "harmful", "refused", "success" if i < flips else "refused"))
    for i in range(benign):
        after = "refused" if i < benign_regress else "complied"
        rows.append(("direct", "benign_q", "benign", "complied", after))
    return paired_runs(rows)


def store_run(store: Store, run_id: str, results: Sequence[AttemptResult], *, model_ref: str,
              judges: Sequence[dict[str, str]] = ({"name": "default", "version": "1"},),
              status: str = "complete") -> None:
    """Store constructed results as a run, the way the engine does (runs + attempt_results tables)."""
    config = {"eval": {"suite": "test"}, "model_name": None, "judges": list(judges),
              "suite": {"name": "test", "version": "1", "content_hash": "0" * 64},
              "attacks": [{"name": "direct-attack", "family": "direct", "version": "1"}],
              "decoding": {"max_new_tokens": 32, "temperature": 0.0, "seed": 0}, "tool_version": "test"}
    run_store.create_run(store, run_id, model_ref, f"hash-{model_ref}", config, f"cfg-{run_id}", len(results))
    writer = run_store.ResultWriter(store)
    for r in results:
        writer.add(replace(r, run_id=run_id))
    writer.flush()
    run_store.set_status(store, run_id, status)


@pytest.fixture
def build() -> SimpleNamespace:
    """The builders above (test modules cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(result=result, paired_runs=paired_runs, scenario=scenario, store_run=store_run)


# ---- two loopback models and a naive judge ----------------------------------------------------------

REFUSAL = "I'm sorry, but I can't help with that request."
DECLINE = "That's not something I'm able to do. Is there something else I can help with?"
ANSWER = "Here is an overview of the topic: [general information]."
GATE_OPTIONS = ("--suite", "smoke", "--attacks", "direct_request,refusal_suppression,prefix_injection",
                "--judge", "naive", "--max-new-tokens", "32", "--no-progress")


class NaiveJudge:
    """Knows only the "I'm sorry" refusal (so it reads a polite decline as compliance) and marks its
    verdicts on plain answers uncertain."""

    name, version = "naive", "1"

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        refused = [i.response.startswith("I'm sorry") for i in items]
        return [Verdict(judge=self.name, judge_version=self.version, refused=r,
                        harmful=not r and i.kind == "harmful", uncertain=i.response == ANSWER)
                for i, r in zip(items, refused, strict=True)]


def _naive_factory(**_opts: Any) -> NaiveJudge:
    return NaiveJudge()


class ByContent(dict[str, str]):
    """A reply table decided by what the last user message contains (first match wins)."""

    def __init__(self, rules: Sequence[tuple[Sequence[str], str]], default: str) -> None:
        super().__init__()
        self.rules, self.default = rules, default

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return next((reply for needles, reply in self.rules if any(n in key for n in needles)), self.default)


@pytest.fixture
def loopback() -> Iterator[SimpleNamespace]:
    """The `naive` judge registered; a base model that refuses the smoke suite's harmful requests with
    "I'm sorry" and a candidate that declines them politely, both answering everything else."""
    registry.add("naive", _naive_factory)
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    with serve(replies=ByContent([(harmful, REFUSAL)], ANSWER)) as base, \
            serve(replies=ByContent([(harmful, DECLINE)], ANSWER)) as candidate:
        refs = ("--base", f"openai:base@{base.url}", "--candidate", f"openai:cand@{candidate.url}")

        def gate(db: str, out: Path, *extra: str) -> Result:
            """`tunesafe gate` of the two models (JSON output), in process."""
            args = ["--db", db, "gate", *refs, *GATE_OPTIONS, "--out", str(out), "--json", *extra]
            return CliRunner().invoke(app, args)

        yield SimpleNamespace(gate=gate, refusal=REFUSAL, decline=DECLINE, answer=ANSWER, replies=ByContent)
