"""L2-regularised logistic regression, shared by the project's small classifiers (the refusal judge and
the harmful-request screener). Deterministic: L-BFGS from zeros, no random init, so retraining on the
same rows writes the same weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize


def class_weights(y: np.ndarray) -> np.ndarray:
    """Balanced weights (n / (2 n_class)) so the threshold of 0.5 does not drift with the label mix of
    hand-written data."""
    positives = y.sum()
    return np.where(y > 0.5, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    sw = class_weights(y)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        # log(1 + e^z) - y z, computed stably
        value = sw * (np.logaddexp(0.0, z) - y * z)
        residual = sw * (1.0 / (1.0 + np.exp(-z)) - y)
        grad_w = x.T @ residual / len(y) + l2 * w / len(y)
        return float(value.mean() + 0.5 * l2 * w @ w / len(y)), np.append(grad_w, residual.mean())

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 2000})
    return result.x[:-1], float(result.x[-1])


def out_of_fold(x: np.ndarray, y: np.ndarray, fit_decision: Callable[[np.ndarray, np.ndarray, np.ndarray],
                np.ndarray], folds: int = 5) -> np.ndarray:
    """Decision values of each row from a model fitted without its fold (deterministic interleaved
    folds). `fit_decision(x_train, y_train, x_test)` fits and scores; any classifier can be plugged in."""
    order = np.arange(len(y)) % folds
    out = np.zeros(len(y))
    for k in range(folds):
        out[order == k] = fit_decision(x[order != k], y[order != k], x[order == k])
    return out


def cross_validated_scores(x: np.ndarray, y: np.ndarray, l2: float, folds: int = 5) -> np.ndarray:
    """Out-of-fold decision values (x @ w + b) of the logistic model."""

    def fit_decision(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        w, b = fit(x_train, y_train, l2)
        return x_test @ w + b

    return out_of_fold(x, y, fit_decision, folds)


def cross_validate(x: np.ndarray, y: np.ndarray, l2: float, folds: int = 5) -> float:
    """Out-of-fold accuracy at the 0.5 threshold."""
    return float(((cross_validated_scores(x, y, l2, folds) > 0) == (y > 0.5)).mean())
