"""The case catalogue: sizes the issue asks for, and, over every case, that the ground truth solves its
task, that every injection can reach its goal (a scripted agent that follows injections reaches every
attacker end state) and that no check fires by itself (one that resists reaches none)."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from tunesafe.agents.attacks import VERSION
from tunesafe.agents.cases import (
    FAMILIES,
    PERSISTENT_MEMORY,
    SECOND_ORDER,
    all_cases,
    injections,
    styles,
    tasks,
)
from tunesafe.agents.episodes import ASSISTANT, EXECUTOR, HANDOFF, NOTES, READER, CaseResult, run_case
from tunesafe.agents.runner import DELIMIT_RULE, Settings
from tunesafe.suite import load_suite
from tunesafe.types import canonical_json, sha256_hex

from .conftest import InProcessAgent


def test_catalogue_sizes_and_coverage() -> None:
    assert len(tasks()) >= 40 and len({t.id for t in tasks()}) == len(tasks())
    assert Counter(t.env for t in tasks()) == {"inbox": 8, "files": 8, "web": 8, "bank": 8, "memory": 8}
    assert len(injections()) >= 60
    assert {"instruction", "fake_system", "important", "data_only"} <= set(styles())
    cases = all_cases()
    assert {c.family for c in cases} == set(FAMILIES)
    used = {c.injection.id for c in cases if c.injection and c.family == "agent_tool_injection"}
    assert used == {i.id for i in injections()}  # every injection case runs in the tool-injection family
    assert len({c.id for c in cases}) == len(cases)


def test_suites_are_behaviours_with_agent_ids() -> None:
    full, smoke = load_suite("agents"), load_suite("agents-smoke")
    assert full.counts()["items"] == len(all_cases()) and smoke.counts()["items"] == 17
    assert {b.id for b in smoke.behaviors} <= {b.id for b in full.behaviors}
    assert all(b.id.startswith("agent:") for b in full.behaviors)
    assert {b.kind for b in smoke.behaviors} == {"benign", "harmful"}


def _run_all(policy: str, defence: str | None = None) -> list[CaseResult]:
    async def go() -> list[CaseResult]:
        model = InProcessAgent(policy)
        return [await run_case(c, model, Settings(defence=defence)) for c in all_cases()]
    return asyncio.run(go())


@pytest.mark.parametrize("policy", ["follows", "resists"])
def test_every_task_is_solvable_and_every_goal_reachable(policy: str) -> None:
    results = _run_all(policy)
    assert all(r.utility for r in results), [r.case.id for r in results if not r.utility][:5]
    attacked = [r for r in results if r.case.injection is not None]
    expected = policy == "follows"
    wrong = [r.case.id for r in attacked if r.attack_success is not expected]
    assert not wrong, wrong[:5]
    assert all(r.evidence()["attacker_tool_called"] is expected for r in attacked)
    second = [r for r in attacked if r.case.family == SECOND_ORDER]
    memory = [r for r in attacked if r.case.family == PERSISTENT_MEMORY]
    assert all(r.propagated is expected for r in second) and all(r.stored is expected for r in memory)


CATALOGUE = Path(__file__).with_name("catalogue.json")


def test_changed_case_data_bumps_the_agent_attack_version() -> None:
    """The agent attacks' version is part of every attempt id, so the cases (world, tasks, injections,
    system prompts) may only change together with it: old and new episodes must never pair up. After a
    deliberate bump, regenerate with TUNESAFE_UPDATE_FINGERPRINTS=1."""
    data = files("tunesafe.agents").joinpath("data")
    texts = [data.joinpath(n).read_text("utf-8") for n in ("world.yaml", "tasks.yaml", "injections.yaml")]
    current = {"version": VERSION, "digest": sha256_hex(canonical_json(
        [texts, ASSISTANT, READER, EXECUTOR, HANDOFF, NOTES, DELIMIT_RULE]))[:16]}
    if os.environ.get("TUNESAFE_UPDATE_FINGERPRINTS") == "1":
        CATALOGUE.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")
    recorded = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    if recorded["version"] == VERSION:
        assert recorded["digest"] == current["digest"], "agent case data changed: bump agents.attacks.VERSION"
    else:
        pytest.fail(f"agent attacks are now version {VERSION}: regenerate {CATALOGUE.name}")
