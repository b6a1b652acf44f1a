"""Controls fail closed on evidence that looks present but does not prove the control: records written by
the inventory and endpoint code where that is cheap, the rest as the runner and the guardrail verifier
write them (no model, no network: these run in well under a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunesafe.evidence.store import Store
from tunesafe.governance.controls import control_status
from tunesafe.production.endpoints import add_endpoint
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.types import RecordType


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        add_model(opened, ModelSpec(name="base", ref="openai:base@http://127.0.0.1:9/v1"))
        add_model(opened, ModelSpec(name="ft", ref="openai:ft@http://127.0.0.1:9/v1", base="base"))
        yield opened


def status_of(store: Store, control_id: str) -> Any:
    return next(c for c in control_status(store, "ft").controls if c.control.id == control_id)


def verification(store: Store, endpoint: str, guard_ref: str, verdict: str = "pass") -> None:
    store.append(RecordType.GUARDRAIL_VERIFICATION, {"endpoint": endpoint, "guard_ref": guard_ref,
                                                     "verdict": verdict}, subject=endpoint)


def test_a_verified_guard_that_is_not_in_front_of_the_endpoint_does_not_verify_it(store: Store) -> None:
    add_endpoint(store, "bot", model="ft", url=None, guardrails=["python:deployed_guard:check"])
    verification(store, "bot", "python:other_guard:check")  # passed, but this guard does not serve bot
    post03 = status_of(store, "POST-03")
    assert post03.status == "missing" and "bot" in post03.missing[0]
    verification(store, "bot", "python:deployed_guard:check")
    assert status_of(store, "POST-03").status == "satisfied"
