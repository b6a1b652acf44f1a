"""An evaluation recorded for an inventory name counts for the version whose model produced the answers:
`runs rejudge` of an earlier version's run is no evaluation of a later version, and `eval --name` records
nothing against a version it did not evaluate. Through the CLI on a real SQLite store and the loopback
OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tunesafe
from tunesafe.engine.results import load_run
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.governance.checks import own_evaluations
from tunesafe.governance.lineage import collect_lineage
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.types import RecordType

from .conftest import Cli, Server, write_suite


def _eval(cli: Cli, ref: str, suite: Path, *extra: str) -> tuple[int, str, str]:
    return cli("eval", ref, "--suite", str(suite), "--attacks", "direct_request", "--judge", "refusal",
               "--no-progress", *extra)


def _missing(cli: Cli) -> list[str]:
    code, out, err = cli("models", "list", "--missing-post-eval", "--json")
    assert code == 0, err
    return [m["name"] for m in json.loads(out)]


def _safety_evals(cli: Cli) -> list[dict[str, Any]]:
    with Store.open(str(cli.db)) as store:
        return [r.body for r in store.records(type=RecordType.SAFETY_EVAL)]


def test_a_rejudged_run_counts_for_the_version_that_generated_its_answers(cli: Cli, tmp_path: Path,
                                                                          server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    assert cli("models", "add", "base", "--ref", server.ref("base"))[0] == 0
    assert cli("models", "add", "ft", "--ref", server.ref("ft-v1"), "--base", "base")[0] == 0
    code, _, err = _eval(cli, server.ref("ft-v1"), suite, "--name", "ft")
    assert code == 0, err
    [v1_run] = cli.runs()
    assert _missing(cli) == []
    code, _, err = cli("models", "add", "ft", "--new-version", "--ref", server.ref("ft-v2"), "--base", "base")
    assert code == 0, err
    assert _missing(cli) == ["ft"]

    code, _, err = cli("runs", "rejudge", v1_run, "--judge", "refusal")
    assert code == 0, err
    # no answer of version 2 was generated: the re-judge is an evaluation of version 1
    assert _missing(cli) == ["ft"]
    with Store.open(str(cli.db)) as store:
        v1, v2 = (r.id for r in store.records(type=RecordType.MODEL_VERSION, subject="ft"))
        assert own_evaluations(collect_lineage(store, "ft")) == []  # what the governance controls read
        assert len(own_evaluations(collect_lineage(store, "ft", "1"))) == 2
    assert [e["model_version_record"] for e in _safety_evals(cli)] == [v1, v1]

    # answers of version 2, and a re-judge of them, count for version 2
    code, _, err = _eval(cli, server.ref("ft-v2"), suite, "--name", "ft")
    assert code == 0, err
    v2_run = cli.runs()[-1]
    assert _missing(cli) == []
    code, _, err = cli("runs", "rejudge", v2_run, "--judge", "refusal")
    assert code == 0, err
    assert [e["model_version_record"] for e in _safety_evals(cli)] == [v1, v1, v2, v2]
    assert _missing(cli) == []
    assert cli("verify")[0] == 0



def test_eval_name_must_be_the_model_of_the_current_version(cli: Cli, tmp_path: Path, server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    assert cli("models", "add", "base", "--ref", server.ref("base"))[0] == 0
    assert cli("models", "add", "ft", "--ref", server.ref("ft-v1"), "--base", "base")[0] == 0
    code, _, err = _eval(cli, server.ref("other"), suite, "--name", "ft")
    assert code == 2, err
    assert "--name" in err and "not version 1 of 'ft'" in err and "another model ref" in err
    assert "tunesafe models add ft --new-version" in err and "Traceback" not in err
    assert cli.runs() == [] and _safety_evals(cli) == []  # refused before the model was called
    assert _missing(cli) == ["ft"]
    code, _, err = _eval(cli, server.ref("ft-v1"), suite, "--name", "ft")
    assert code == 0, err
    assert _missing(cli) == []
    [evaluation] = _safety_evals(cli)
    assert evaluation["details"]["version"]["identity"] == "ref"


def test_eval_of_an_endpoint_for_a_version_of_local_files_needs_an_attestation(cli: Cli, tmp_path: Path,
                                                                               server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x02" * 100)
    assert cli("models", "add", "base", "--ref", "embedded:qwen2.5-coder-0.5b")[0] == 0
    code, _, err = cli("models", "add", "ft", "--ref", f"embedded:qwen2.5-coder-0.5b+{adapter}", "--base",
                       "base")
    assert code == 0, err
    code, _, err = _eval(cli, server.ref("ft"), suite, "--name", "ft")
    assert code == 2, err
    assert "this ref names an endpoint" in err and "--attest-weights" in err
    assert cli.runs() == [] and _safety_evals(cli) == []
    code, _, err = _eval(cli, server.ref("ft"), suite, "--name", "ft", "--attest-weights")
    assert code == 0, err
    [evaluation] = _safety_evals(cli)
    assert evaluation["details"]["version"]["identity"] == "attested"
    assert _missing(cli) == []


def test_the_python_api_checks_the_name_as_the_cli(tmp_path: Path, server: Server) -> None:
    db = tmp_path / "api.db"
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    with Store.open(str(db)) as store:
        add_model(store, ModelSpec("base", server.ref("base")))
        add_model(store, ModelSpec("ft", server.ref("ft-v1"), base="base"))
    options = {"suite": str(suite), "attacks": "direct_request", "judges": ("refusal",), "store": db}
    with pytest.raises(UserError, match="not version 1 of 'ft'"):
        tunesafe.evaluate(server.ref("other"), name="ft", **options)
    assert tunesafe.evaluate(server.ref("ft-v1"), name="ft", **options).status == "complete"
    with Store.open(str(db)) as store:
        assert len(list(store.records(type=RecordType.SAFETY_EVAL))) == 1


def test_a_run_finished_after_a_new_version_counts_for_the_version_it_started_on(
        cli: Cli, tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    assert cli("models", "add", "base", "--ref", server.ref("base"))[0] == 0
    assert cli("models", "add", "ft", "--ref", server.ref("ft-v1"), "--base", "base")[0] == 0

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt
    # every answer of version 1 stored, Ctrl-C while the run's evidence is written
    monkeypatch.setattr("tunesafe.engine.runner.summarize", interrupted)
    code, _, err = _eval(cli, server.ref("ft-v1"), suite, "--name", "ft")
    monkeypatch.undo()
    assert code == 130, err
    [run_id] = cli.runs()
    code, _, err = cli("models", "add", "ft", "--new-version", "--ref", server.ref("ft-v2"), "--base", "base")
    assert code == 0, err

    code, _, err = cli("eval", "--resume", run_id, "--no-progress")  # nothing left to ask: it only closes
    assert code == 0, err
    # the answers are version 1's: version 2 is still unevaluated
    assert _missing(cli) == ["ft"]
    with Store.open(str(cli.db)) as store:
        v1, _ = (r.id for r in store.records(type=RecordType.MODEL_VERSION, subject="ft"))
        assert own_evaluations(collect_lineage(store, "ft")) == []
        assert len(own_evaluations(collect_lineage(store, "ft", "1"))) == 1  # the run (its evaluation's node)
    assert [e["model_version_record"] for e in _safety_evals(cli)] == [v1]

    code, _, err = cli("runs", "rejudge", run_id, "--judge", "refusal")  # its answers stay version 1's
    assert code == 0, err
    assert [e["model_version_record"] for e in _safety_evals(cli)] == [v1, v1]
    assert _missing(cli) == ["ft"]
    with Store.open(str(cli.db)) as store:
        assert own_evaluations(collect_lineage(store, "ft")) == []
        assert len(own_evaluations(collect_lineage(store, "ft", "1"))) == 2
    assert cli("verify")[0] == 0


def test_a_resume_after_a_new_version_is_refused_rather_than_mixing_two_versions(cli: Cli, tmp_path: Path,
                                                                                 server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    assert cli("models", "add", "base", "--ref", server.ref("base"))[0] == 0
    assert cli("models", "add", "ft", "--ref", server.ref("ft-v1"), "--base", "base")[0] == 0
    server.app.go_down()
    code, _, err = _eval(cli, server.ref("ft-v1", breaker="2", cooldown="0.1"), suite, "--name", "ft",
                         "--max-pause", "0.5")
    assert code == 3, err
    [run_id] = cli.runs()
    server.app.come_back()
    code, _, err = cli("models", "add", "ft", "--new-version", "--ref", server.ref("ft-v2"), "--base", "base")
    assert code == 0, err

    code, _, err = cli("eval", "--resume", run_id, "--no-progress")
    assert code == 2, err
    assert "--resume" in err and "version 1 of 'ft'" in err and "version 2" in err
    assert "start a new run" in err and "Traceback" not in err
    with Store.open(str(cli.db)) as store:
        assert load_run(store, run_id).status == "interrupted"
    assert _safety_evals(cli) == [] and _missing(cli) == ["ft"]


def test_a_gate_base_of_an_earlier_version_is_an_evaluation_of_that_version(cli: Cli, tmp_path: Path,
                                                                            server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    assert cli("models", "add", "base", "--ref", server.ref("base"))[0] == 0
    assert cli("models", "add", "ft", "--ref", server.ref("ft-v1"), "--base", "base")[0] == 0
    assert cli("models", "add", "ft", "--new-version", "--ref", server.ref("ft-v2"), "--base", "base")[0] == 0
    assert cli("models", "add", "other", "--ref", server.ref("other"), "--base", "base")[0] == 0
    # a base may be any version of its name (a model's previous run against another model)
    code, _, err = cli("gate", "--base", server.ref("ft-v1"), "--base-name", "ft", "--candidate",
                       server.ref("other"), "--candidate-name", "other", "--suite", str(suite), "--attacks",
                       "direct_request", "--judge", "refusal", "--out", str(tmp_path / "r"), "--no-progress")
    assert code in (0, 1, 3) and "decision recorded" in err, err  # a small suite may be inconclusive
    with Store.open(str(cli.db)) as store:
        v1, v2 = (r.id for r in store.records(type=RecordType.MODEL_VERSION, subject="ft"))
        [decision] = store.records(type=RecordType.GATE_DECISION)
        assert decision.body["base_version"]["record_id"] == v1
        assert own_evaluations(collect_lineage(store, "ft")) == []
        assert len(own_evaluations(collect_lineage(store, "ft", "1"))) == 1
    by_name = {e["model_name"]: e for e in _safety_evals(cli)}
    assert by_name["ft"]["model_version_record"] == v1 and by_name["ft"]["details"]["version"]["version"] == 1
    assert _missing(cli) == ["ft"]  # version 2 was not evaluated
    assert v2 > v1


def test_an_attestation_without_a_name_to_attest_is_refused(cli: Cli, tmp_path: Path, server: Server) -> None:
    """--attest-weights vouches for an inventory version; with no name there is none, and the flag would be
    silently ignored (the user believes an attestation was recorded)."""
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    code, _, err = _eval(cli, server.ref("ft"), suite, "--attest-weights")
    assert code == 2 and "--attest-weights" in err and "--name" in err, err
    assert cli.runs() == []
    code, _, err = cli("gate", "--base", server.ref("a"), "--candidate", server.ref("b"), "--suite",
                       str(suite), "--attacks", "direct_request", "--judge", "refusal", "--attest-weights",
                       "--no-progress")
    assert code == 2 and "--candidate-name" in err and "--base-name" in err, err
    assert cli.runs() == []
