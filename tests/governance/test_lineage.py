"""`tunesafe lineage` on a store built by real runs (conftest): the chain base -> dataset (scan) ->
training run -> adapter -> model -> evaluations -> gate -> deployment -> guardrail verification ->
incident, each node naming its record; JSON, the terminal tree, the SVG (parsed as XML) and the HTML page;
unknown models and versions are one-line errors with exit code 2."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tunesafe.evidence.store import Store
from tunesafe.governance import collect_lineage
from tunesafe.types import RecordType

SVG = "{http://www.w3.org/2000/svg}"


def deploy(world: SimpleNamespace, tmp_path: Path) -> None:
    """An endpoint serving ft behind a Python guard that blocks everything, verified (a real run)."""
    (tmp_path / "block_all.py").write_text("def check(text, side):\n    return True\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        guard = "python:block_all:check"
        assert world.cli("models", "endpoint", "bot", "--model", "ft", "--guard", guard)[0] == 0
        code, out, err = world.cli("guardrails", "verify", "--guard", guard, "--suite", "smoke",
                                   "--attacks", "direct_request", "--endpoint", "bot")
        assert code in (0, 1), (out, err)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("block_all", None)


def test_lineage_chains_every_record_kind(passed: SimpleNamespace, tmp_path: Path) -> None:
    world = passed
    deploy(world, tmp_path)
    code, _, err = world.cli("incidents", "open", "ft", "--title", "jailbreak seen in logs",
                             "--severity", "high")
    assert code == 0, err

    data = world.cli.json("lineage", "ft")
    nodes = {n["id"]: n for n in data["nodes"]}
    kinds = [n["kind"] for n in data["nodes"]]
    for kind in ("base", "dataset", "data_scan", "training_run", "adapter", "model", "evaluation", "gate",
                 "deployment", "guardrail_verification", "incident"):
        assert kind in kinds, kind
    with Store.open(world.url) as store:
        records = {str(r.id): r for r in store.records()}
        lineage = collect_lineage(store, "ft")
    for node in data["nodes"]:  # every node names a real record, with its hash and type
        record = records[node["record_id"]]
        assert (record.hash, record.type) == (node["record_hash"], node["record_type"])
        assert all(p in nodes for p in node["parents"])

    def one(kind: str) -> dict[str, Any]:
        found = [n for n in data["nodes"] if n["kind"] == kind]
        assert len(found) == 1, (kind, found)
        return found[0]

    dataset, scan, run, adapter, model = (one(k) for k in ("dataset", "data_scan", "training_run", "adapter",
                                                            "model"))
    base = one("base")
    assert dataset["parents"] == [base["id"]] and scan["parents"] == [dataset["id"]]
    assert set(run["parents"]) == {dataset["id"], base["id"]}
    assert adapter["parents"] == [run["id"]] and model["parents"] == [adapter["id"]]
    assert adapter["id"] == f"adapter:{run['body']['lineage']['adapter']['sha256']}"
    assert dataset["id"] == f"dataset:{scan['body']['dataset']['sha256']}"
    gate = one("gate")
    evaluations = {n["id"]: n for n in data["nodes"] if n["kind"] == "evaluation"}
    assert set(gate["parents"]) == set(evaluations)  # the base run and the candidate run it compared
    assert {tuple(e["parents"]) for e in evaluations.values()} == {(base["id"],), (model["id"],)}
    assert one("deployment")["parents"] == [gate["id"]]
    assert one("guardrail_verification")["parents"] == [one("deployment")["id"]]
    assert one("incident")["parents"] == [one("deployment")["id"]]
    assert lineage.to_json() == data and lineage.version == "1"

    code, out, _ = world.cli("lineage", "ft")
    assert code == 0 and "training run" in out and f"record #{gate['record_id']}" in out

    svg, html = tmp_path / "lineage.svg", tmp_path / "lineage.html"
    assert world.cli("lineage", "ft", "--svg", str(svg), "--html", str(html))[0] == 0
    root = ET.parse(svg).getroot()
    boxes = root.findall(f".//{SVG}g[@class='node']")
    assert sorted(b.get("data-record-id") for b in boxes) == sorted(n["record_id"] for n in data["nodes"])
    edges = {(e.get("data-from"), e.get("data-to")) for e in root.findall(f".//{SVG}path[@class='edge']")}
    assert edges == {(p, n["id"]) for n in data["nodes"] for p in n["parents"]}
    page = html.read_text()
    ET.fromstring(page[page.index("<svg"):page.index("</svg>") + 6])  # the embedded graph parses too
    assert page.count("<tr data-record-id=") == len(data["nodes"])


def test_versions_split_the_evidence(world: SimpleNamespace) -> None:
    assert world.gate(world.servers.eroded) == 1
    trained = world.trained
    code, _, err = world.cli("models", "add", "ft", "--new-version", "--ref",
                             f"hf:{trained.base}+{trained.adapter}", "--base", "base")
    assert code == 0, err
    first, second = world.cli.json("lineage", "ft", "--version", "1"), world.cli.json("lineage", "ft")
    assert second["version"] == "2" and first["version"] == "1"
    assert [n["body"]["verdict"] for n in first["nodes"] if n["kind"] == "gate"] == ["fail"]
    assert not [n for n in second["nodes"] if n["kind"] in ("gate", "evaluation")]  # not evaluated yet
    # the adapter still traces to the run that made it (by path: the inventory hashes the whole folder)
    assert [n["kind"] for n in second["nodes"] if n["kind"] in ("training_run", "adapter")] == \
        ["training_run", "adapter"]


def test_bad_input_is_one_line_exit_2(world: SimpleNamespace) -> None:
    for args, fragment in ((("lineage", "nope"), "not in the inventory"),
                           (("lineage", "ft", "--version", "7"), "no version '7'"),
                           (("lineage", "ft", "--version", "x"), "no version 'x'")):
        code, out, err = world.cli(*args)
        assert code == 2 and fragment in err and "Traceback" not in err, (args, err)
    with Store.open(world.url) as store:
        before = sum(1 for _ in store.records())
        assert store.verify().ok
    code, _, err = world.cli("lineage", "ft", "--svg", str(world.tmp / "store.db" / "x.svg"))
    assert code == 2 and "cannot write" in err
    with Store.open(world.url) as store:
        assert sum(1 for _ in store.records()) == before
        assert not list(store.records(type=RecordType.CONTROL_ATTESTATION))


def test_safety_mix_links_both_datasets_and_each_needs_its_scan(world: SimpleNamespace) -> None:
    trained, cli = world.trained, world.cli
    mixed, adapter = world.tmp / "mixed.jsonl", world.tmp / "adapter-mixed"
    for args in (("mix-safety", str(trained.data), "--ratio", "0.25", "--out", str(mixed)),
                 ("train-lora", str(mixed), "--base", f"hf:{trained.base}", "--out", str(adapter),
                  "--epochs", "1", "--probe-every", "100", "--model-name", "ft-mixed"),
                 ("models", "add", "ft-mixed", "--ref", f"hf:{trained.base}+{adapter}", "--base", "base")):
        code, out, err = cli(*args)
        assert code == 0, (args, out, err)
    nodes = cli.json("lineage", "ft-mixed")["nodes"]
    (mix,) = [n for n in nodes if n["kind"] == "data_mix"]
    datasets = {n["body"]["sha256"]: n for n in nodes if n["kind"] == "dataset"}
    source, result = datasets[mix["body"]["data_sha256"]], datasets[mix["body"]["mixed_sha256"]]
    assert mix["parents"] == [source["id"]] and result["parents"] == [mix["id"]]
    assert [n["parents"] for n in nodes if n["kind"] == "data_scan"] == [[source["id"]]]  # only the input

    report = cli.json("controls", "status", "ft-mixed", expect=1)
    state = {c["id"]: c for c in report["controls"]}
    assert state["DUR-01"]["status"] == "satisfied" and state["DUR-01"]["records"] == [mix["record_id"]]
    assert state["PRE-03"]["status"] == "missing"  # the data trained on is the mix, never scanned
    assert mix["body"]["mixed_sha256"][:12] in state["PRE-03"]["missing"][0]
