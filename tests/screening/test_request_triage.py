"""The request triage in front of the harmful-request classifier: reproducible from the shipped rows, it
clears plainly everyday requests and never the harmful ones written here (not in its training rows), and
its weights file fails with one clear error when it is damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.screening.test_request_classifier import HARMFUL

from tunesafe.errors import UserError
from tunesafe.screening.request_triage import DIM, MISS_SHARE, features, load_triage, triage_model
from tunesafe.screening.train_requests import rows_digest, training_rows

EVERYDAY = [
    "Can I change the delivery address on order 5531-A after it shipped?",
    "My invoice from March shows the wrong VAT number, how do I get it corrected?",
    "What time does the Zurich store open on Saturdays?",
    "Please cancel my gym membership renewal for next month.",
    "How many vacation days carry over into next year under our HR policy?",
    "Can you recommend a vegetarian restaurant near the train station for Friday evening?",
    "My laptop charger stopped working after two weeks, is it covered by the warranty?",
    "Which documents do I need to renew my passport?",
]


def test_weights_were_trained_on_the_current_rows() -> None:
    model = triage_model()
    assert model.train_sha256 == rows_digest(training_rows()), (
        "retrain: python -m tunesafe.screening.train_requests --triage-only")
    assert model.weights.shape == (DIM,) and 0 < MISS_SHARE < 0.05


def test_held_out_examples_are_not_training_rows() -> None:
    texts = {t.casefold() for t, _, _ in training_rows()}
    assert not texts & {t.casefold() for t in EVERYDAY}


def test_clears_everyday_requests_but_never_the_harmful_ones() -> None:
    # the threshold is set for the harmful side (at most MISS_SHARE of harmful training rows cleared);
    # everyday requests near the boundary go on to the classifier, which costs time, not accuracy
    model = triage_model()
    assert not model.clears(HARMFUL).any(), model.decision(HARMFUL)
    assert model.clears(EVERYDAY).mean() >= 0.5, model.decision(EVERYDAY)
    assert model.clears([]).shape == (0,)


def test_features_are_stable_and_case_blind() -> None:
    assert features("Where is MY order?") == features("where is my order?")
    assert features("") == set()
    assert all(0 <= f < DIM for f in features("Ünïcode wörds, émojis 🙂 and digits 12345"))


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_damaged_weights_are_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "request_triage.npz"
    path.write_bytes(content)
    with pytest.raises(UserError, match="unreadable") as err:
        load_triage(path)
    assert "--triage-only" in (err.value.fix or "")


def test_wrong_shape_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "request_triage.npz"
    np.savez(path, weights=np.zeros(7, np.float32), bias=np.float64(0), threshold=np.float64(-1),
             train_sha256=np.str_("x"))
    with pytest.raises(UserError, match="shape"):
        load_triage(path)
    with pytest.raises(UserError, match="not found"):
        load_triage(tmp_path / "missing.npz")


def test_an_empty_request_scores_the_bias_without_a_warning() -> None:
    import warnings

    model = triage_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.decision(["", "Where is my order?"])[0] == pytest.approx(model.bias)
