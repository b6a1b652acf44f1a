"""Statistics against reference values computed independently (closed forms, hand-worked tables,
research.md section 9)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from tunesafe.analysis.stats import (
    cohen_kappa,
    holm,
    mcnemar_exact,
    minimum_detectable_regression,
    paired_bootstrap_ci,
    required_pairs,
    tango_ci,
)


def _binom_tail(k: int, m: int) -> float:
    """P(X >= k), X ~ Bin(m, 1/2), summed by hand."""
    return sum(comb(m, i) for i in range(k, m + 1)) / 2 ** m


def test_mcnemar_exact_known_table() -> None:
    # b=10, c=2: P(X>=10 | Bin(12, .5)) = (66+12+1)/4096
    assert mcnemar_exact(10, 2, "greater") == pytest.approx(79 / 4096)
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(2, 10, "greater") == pytest.approx(_binom_tail(2, 12))


@pytest.mark.parametrize(("b", "c"), [(0, 0), (5, 5), (7, 0), (0, 7), (30, 12)])
def test_mcnemar_exact_matches_binomial_sum(b: int, c: int) -> None:
    m = b + c
    one = _binom_tail(b, m) if m else 1.0
    two = min(1.0, 2 * min(_binom_tail(b, m), _binom_tail(c, m))) if m else 1.0
    assert mcnemar_exact(b, c, "greater") == pytest.approx(one)
    assert mcnemar_exact(b, c) == pytest.approx(two)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_holm_known_vector() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = .02, .03, .06, .04 -> monotone .02 .03 .06 .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_skips_untested_and_caps_at_one() -> None:
    adjusted = holm([None, 0.5, 0.2, None])
    assert adjusted[0] is None and adjusted[3] is None
    assert adjusted[1:3] == pytest.approx([0.5, 0.4])  # 2 x 0.2, then max(0.4, 1 x 0.5)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def _singletons(b: int, c: int, n: int) -> tuple[list[int], list[int], list[int]]:
    """n independent pairs: b got worse, c got better."""
    return [1] * b + [0] * (n - b), [0] * b + [1] * c + [0] * (n - b - c), [1] * n


def test_bootstrap_contains_diff_and_is_reproducible() -> None:
    b, c, n = 18, 4, 120
    ci = paired_bootstrap_ci(*_singletons(b, c, n), seed=7)
    assert ci is not None
    low, high = ci
    assert low < (b - c) / n < high
    assert paired_bootstrap_ci(*_singletons(b, c, n), seed=7) == ci
    assert paired_bootstrap_ci(*_singletons(b, c, n), seed=8) != ci


def test_bootstrap_matches_index_resampling() -> None:
    """With one pair per cluster the interval is the plain paired bootstrap (independent code)."""
    b, c, n = 25, 10, 200
    diffs = np.array([1] * b + [-1] * c + [0] * (n - b - c))
    rng = np.random.default_rng(123)
    means = diffs[rng.integers(0, n, size=(20000, n))].mean(axis=1)
    expected = np.percentile(means, [2.5, 97.5])
    low, high = paired_bootstrap_ci(*_singletons(b, c, n), n_boot=20000, seed=1) or (0.0, 0.0)
    assert low == pytest.approx(expected[0], abs=0.01)
    assert high == pytest.approx(expected[1], abs=0.01)


def test_bootstrap_resamples_clusters() -> None:
    """40 attempts that are 10 behaviours x 4 identical attacks carry the information of 10 pairs, not 40:
    the interval matches 10 independent pairs and is wider than 40 independent ones."""
    clustered = paired_bootstrap_ci([4] * 3 + [0] * 7, [0] * 10, [4] * 10, n_boot=20000, seed=3)
    ten = paired_bootstrap_ci(*_singletons(3, 0, 10), n_boot=20000, seed=3)
    forty = paired_bootstrap_ci(*_singletons(12, 0, 40), n_boot=20000, seed=3)
    assert clustered is not None and ten is not None and forty is not None
    assert clustered == pytest.approx(ten, abs=0.02)
    assert clustered[1] - clustered[0] > (forty[1] - forty[0]) * 1.5


def test_bootstrap_without_discordance_is_a_point() -> None:
    assert paired_bootstrap_ci(*_singletons(0, 0, 50)) == (0.0, 0.0)
    assert paired_bootstrap_ci([], [], []) is None


def test_tango_interval_matches_the_published_example() -> None:
    # Fagerland, Lydersen & Laake 2014 (Stat Med 33:2850), 21 pairs with 1 and 7 discordant: Tango's
    # asymptotic score interval is -0.517 to -0.026
    low, high = tango_ci(1, 7, 21)
    assert round(low, 3) == -0.517 and round(high, 3) == -0.026


@pytest.mark.parametrize("n", [30, 60, 112, 1000])
def test_tango_interval_of_identical_pairs_has_a_width(n: int) -> None:
    """No discordant pair: the bound solves n d / (1 - d) = z^2, so n identical pairs rule out only
    regressions above z^2 / (n + z^2), where the bootstrap gives [0, 0]."""
    z2 = 1.959963984540054 ** 2
    low, high = tango_ci(0, 0, n)
    assert high == pytest.approx(z2 / (n + z2), abs=1e-9) and low == pytest.approx(-high, abs=1e-9)


def test_tango_interval_holds_the_estimate_and_stays_in_range() -> None:
    for up, down, n in [(5, 0, 5), (0, 5, 5), (28, 4, 112), (3, 1, 20), (0, 1, 1)]:
        low, high = tango_ci(up, down, n)
        assert -1 <= low <= (up - down) / n <= high <= 1
    assert tango_ci(0, 0, 0) is None
    with pytest.raises(ValueError):
        tango_ci(3, 3, 5)


def test_required_pairs_matches_connor_table() -> None:
    # research.md section 9, one-sided Connor n: p10=.05,p01=0 -> 122; p10=.06,p01=.01 -> 172;
    # p10=.10,p01=.05 -> 369
    assert required_pairs(0.05, 0.0, 0.05) == pytest.approx(122, abs=1)
    assert required_pairs(0.05, 0.01, 0.05) == pytest.approx(172, abs=1)
    assert required_pairs(0.05, 0.05, 0.05) == pytest.approx(369, abs=1)


def test_mde_is_monotone_in_n() -> None:
    # 122 pairs without churn: Connor's 5.0 points; the exact test reaches 80% power at 5.45
    assert minimum_detectable_regression(122, 0.0, 0.05) == pytest.approx(0.0545, abs=0.0005)
    values = [minimum_detectable_regression(n, 0.02, 0.05) for n in (20, 50, 100, 400, 2000)]
    assert all(v is not None for v in values)
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == len(values)


def _exact_power(n: int, p10: float, p01: float, alpha: float = 0.05) -> float:
    """Power of the gate's test (one-sided exact McNemar at alpha), every table (b, c) of n pairs summed."""
    rest = 1 - p10 - p01
    return sum(comb(n, b) * comb(n - b, c) * p10 ** b * p01 ** c * rest ** (n - b - c)
               for b in range(n + 1) for c in range(n + 1 - b)
               if mcnemar_exact(b, c, "greater") <= alpha)


@pytest.mark.parametrize(("n", "p01"), [(30, 0.0), (30, 0.05), (60, 0.02), (122, 0.0)])
def test_mde_is_detected_with_80_percent_power_by_the_exact_test(n: int, p01: float) -> None:
    """The detectable regression is the one the gate's exact test finds 4 times in 5. Connor's normal
    approximation gave one it found only 71-76% of the time (122 pairs: 5.0 points, at 73%)."""
    mde = minimum_detectable_regression(n, p01, 0.05)
    assert mde is not None
    assert _exact_power(n, mde + p01, p01) == pytest.approx(0.8, abs=1e-4)


def test_mde_undefined_for_tiny_runs() -> None:
    assert minimum_detectable_regression(0, 0.0, 0.05) is None
    assert minimum_detectable_regression(2, 0.3, 0.05) is None


def test_cohen_kappa_known_values() -> None:
    # po = .75, pe = .5*.25 + .5*.75 = .5 -> kappa .5
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(0.5)
    assert cohen_kappa([True, False, True], [True, False, True]) == pytest.approx(1.0)
    assert cohen_kappa([True, True], [True, True]) is None
