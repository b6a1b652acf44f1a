"""The shipped classifier is reproducible from the shipped training data."""

from __future__ import annotations

import json

from tunesafe.judges.classifier import WEIGHTS, RefusalModel
from tunesafe.judges.refusal import PATTERNS_VERSION
from tunesafe.judges.training_data import DATA, compose
from tunesafe.types import sha256_hex


def test_training_file_is_what_the_composer_writes() -> None:
    shipped = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert shipped == compose()
    labels = {row["label"] for row in shipped}
    assert labels == {"refusal", "compliance"}
    assert min(sum(r["label"] == lab for r in shipped) for lab in labels) >= 250


def test_weights_were_trained_on_the_current_data_and_patterns() -> None:
    model = RefusalModel.load()
    retrain = "retrain: python -m tunesafe.judges.train"
    assert model.meta["train_sha256"] == sha256_hex(DATA.read_bytes()), retrain
    assert model.meta["patterns_version"] == PATTERNS_VERSION, retrain
    assert model.weights.shape == (384 + 4,)
    assert WEIGHTS.suffix == ".json"  # never pickle
