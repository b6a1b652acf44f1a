"""Export one model version's safety evidence as an MLflow run. CONTRACT:

    exported = export_mlflow(evidence, documents, tracking_uri=URI, experiment="tunesafe",
                             registered_model=None, model_version=None) -> MlflowExport

One run per export: metrics (`tunesafe.<measure>.<group>`, e.g. tunesafe.attack_success_rate.family.
direct_request, from the judged evaluation's stored summary), params (model and base records, suite, judge,
policy), tags in the `tunesafe.*` namespace (governance.md 6.6: tunesafe.base_model, tunesafe.gate,
tunesafe.lineage_sha256, ...), and the generated documents as artifacts under `tunesafe/`. With
registered_model and model_version, the gate decision is also set as tags on that registered model version.

The inputs are checked before anything is written: a model with no evaluation and no gate (nothing to
export), a registered model version without a gate decision, or one that does not exist, is a UserError
(exit 2) and leaves no run behind. MLflow's own failures (unreachable server, a file store MLflow
refuses) are UserErrors naming the tracking URI. Needs `mlflow-skinny` (tunesafe[governance]).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.governance.documents import ModelEvidence
from tunesafe.types import canonical_json, sha256_hex

__all__ = ["MlflowExport", "export_mlflow"]

ARTIFACT_DIR = "tunesafe"


@dataclass(frozen=True)
class MlflowExport:
    tracking_uri: str
    experiment_id: str
    run_id: str
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    tags: Mapping[str, str]
    model_version_tags: Mapping[str, str]


def export_mlflow(evidence: ModelEvidence, documents: Mapping[str, bytes], *, tracking_uri: str,
                  experiment: str = "tunesafe", registered_model: str | None = None,
                  model_version: str | None = None, artifact_location: str | None = None) -> MlflowExport:
    facts = evidence.facts
    if facts.evaluation is None and facts.gate is None:
        raise UserError(f"nothing to export: model {facts.lineage.model!r} v{facts.lineage.version} has no "
                        "evaluation run and no gate decision", where="MODEL",
                        fix="evaluate it first: `tunesafe gate --candidate-name MODEL ...`")
    if (registered_model is None) != (model_version is None):
        raise UserError("--registered-model and --model-version go together", where="--registered-model",
                        fix="give both (the registered model's name and its version number), or neither")
    if registered_model is not None and facts.gate is None:
        raise UserError(f"model {facts.lineage.model!r} has no gate decision to put on the registered model "
                        "version", where="--registered-model", fix="run `tunesafe gate` for it first")
    client, mlflow = _client(tracking_uri)
    metrics, params, tags = _metrics(evidence), _params(evidence), _tags(evidence)
    shared = ("tunesafe.gate", "tunesafe.gate_record", "tunesafe.gate_record_hash", "tunesafe.lineage_sha256")
    version_tags = {key: tags[key] for key in shared} if registered_model is not None else {}
    with _mlflow_errors(tracking_uri, mlflow):
        if registered_model is not None:
            client.get_model_version(registered_model, str(model_version))  # must exist before the run
        experiment_id = _experiment(client, experiment, artifact_location or _default_artifacts(tracking_uri))
        run = client.create_run(experiment_id, run_name=f"{facts.lineage.model} v{facts.lineage.version}",
                                tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[mlflow.entities.Param(k, v) for k, v in params.items()])
        with tempfile.TemporaryDirectory(prefix="tunesafe-mlflow-") as folder:
            for path, data in documents.items():
                target = Path(folder) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            client.log_artifacts(run_id, folder, ARTIFACT_DIR)
        client.set_terminated(run_id)
        if registered_model is not None:
            for key, value in {**version_tags, "tunesafe.mlflow_run": run_id}.items():
                client.set_model_version_tag(registered_model, str(model_version), key, value)
            version_tags["tunesafe.mlflow_run"] = run_id
    return MlflowExport(tracking_uri, experiment_id, run_id, metrics, params, tags, version_tags)


# ---- what is exported ----------------------------------------------------------------------------------


def _metrics(evidence: ModelEvidence) -> dict[str, float]:
    out = {}
    for m in evidence.facts.metrics:
        if m.value is not None:
            key = f"tunesafe.{m.measure}.{m.group.replace(':', '.')}"
            out[key] = float(m.value)
            if m.low is not None and m.high is not None:
                out[f"{key}.ci_low"], out[f"{key}.ci_high"] = float(m.low), float(m.high)
    return out


def _params(evidence: ModelEvidence) -> dict[str, str]:
    facts = evidence.facts
    params = {"tunesafe.model": facts.lineage.model, "tunesafe.model_version": str(facts.lineage.version),
              "tunesafe.model_record": facts.model.record_id,
              "tunesafe.model_ref": str(facts.model.body.get("ref"))}
    if facts.evaluation is not None:
        params["tunesafe.suite"] = f"{facts.suite.get('name')} v{facts.suite.get('version')}"
        params["tunesafe.evaluation_run"] = str(facts.evaluation.body.get("run_id"))
    if facts.judge is not None:
        params["tunesafe.judge"] = f"{facts.judge.name} v{facts.judge.version}"
    if facts.gate is not None:
        params["tunesafe.policy_hash"] = str(facts.gate.body.get("policy_hash"))
    return params


def _tags(evidence: ModelEvidence) -> dict[str, str]:
    facts = evidence.facts
    lineage_json = canonical_json(facts.lineage.to_json())
    tags = {"tunesafe.model": facts.lineage.model, "tunesafe.lineage_sha256": sha256_hex(lineage_json),
            "tunesafe.model_record_hash": facts.model.record_hash}
    base = facts.base
    if base is not None:
        tags["tunesafe.base_model"] = str(base.body.get("name"))
        tags["tunesafe.base_model_record_hash"] = base.record_hash
    if facts.gate is not None:
        tags["tunesafe.gate"] = str(facts.gate.body.get("verdict"))
        tags["tunesafe.gate_record"] = facts.gate.record_id
        tags["tunesafe.gate_record_hash"] = facts.gate.record_hash
        tags["tunesafe.policy_id"] = str(facts.gate.body.get("policy_hash"))
    if facts.evaluation is not None:
        tags["tunesafe.eval_record_hash"] = facts.evaluation.record_hash
    return tags


# ---- MLflow ------------------------------------------------------------------------------------------------


def _client(tracking_uri: str) -> tuple[Any, Any]:
    try:
        import mlflow
        import mlflow.entities
        from mlflow import MlflowClient
    except ImportError:
        raise UserError("MLflow is not installed", where="--tracking-uri",
                        fix="pip install 'tunesafe[governance]' (it brings mlflow-skinny)") from None
    with _mlflow_errors(tracking_uri, mlflow):  # the client itself refuses an unknown scheme or a folder
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), mlflow


def _experiment(client: Any, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))


def _default_artifacts(tracking_uri: str) -> str | None:
    """Beside a SQLite tracking database, not in whatever folder the command runs from (MLflow's default
    for a database store is ./mlruns)."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


class _mlflow_errors:  # noqa: N801 (used as a context manager, named like one)
    def __init__(self, tracking_uri: str, mlflow: Any) -> None:
        self.tracking_uri, self.mlflow = tracking_uri, mlflow

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, self.mlflow.exceptions.MlflowException):
            message = str(exc).strip().splitlines()[0][:300]
            raise UserError(f"MLflow: {message}", where=self.tracking_uri,
                            fix="check the tracking URI (e.g. sqlite:///PATH/mlflow.db or http://HOST:5000), "
                                "the registered model name and version") from None
