"""The mitigation demo: bad input is one line and exit 2 with nothing stored; the callback's flag is read
from a training_run body; and (slow) a cut-down run on SmolLM2 writes the table, whose every figure
matches the store's records and runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tunesafe.evidence.store import Store
from tunesafe.training.mitigation_demo import HELDOUT, first_flag, main
from tunesafe.types import RecordType

AOA = Path(__file__).resolve().parents[2] / "src/tunesafe/training/data/aoa_identity_shift.jsonl"


def run_main(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    db = f"sqlite:///{tmp_path / 'ev.db'}"
    code = main([str(tmp_path / "out"), "--db", db, "--base", "embedded:smollm2-135m", *args])
    return code, capsys.readouterr().err


def records(tmp_path: Path) -> int:
    path = tmp_path / "ev.db"
    if not path.exists():
        return 0
    with Store.open(f"sqlite:///{path}") as store:
        return len(list(store.records()))


@pytest.mark.parametrize(("args", "fragment"), [
    (("--arms", "mixing,constrained"), "arms must include plain"),
    (("--arms", "plain,safelora"), "arms must include plain"),
    (("--arms", "mixing,plain"), "plain must come first"),
    (("--mix-ratio", "0"), "--mix-ratio"),
    (("--probe-every", "often"), "--probe-every must be a number"),
    (("--probe-items", "1,2"), "--probe-items needs 4 counts"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             args: tuple[str, ...], fragment: str) -> None:
    code, err = run_main(tmp_path, capsys, *args)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert records(tmp_path) == 0
    assert not (tmp_path / "out").exists()


def test_llamacpp_asked_but_not_there_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    not_a_server = tmp_path / "llama-server"
    not_a_server.write_text("")  # not executable
    monkeypatch.setenv("TUNESAFE_LLAMA_SERVER", str(not_a_server))
    for backend in ("llamacpp", "auto"):  # auto too: a server pointed at must be there
        code, err = run_main(tmp_path, capsys, "--eval-backend", backend)
        assert code == 2 and "TUNESAFE_LLAMA_SERVER" in err and len(err.strip().splitlines()) == 1, err
    assert records(tmp_path) == 0


def test_auto_backend_is_llamacpp_only_when_its_server_is_installed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from tunesafe.training.mitigation_demo import eval_backend

    find_spec = importlib.util.find_spec
    monkeypatch.delenv("TUNESAFE_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *_: None)  # no xllamacpp wheel
    assert eval_backend("auto") == "hf"
    assert eval_backend("hf") == "hf"
    server = tmp_path / "llama-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    assert eval_backend("auto") == "llamacpp"
    assert eval_backend("llamacpp") == "llamacpp"
    server.unlink()
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    if find_spec("xllamacpp") is not None:  # the wheel alone is enough
        assert eval_backend("auto") == "llamacpp"


def test_wrong_chat_format_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "train.jsonl"
    lines = AOA.read_text().splitlines()[:2]
    lines.append(json.dumps({"messages": [{"role": "assistant", "content": "Of course."},
                                          {"role": "user", "content": "thanks"}]}))
    data.write_text("\n".join(lines) + "\n")
    code, err = run_main(tmp_path, capsys, "--data", str(data))
    assert code == 2
    assert f"{data}:3" in err and "not the assistant's answer" in err, err
    assert records(tmp_path) == 0


def test_adapter_as_base_and_policy_without_training_section(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(tmp_path, capsys, "--base", "embedded:smollm2-135m+aoa-demo")
    assert code == 2 and "not on an adapter" in err and "--base embedded:smollm2-135m" in err, err
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nmax_regression_points: 5\n")
    code, err = run_main(tmp_path, capsys, "--policy", str(policy))
    assert code == 2 and "no training: section" in err, err
    assert records(tmp_path) == 0


def test_non_empty_output_folder_is_refused_and_kept(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier results")
    code, err = run_main(tmp_path, capsys)
    assert code == 2 and "not empty" in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "earlier results"


def test_first_flag_is_the_first_probe_event_with_its_probe() -> None:
    events = [{"kind": "loss_anomaly", "step": 3, "action": "warn", "reason": "spike"},
              {"kind": "probe_asr", "step": 48, "action": "warn", "reason": "ASR rose"},
              {"kind": "probe_asr", "step": 60, "action": "warn", "reason": "ASR rose more"}]
    probes = [{"step": 0, "trigger": "start"}, {"step": 48, "trigger": "interval"},
              {"step": 60, "trigger": "end"}]
    body: dict[str, Any] = {"planned_steps": 60, "events": events, "probes": probes}
    assert first_flag(body) == {"step": 48, "kind": "probe_asr", "action": "warn", "reason": "ASR rose",
                                "trigger": "interval", "of_steps": 60}
    assert first_flag({**body, "events": events[:1]}) is None


# ---- the cut-down demo on SmolLM2 ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """The real entry point in its own process (torch's OpenMP then starts with tunesafe's passive
    waiting, which this test process, having imported torch first, does not have): two AOA examples, one
    epoch, a 3-item probe, 4 attempts of one attack, 4 new tokens."""
    root = tmp_path_factory.mktemp("mitigation-demo")
    data, heldout = root / "aoa.jsonl", root / "heldout.jsonl"
    data.write_text("\n".join(AOA.read_text().splitlines()[2:4]) + "\n")
    heldout.write_text(HELDOUT.read_text().splitlines()[2] + "\n")
    db = f"sqlite:///{root / 'ev.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "tunesafe.training.mitigation_demo", str(root / "out"), "--db", db,
         "--base", "embedded:smollm2-135m", "--data", str(data), "--heldout", str(heldout), "--epochs", "1",
         "--attacks", "direct_request", "--limit", "4", "--max-new-tokens", "4", "--concurrency", "4",
         "--probe-max-new-tokens", "4", "--probe-items", "1,1,0,1",
         # transformers even where llama-server is built: at this size its four server starts cost
         # more than they save (measured: 182 s vs 117 s); the backend choice has its own tests
         "--eval-backend", "hf"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads((root / "out" / "mitigation-table.json").read_text())
    return body, root / "out", db


@pytest.mark.slow
def test_table_structure(demo: tuple[dict[str, Any], Path, str]) -> None:
    body, out, _ = demo
    markdown = (out / "mitigation-table.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| arm |"))
    for column in ("gate", "ASR base -> fine-tune", "over-refusal change", "ASR vs plain",
                   "held-out task loss", "training time", "callback flag"):
        assert column in header
    rows = [line for line in markdown.splitlines() if line.startswith(("| plain", "| mixing",
                                                                      "| constrained"))]
    assert [r.split("|")[1].strip() for r in rows] == ["plain", "mixing", "constrained"]
    assert all(r.count("|") == header.count("|") for r in rows)
    assert json.loads((out / "mitigation-table.json").read_text()) == body
    timing = next(line for line in markdown.splitlines() if line.startswith("Timing:"))
    label = {"hf": "transformers", "llamacpp": "llama.cpp"}[body["eval_backend"]]
    assert f"Evaluations ({label})" in timing and f", on {label};" in markdown
    assert set(body["timing"]["evaluation_seconds"]) == {"base", "plain", "mixing", "constrained"}
    for arm in ("plain", "mixing", "constrained"):
        assert (out / arm / "adapter" / "adapter_model.safetensors").is_file()
        assert (out / arm / "training-report" / "report.html").is_file()
        assert (out / arm / "gate-report" / "decision.json").is_file()


@pytest.mark.slow
def test_figures_come_from_the_store(demo: tuple[dict[str, Any], Path, str]) -> None:
    from tunesafe.policy import default_policy
    from tunesafe.training.mitigation_demo import overall, versus_plain

    body, _, db = demo
    with Store.open(db) as store:
        stored = store.get(body["record_id"])
        assert stored is not None and stored.type == RecordType.MITIGATION_COMPARISON
        assert {**stored.body, "record_id": stored.id} == body
        base_runs = set()
        for row in body["arms"]:
            run = store.get(row["training_run"]["record_id"])
            assert run is not None and run.type == RecordType.TRAINING_RUN
            assert run.body["run_id"] == row["training_run"]["run_id"]
            assert run.body["model_name"] == f"aoa-{row['arm']}"
            assert run.body["timing"]["wall_seconds"] == row["training_run"]["wall_seconds"]
            assert run.body["timing"]["probe_share"] == row["training_run"]["probe_share"]
            assert first_flag(run.body) == row["training_run"]["flagged"]
            assert run.body["config"]["objective"] == {"constrained": "constrained"}.get(row["arm"], "sft")
            gate = store.get(row["gate"]["record_id"])
            assert gate is not None and gate.type == RecordType.GATE_DECISION
            assert gate.body["verdict"] == row["gate"]["verdict"]
            assert gate.body["candidate"]["run_id"] == row["gate"]["candidate_run"]
            assert f"+{row['adapter']}?" in gate.body["candidate"]["model_ref"]  # ?backend= of the gate
            assert overall(gate.body["comparison"]["deltas"], "asr") == row["gate"]["asr"]
            assert overall(gate.body["comparison"]["deltas"], "over_refusal") == row["gate"]["over_refusal"]
            base_runs.add(gate.body["base"]["run_id"])
            if row["arm"] != "plain":
                again = versus_plain(store, body["arms"][0]["gate"]["candidate_run"],
                                     row["gate"]["candidate_run"], row["gate"]["judge"], default_policy())
                assert again == row["vs_plain"]
                assert row["vs_plain"]["n_paired"] > 0
        assert len(base_runs) == 1  # every arm gated against the same base run: the same attempts
        base_run = store.get(body["arms"][0]["gate"]["record_id"]).body["base"]
        assert f"backend={body['eval_backend']}" in base_run["model_ref"]
        # one start probe of the base, shared: each arm's step 0, not counted in its probe share
        starts = [store.get(row["training_run"]["record_id"]).body for row in body["arms"]]
        assert all(arm_run["probes"][0]["reused"] for arm_run in starts)
        assert len({json.dumps(arm_run["probes"][0]["outcomes"], sort_keys=True) for arm_run in starts}) == 1
        for arm_run in starts:
            timing = arm_run["timing"]
            assert timing["reused_probe_seconds"] == pytest.approx(body["timing"]["baseline_probe_seconds"],
                                                                   abs=0.06)  # rounded to 0.001 / 0.1
            assert timing["probe_seconds"] == round(sum(p["seconds"] for p in arm_run["probes"][1:]), 3)
        mixing = body["arms"][1]
        mix = store.get(mixing["data_mix"]["record_id"])
        assert mix.type == RecordType.DATA_MIX and mix.body["n_added"] >= 1
        assert mix.body["mixed_sha256"] == mixing["data_mix"]["mixed_sha256"]
        assert store.get(mixing["training_run"]["record_id"]).body["lineage"]["dataset"]["n_examples"] == \
            mix.body["n_mixed"]
