"""The loss monitor on synthetic curves: each anomaly is found at the right step, once, and a clean
curve (noisy, decreasing, as real training is) raises nothing."""

from __future__ import annotations

import math
import random

import pytest

from tunesafe.training.loss_monitor import LossMonitorConfig, robust_z, scan


def clean_curve(n: int = 200, seed: int = 0) -> list[tuple[int, float]]:
    """A typical SFT curve: exponential decay to a plateau with a few percent of noise."""
    rng = random.Random(seed)
    return [(s, (0.8 + 1.7 * math.exp(-s / 40)) * (1 + rng.uniform(-0.04, 0.04))) for s in range(1, n + 1)]


def kinds(events: list) -> list[str]:
    return [e.kind for e in events]


def test_clean_curve_raises_nothing() -> None:
    for seed in range(5):
        assert scan(clean_curve(seed=seed)) == []


def test_spike_is_found_at_its_step_with_value_and_reason() -> None:
    curve = clean_curve()
    curve[99] = (100, 9.0)
    events = scan(curve)
    assert kinds(events) == ["loss_spike"]
    assert events[0].step == 100 and events[0].value == 9.0
    assert "robust SDs above the median" in events[0].reason


def test_moderate_bump_is_not_a_spike() -> None:
    curve = clean_curve()
    step, value = curve[99]
    curve[99] = (step, value * 1.1)  # within the noise band of a real curve
    assert scan(curve) == []


def test_nan_and_inf_are_one_event_per_stretch() -> None:
    curve = clean_curve(60)
    for i in range(30, 40):
        curve[i] = (curve[i][0], float("nan"))
    curve[50] = (51, float("inf"))
    events = scan(curve)
    assert kinds(events) == ["loss_nonfinite", "loss_nonfinite"]
    assert [e.step for e in events] == [31, 51]
    assert events[0].value is None and "nan" in events[0].reason


def test_sustained_rise_is_divergence_once() -> None:
    curve = clean_curve(100)
    # after step 100 the loss climbs steadily from ~0.85 to ~4
    curve += [(s, 0.85 * 1.03 ** (s - 100)) for s in range(101, 160)]
    events = scan(curve)
    assert kinds(events) == ["loss_divergence"]
    assert 110 < events[0].step < 160
    assert events[0].value is not None and events[0].limit is not None and events[0].value > events[0].limit


def test_single_spike_never_counts_as_divergence() -> None:
    curve = clean_curve()
    curve[120] = (121, 50.0)
    assert kinds(scan(curve)) == ["loss_spike"]


def test_collapse_toward_zero_is_memorisation() -> None:
    # a dozen examples, many epochs: the loss falls to ~0.001
    curve = [(s, 2.5 * math.exp(-s / 6)) for s in range(1, 80)]
    events = scan(curve)
    assert kinds(events) == ["loss_collapse"]
    first_below = next(s for s, v in curve if v < 0.02)
    assert first_below <= events[0].step <= first_below + 5
    assert "memorising" in events[0].reason


def test_robust_z_ignores_earlier_outliers() -> None:
    history = [1.0, 1.01, 0.99, 1.0, 30.0, 1.02, 0.98]
    assert robust_z(1.03, history) < 3
    assert robust_z(2.0, history) > 20


@pytest.mark.parametrize("bad", [dict(window=2), dict(min_history=30), dict(spike_z=0),
                                 dict(divergence_ratio=1.0), dict(collapse_points=0)])
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        LossMonitorConfig(**bad)
