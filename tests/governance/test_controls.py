"""`tunesafe controls` on a store built by real runs (conftest): the catalogue loads with its references;
statuses move missing -> failing -> satisfied as real gates are recorded, a sign-off is needed where the
control asks one and is itself evidence; required controls set the exit code (the policy can name
them); a broken chain fails the lineage control; bad input is one line and exit 2, nothing written."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.governance.controls import load_catalogue
from tunesafe.types import RecordType

ROLE = ("role", "decide", "ft", "--intended-purpose", "customer support chat for a bank", "--annex-iii",
        "none", "--no-annex-i", "--no-own-name", "--base-gpai", "--base-flop", "3e24", "--params", "1.5e9",
        "--tokens", "2e7")


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["controls"]}


def control(report: dict[str, Any], control_id: str) -> dict[str, Any]:
    return next(c for c in report["controls"] if c["id"] == control_id)


def records_of(url: str, type_: str) -> list[Any]:
    with Store.open(url) as store:
        return list(store.records(type=type_))


def test_catalogue_is_the_reference_list_with_framework_ids() -> None:
    catalogue = load_catalogue()
    ids = [c.id for c in catalogue.controls]
    assert ids[:2] == ["PRE-00", "PRE-01"] and len(ids) == 24 and "POST-05" in ids and "PRI-06" in ids
    pre03 = catalogue.get("pre-03")
    frameworks = pre03.refs_by_framework(catalogue.ref_prefixes)
    assert frameworks["OWASP LLM Top 10"] == ["LLM04:2025"]
    assert frameworks["MITRE ATLAS v5.6.0"] == ["AML.T0020", "AML.T0018.000"]
    assert "10(2)(f)" in frameworks["EU AI Act (Reg. 2024/1689)"]
    assert {c.phase for c in catalogue.controls} == {"pre_finetune", "during_finetune", "post_finetune",
                                                      "production", "program"}
    with pytest.raises(UserError, match="unknown control"):
        catalogue.get("POST-99")


def test_status_moves_with_the_evidence(world: SimpleNamespace) -> None:
    cli = world.cli
    first = cli.json("controls", "status", "ft", expect=1)  # required controls lack evidence
    state = statuses(first)
    assert state["POST-02"] == state["POST-01"] == state["PRE-00"] == "missing"
    assert state["PRE-03"] == "satisfied"
    scan = records_of(world.url, RecordType.DATA_SCAN)[0]
    assert control(first, "PRE-03")["records"] == [str(scan.id)]
    run = records_of(world.url, RecordType.TRAINING_RUN)[0]
    assert state["DUR-02"] == state["DUR-03"] == "satisfied"
    assert control(first, "DUR-02")["records"] == [str(run.id)]
    assert state["DUR-01"] == "needs_attestation"  # plain LoRA: say why no safety-preserving method
    assert state["PROD-03"] == "needs_attestation"  # no automatic check: a sign-off only
    assert set(first["failed_required"]) == {"PRE-00", "POST-01", "POST-02", "POST-04"}

    assert world.gate(world.servers.eroded) == 1
    failing = cli.json("controls", "status", "ft", expect=1)
    assert statuses(failing)["POST-02"] == "failing" and statuses(failing)["POST-05"] == "failing"
    assert "is fail" in control(failing, "POST-02")["missing"][0]
    assert statuses(failing)["POST-01"] == "satisfied"  # three attack families were evaluated
    assert "OWASP LLM01:2025; ATLAS AML.T0048, AML.T0051.000, AML.T0054" in control(failing, "POST-01")[
        "checks"][0]["detail"]

    assert world.gate(world.servers.safe) == 0
    passing = cli.json("controls", "status", "ft", expect=1)
    gate = records_of(world.url, RecordType.GATE_DECISION)[-1]
    assert statuses(passing)["POST-02"] == "satisfied"
    assert control(passing, "POST-02")["records"] == [str(gate.id)]
    assert statuses(passing)["POST-05"] == "needs_attestation"

    code, _, err = cli("controls", "attest", "ft", "POST-05", "--by", "J. Doe (head of ML)", "--note",
                       "go: gate passed, residual risks accepted", "--field", "approver=J. Doe",
                       "--field", "residual_risks=over-refusal on borderline prompts")
    assert code == 0, err
    (signed,) = records_of(world.url, RecordType.CONTROL_ATTESTATION)
    assert signed.subject == "ft" and signed.body["control"] == "POST-05"
    assert signed.body["by"] == "J. Doe (head of ML)"
    assert signed.body["fields"]["approver"] == "J. Doe"
    attested = cli.json("controls", "status", "ft", expect=1)
    assert statuses(attested)["POST-05"] == "satisfied"
    assert control(attested, "POST-05")["records"] == [str(gate.id), str(signed.id)]
    assert world.gate(world.servers.safe) == 0  # a newer gate: the old sign-off does not cover it
    stale = control(cli.json("controls", "status", "ft", expect=1), "POST-05")
    assert stale["status"] == "needs_attestation" and f"#{signed.id} predates" in " ".join(stale["missing"])

    assert cli(*ROLE)[0] == 0
    assert statuses(cli.json("controls", "status", "ft", expect=1))["PRE-00"] == "needs_attestation"
    assert cli(*ROLE, "--reviewer", "A. Legal")[0] == 0
    done = cli.json("controls", "status", "ft")  # exit 0: every required control satisfied
    assert done["failed_required"] == [] and done["exit_code"] == 0 and done["chain_ok"] is True
    code, out, _ = cli("controls", "status", "ft")
    assert code == 0 and "every required control satisfied" in out
    assert "[/]" not in out  # the status cells are styled, not printed as markup


def test_policy_names_required_controls_and_thresholds(passed: SimpleNamespace, tmp_path: Path) -> None:
    world = passed
    strict = tmp_path / "policy.yaml"
    strict.write_text("min_attack_families: 4\ngovernance:\n  required_controls: [POST-01, PRE-03]\n")
    report = world.cli.json("controls", "status", "ft", "--policy", str(strict), expect=1)
    assert report["failed_required"] == ["POST-01"]
    assert "fewer than 4" in control(report, "POST-01")["missing"][0]
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("governance:\n  required_controls: [PRE-03, POST-02]\n")
    assert world.cli.json("controls", "status", "ft", "--policy", str(lenient))["exit_code"] == 0


def test_broken_chain_fails_the_lineage_control(passed: SimpleNamespace) -> None:
    world = passed
    gate = records_of(world.url, RecordType.GATE_DECISION)[-1]
    with sqlite3.connect(world.db) as conn:  # someone edits the stored decision
        conn.execute("UPDATE records SET body = replace(body, '\"pass\"', '\"PASS\"') WHERE id = ?",
                     (gate.id,))
    report = world.cli.json("controls", "status", "ft", expect=1)
    assert report["chain_ok"] is False and statuses(report)["POST-04"] == "failing"


def test_bad_input_is_one_line_exit_2_and_writes_nothing(world: SimpleNamespace, tmp_path: Path) -> None:
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("governance:\n  required_controls: [POST-77]\n")
    cases = [
        (("controls", "status", "nope"), "not in the inventory"),
        (("controls", "status", "ft", "--version", "3"), "no version '3'"),
        (("controls", "status", "ft", "--policy", str(bad_policy)), "unknown control 'POST-77'"),
        (("controls", "attest", "ft", "POST-77", "--by", "x", "--note", "y"), "unknown control"),
        (("controls", "attest", "ft", "POST-05", "--by", "x", "--note", "y"), "--field approver=VALUE"),
        (("controls", "attest", "ft", "PROD-03", "--by", " ", "--note", "y"), "names nobody"),
        (("controls", "attest", "ft", "PROD-03", "--by", "x", "--note", "y", "--field", "novalue"),
         "KEY=VALUE"),
        (("controls", "attest", "nope", "DUR-01", "--by", "x", "--note", "y"), "not in the inventory"),
        (("controls", "list", "--catalogue", str(tmp_path / "none.yaml")), "cannot read"),
    ]
    with Store.open(world.url) as store:
        before = sum(1 for _ in store.records())
    for args, fragment in cases:
        code, _, err = world.cli(*args)
        assert code == 2 and fragment in err and "Traceback" not in err, (args, err)
    with Store.open(world.url) as store:
        assert sum(1 for _ in store.records()) == before and store.verify().ok


def test_scheduled_red_teaming_of_a_served_fine_tune(world: SimpleNamespace, tmp_path: Path) -> None:
    cli = world.cli
    assert cli("models", "add", "bot", "--ref", world.servers.safe, "--base", "base")[0] == 0
    assert statuses(cli.json("controls", "status", "bot", expect=1))["PROD-02"] == "missing"
    code, out, err = cli("redteam", "schedule", "add", "bot", "--suite", "smoke", "--attacks",
                         "direct_request,refusal_suppression,prefix_injection", "--judge", "refusal",
                         "--every", "30d", "--start", "2025-01-01T00:00:00Z")
    assert code == 0, err
    code, out, err = cli("redteam", "run-due")
    assert code == 0, (out, err)
    (run,) = records_of(world.url, RecordType.REDTEAM_RUN)
    nodes = cli.json("lineage", "bot")["nodes"]
    (node,) = [n for n in nodes if n["kind"] == "redteam_run"]
    model = next(n for n in nodes if n["kind"] == "model")
    assert node["record_id"] == str(run.id) and node["parents"] == [model["id"]]
    report = cli.json("controls", "status", "bot", expect=1)
    assert statuses(report)["PROD-02"] == statuses(report)["PRI-06"] == "satisfied"
    assert control(report, "PROD-02")["records"] == [str(run.id)]
    tight = tmp_path / "tight.yaml"  # a window of 8.6 ms, which the run falls out of after the pause
    tight.write_text("governance:\n  redteam_max_interval_days: 0.0000001\n")
    time.sleep(0.05)  # the calls since the run can take less than any window worth writing
    stale = cli.json("controls", "status", "bot", "--policy", str(tight), expect=1)
    assert statuses(stale)["PROD-02"] == "failing" and "more than" in control(stale, "PROD-02")["missing"][0]
