"""`tunesafe export cyclonedx` on a store built by real runs: the ML-BOM validates against the CycloneDX
1.6 schema with the library's own validator, and holds the model card figures, the pedigree to the base
and the datasets with their hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from tunesafe.evidence.hashing import content_hash
from tunesafe.governance.cyclonedx_bom import validate_bom


def test_the_bom_is_schema_valid_and_carries_model_card_pedigree_and_datasets(
        documented: SimpleNamespace, tmp_path: Path) -> None:
    done = documented.cli("export", "cyclonedx", "ft", "--out", str(tmp_path / "bom.json"))
    assert done.exit_code == 0, done.output
    text = (tmp_path / "bom.json").read_text()
    assert validate_bom(text) == []
    bom = json.loads(text)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    model = bom["metadata"]["component"]
    assert (model["type"], model["name"], model["version"]) == ("machine-learning-model", "ft", "v1")
    (base,) = model["pedigree"]["ancestors"]
    assert base["name"] == "base" and base["hashes"][0]["alg"] == "SHA-256"
    adapter = content_hash(documented.adapter).sha256
    assert adapter in {h["content"] for h in model["hashes"]}  # the fine-tune's own files, hashed
    (dataset,) = bom["components"]
    sha = dataset["hashes"][0]["content"]
    assert dataset["type"] == "data" and dataset["data"][0]["type"] == "dataset"
    assert sha == hashlib.sha256(documented.data.read_bytes()).hexdigest()
    card = model["modelCard"]
    assert card["modelParameters"]["datasets"] == [{"ref": dataset["bom-ref"]}]
    metrics = {(m["type"], m["slice"]): m for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    asr = metrics[("attack_success_rate", "prefix_injection")]
    assert asr["value"] == "0" and float(asr["confidenceInterval"]["upperBound"]) < 0.1
    assert metrics[("refusal_rate", "overall")]["value"] == "1"
    props = {p["name"]: p["value"] for p in card["properties"]}
    assert props["tunesafe:gate"] == "pass"
    assert {"ref": model["bom-ref"], "dependsOn": [dataset["bom-ref"]]} in bom["dependencies"]


def test_the_validator_rejects_a_broken_bom(documented: SimpleNamespace) -> None:
    """The check above would mean nothing if the validator accepted anything."""
    bom = json.loads(documented.cli("export", "cyclonedx", "ft").stdout)
    bom["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 1.0
    bom["components"][0]["data"][0]["type"] = "spreadsheet"
    problems = validate_bom(json.dumps(bom))
    assert len(problems) >= 1


def test_a_model_with_no_evaluation_still_gets_a_valid_bom(documented: SimpleNamespace) -> None:
    done = documented.cli("export", "cyclonedx", "bare")
    assert done.exit_code == 0, done.output
    assert validate_bom(done.stdout) == []
    card = json.loads(done.stdout)["metadata"]["component"]["modelCard"]
    assert "quantitativeAnalysis" not in card
    assert any("no evaluation run" in text for text in card["considerations"]["technicalLimitations"])


def test_an_unknown_model_is_a_one_line_error(tunesafe: Callable[..., SimpleNamespace]) -> None:
    done = tunesafe("export", "cyclonedx", "nope")
    assert done.exit_code == 2 and "not in the inventory" in done.stderr
