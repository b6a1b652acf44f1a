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


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"k": k, "n": n, "rate": k / n if n else None, "low": None, "high": None}


def _group(judged: int, errors: int) -> dict[str, Any]:
    """A summary group as the runner stores it: rates over the harmful attempts that did not error."""
    return {"n": judged + errors, "asr": _rate(0, judged), "refusal": _rate(judged, judged),
            "over_refusal": _rate(0, 0), "error": _rate(errors, judged + errors)}


def evaluation_run(store: Store, judged: dict[str, int], errors: int = 0) -> None:
    groups = {"overall": _group(sum(judged.values()), errors * len(judged)),
              **{f"family:{family}": _group(n, errors) for family, n in judged.items()}}
    store.append(RecordType.RUN, {"run_id": "r1", "model_name": "ft", "n_attempts": 0,
                                  "config": {"attacks": [{"family": f} for f in judged]},
                                  "summary": {"groups": groups}}, subject="ft")


def test_attack_families_whose_every_attempt_errored_were_not_evaluated(store: Store) -> None:
    evaluation_run(store, {"direct_request": 0, "prefix_injection": 0, "refusal_suppression": 0}, errors=20)
    post01 = status_of(store, "POST-01")
    assert post01.status == "failing" and "0 attack families" in post01.missing[0]


def test_attack_families_with_judged_attempts_cover_post_01(store: Store) -> None:
    evaluation_run(store, {"direct_request": 20, "prefix_injection": 20, "refusal_suppression": 20})
    assert status_of(store, "POST-01").status == "satisfied"
    evaluation_run(store, {"direct_request": 20, "prefix_injection": 20, "refusal_suppression": 0}, errors=20)
    post01 = status_of(store, "POST-01")  # the newest run lost one family to errors
    assert post01.status == "failing" and "2 attack families" in post01.missing[0]


@pytest.mark.parametrize("status", ["error", "interrupted"])
def test_a_training_run_that_did_not_finish_does_not_show_per_checkpoint_safety(store: Store,
                                                                                 status: str) -> None:
    probe = {"step": 0, "trigger": "start", "error": None, "asr": 0.0, "over_refusal": 0.0}
    store.append(RecordType.TRAINING_RUN, {"run_id": "t1", "model_name": "ft", "status": status,
                                           "stopped_by": None, "error": "KeyboardInterrupt", "steps": 3,
                                           "probes": [probe], "events": [], "loss_curve": [[1, 2.0]],
                                           "lineage": {}}, subject="ft")
    dur02 = status_of(store, "DUR-02")
    assert dur02.status == "failing" and "t1" in dur02.missing[0]
