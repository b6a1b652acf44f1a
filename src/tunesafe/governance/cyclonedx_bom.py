"""A CycloneDX 1.6 ML-BOM of one model version, built from its lineage. CONTRACT:

    bom = cyclonedx_bom(facts) -> dict       # JSON-ready; valid against the 1.6 schema (validate_bom)
    problems = validate_bom(text) -> list    # the library's strict JSON-schema validator; [] when valid

The BOM's subject (metadata.component) is the model: type machine-learning-model, the hashes of its files,
pedigree.ancestors = its base model(s), and a modelCard whose quantitativeAnalysis holds our measured
figures (attack success, refusal, over-refusal by attack family, with Wilson intervals) and whose
considerations hold the limitations the evidence states. Datasets are `data` components with their sha256.
Every part carries `tunesafe:record_id` / `tunesafe:record_hash` properties naming its evidence record.

cyclonedx-python-lib builds and serialises everything it models; it has no model for modelCard and
componentData (component.data), so those two are added to its JSON output, and the whole document is then
checked by the library's own schema validator, so nothing unvalidated is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion

from tunesafe import __version__
from tunesafe.governance.facts import Facts, Source
from tunesafe.governance.lineage import LineageNode

__all__ = ["cyclonedx_bom", "validate_bom"]

SPEC = SchemaVersion.V1_6


def cyclonedx_bom(facts: Facts) -> dict[str, Any]:
    datasets = [_dataset(node) for node in facts.kind("dataset")]
    bases = [_model_component(b, f"record-{b.record_id}") for b in facts.kind("base")]
    model = _model_component(facts.model, f"v{facts.lineage.version}", ancestors=bases)
    bom = Bom(metadata=BomMetaData(component=model, properties=[Property(name="tunesafe:version",
                                                                          value=__version__)]),
              components=datasets)
    bom.register_dependency(model, datasets)
    data: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    data["metadata"]["component"]["modelCard"] = _model_card(facts, [str(d.bom_ref) for d in datasets])
    by_ref = {str(d.bom_ref): node for d, node in zip(datasets, facts.kind("dataset"), strict=True)}
    for component in data.get("components", []):
        node = by_ref.get(component.get("bom-ref"))
        if node is not None:
            component["data"] = [_component_data(node)]
    return data


def validate_bom(text: str) -> list[str]:
    # imported here: jsonschema's format checkers take seconds to import, and only validation needs them
    from cyclonedx.validation.json import JsonStrictValidator

    errors = JsonStrictValidator(SPEC).validate_str(text, all_errors=True)
    return [str(getattr(e.data, "message", e.data)) for e in errors or ()]


# ---- components -----------------------------------------------------------------------------------------


def _evidence_properties(source: Source) -> list[Property]:
    return [Property(name="tunesafe:record_id", value=source.record_id),
            Property(name="tunesafe:record_hash", value=source.record_hash)]


def _sha256s(entries: Iterable[Mapping[str, Any]]) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=str(e["sha256"])) for e in entries if e.get("sha256")]


def _model_component(node: LineageNode, version: str, ancestors: list[Component] | None = None) -> Component:
    body = node.body
    files = list(body.get("files") or ())
    properties = [Property(name="tunesafe:ref", value=str(body.get("ref"))),
                  *(Property(name=f"tunesafe:file:{f.get('role')}", value=str(f.get("sha256")))
                    for f in files),
                  *_evidence_properties(Source.of(node))]
    return Component(name=str(body.get("name")), type=ComponentType.MACHINE_LEARNING_MODEL,
                     bom_ref=f"model:{body.get('name')}@record-{node.record_id}",
                     version=version, hashes=_sha256s(files), properties=properties,
                     pedigree=Pedigree(ancestors=ancestors) if ancestors else None)


def _dataset(node: LineageNode) -> Component:
    body = node.body
    name = str(body.get("path") or body.get("sha256")).rsplit("/", 1)[-1]
    return Component(name=name, type=ComponentType.DATA, bom_ref=f"dataset:{body.get('sha256')}",
                     hashes=_sha256s([body]), properties=_evidence_properties(Source.of(node)))


def _component_data(node: LineageNode) -> dict[str, Any]:
    body = node.body
    return {"type": "dataset", "name": str(body.get("path") or body.get("sha256")).rsplit("/", 1)[-1],
            "description": f"fine-tuning data, sha256 {body.get('sha256')}"
                           + (f", {body['size']} bytes" if body.get("size") is not None else "")}


def _model_card(facts: Facts, dataset_refs: list[str]) -> dict[str, Any]:
    card: dict[str, Any] = {"bom-ref": f"model-card:{facts.lineage.model}@record-{facts.model.record_id}",
                            "modelParameters": {"task": "text-generation",
                                                "datasets": [{"ref": ref} for ref in dataset_refs]}}
    if not dataset_refs:
        del card["modelParameters"]["datasets"]
    metrics = [_metric(m.measure, m.slice, m.value, m.low, m.high) for m in facts.metrics
               if m.value is not None and (m.group == "overall" or m.group.startswith("family:"))]
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    limitations = [f"{text} [{source.cite()}]" if source else text for text, source in facts.limitations]
    if limitations:
        card["considerations"] = {"technicalLimitations": limitations}
    properties = []
    if facts.evaluation is not None:
        properties += [{"name": "tunesafe:evaluation_record", "value": facts.evaluation.record_id},
                       {"name": "tunesafe:evaluation_record_hash", "value": facts.evaluation.record_hash}]
    if facts.gate is not None:
        properties += [{"name": "tunesafe:gate", "value": str(facts.gate.body.get("verdict"))},
                       {"name": "tunesafe:gate_record", "value": facts.gate.record_id},
                       {"name": "tunesafe:gate_record_hash", "value": facts.gate.record_hash},
                       {"name": "tunesafe:policy_hash", "value": str(facts.gate.body.get("policy_hash"))}]
    if facts.judge is not None:
        properties.append({"name": "tunesafe:judge", "value": f"{facts.judge.name} v{facts.judge.version}"})
    if properties:
        card["properties"] = properties
    return card


def _metric(measure: str, slice_: str, value: float, low: float | None, high: float | None) -> dict[str, Any]:
    metric: dict[str, Any] = {"type": measure, "value": f"{value:.6g}", "slice": slice_}
    if low is not None and high is not None:
        metric["confidenceInterval"] = {"lowerBound": f"{low:.6g}", "upperBound": f"{high:.6g}"}
    return metric
