"""`tunesafe export mlflow` into a real MLflow tracking store (a local SQLite file, mlflow-skinny), read
back with MlflowClient: metrics, params, tunesafe.* tags, the documents as artifacts, and the gate decision
on a registered model version."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

mlflow = pytest.importorskip("mlflow", reason="MLflow export needs mlflow-skinny (tunesafe[governance])")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_a_run_is_exported_and_reads_back(documented: SimpleNamespace, tracking: str) -> None:
    done = documented.cli("export", "mlflow", "ft", "--tracking-uri", tracking, "--json")
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.stdout)["run_id"]
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tunesafe"
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    assert metrics["tunesafe.attack_success_rate.family.prefix_injection"] == 0.0
    assert metrics["tunesafe.attack_success_rate.overall.ci_high"] < 0.1
    assert metrics["tunesafe.refusal_rate.overall"] == 1.0
    assert params["tunesafe.model"] == "ft" and params["tunesafe.suite"] == "smoke v1"
    assert tags["tunesafe.gate"] == "pass" and tags["tunesafe.base_model"] == "base"
    assert len(tags["tunesafe.lineage_sha256"]) == 64
    documents = {f.path for f in client.list_artifacts(run_id, "tunesafe/documents")}
    assert {"tunesafe/documents/annex-iv.md", "tunesafe/documents/README.md",
            "tunesafe/documents/cyclonedx.json"} <= documents
    local = Path(client.download_artifacts(run_id, "tunesafe/documents/cyclonedx.json"))
    assert json.loads(local.read_text())["metadata"]["component"]["name"] == "ft"
    artifacts = Path(tracking.removeprefix("sqlite:///")).parent / "mlartifacts"
    assert artifacts.is_dir()  # beside the database, not in the folder the test runs from


def test_the_gate_decision_lands_on_the_registered_model_version(
        documented: SimpleNamespace, tracking: str, tunesafe: Callable[..., SimpleNamespace]) -> None:
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    client.create_registered_model("ft")
    trained = client.create_run(client.create_experiment("training")).info.run_id  # where the weights live
    version = client.create_model_version("ft", source=f"runs:/{trained}/model", run_id=trained)
    missing = tunesafe("export", "mlflow", "ft", "--tracking-uri", tracking,
                       "--registered-model", "ft", "--model-version", "9")
    assert missing.exit_code == 2 and "MLflow:" in missing.stderr
    done = documented.cli("export", "mlflow", "ft", "--tracking-uri", tracking,
                     "--registered-model", "ft", "--model-version", str(version.version), "--json")
    assert done.exit_code == 0, done.output
    tags = client.get_model_version("ft", str(version.version)).tags
    assert tags["tunesafe.gate"] == "pass"
    assert tags["tunesafe.mlflow_run"] == json.loads(done.stdout)["run_id"]


def test_missing_evidence_and_half_given_options_are_one_line_errors(
        tunesafe: Callable[..., SimpleNamespace], tracking: str) -> None:
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    nothing = tunesafe("export", "mlflow", "bare", "--tracking-uri", tracking)
    assert nothing.exit_code == 2 and "nothing to export" in nothing.stderr
    half = tunesafe("export", "mlflow", "ft", "--tracking-uri", tracking, "--registered-model", "x")
    assert half.exit_code == 2 and "go together" in half.stderr
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before


@pytest.mark.parametrize("uri", ["nosuch://tracking", "mlruns-folder"])
def test_a_tracking_uri_mlflow_refuses_is_one_line_error(tunesafe: Callable[..., SimpleNamespace],
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        uri: str) -> None:
    # MlflowClient() itself refuses an unknown scheme, and a plain folder (its file store, deprecated): the
    # exception came before the MLflow error handling and printed a traceback
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    done = tunesafe("export", "mlflow", "ft", "--tracking-uri", uri)
    assert done.exit_code == 2, done.stderr
    assert "Traceback" not in done.stderr and f"{uri}: MLflow:" in done.stderr
