"""Paired statistics for a pre/post comparison on identical attempts.

Each attempt gives a pair (bad before, bad after) where "bad" is the event the gate worries about
(attack success, a missing refusal, an over-refusal). Only the discordant pairs carry information:
b = bad only after (regressions), c = bad only before (fixes). See research.md section 9.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# One kappa for the ensemble's agreement and the comparison's: it lives with the judges, which may not
# import analysis/.
from tunesafe.judges.ensemble import cohen_kappa as cohen_kappa

# scipy is imported inside the functions that need it: scipy.stats alone took a third of the CLI's start-up,
# and most commands (input errors, listings) never compute a p-value.

POWER = 0.8
BOOT_CELLS = 4_000_000  # cluster draws held in memory at once by the bootstrap
TAIL = 1e-12  # probability left out at each end of the discordant count by exact_power


def mcnemar_exact(b: int, c: int, alternative: str = "two-sided") -> float:
    """Exact McNemar p-value: conditional on m = b + c discordant pairs, b ~ Binomial(m, 1/2) under H0.

    alternative="greater" is the one-sided test for a regression (more b than c)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5, alternative=alternative).pvalue)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (FWER), in the input order; None entries are not tests."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        # step-down: adjusted values are made monotone so a later rank never rejects more easily
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_bootstrap_ci(up: Sequence[int], down: Sequence[int], sizes: Sequence[int], *, n_boot: int = 2000,
                        seed: int = 0, confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the paired difference (after - before) of a binary rate, resampling
    clusters: cluster i holds sizes[i] pairs, up[i] of them got the event only after, down[i] only before.

    Attempts of one behaviour under several attacks are correlated, so resampling behaviours (not
    attempts) keeps the interval honest; with one pair per cluster this is the plain paired bootstrap."""
    k = len(sizes)
    if k == 0 or sum(sizes) == 0:
        return None
    rng = np.random.default_rng(seed)
    net = np.asarray(up, dtype=np.int64) - np.asarray(down, dtype=np.int64)
    size = np.asarray(sizes, dtype=np.int64)
    rows = max(1, BOOT_CELLS // k)  # replicates per block: bounds memory on very large runs
    diffs = np.concatenate([_replicates(rng, net, size, min(rows, n_boot - start))
                            for start in range(0, n_boot, rows)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def tango_ci(up: int, down: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Tango's (1998) score interval of the paired difference (up - down) / n, pairs taken as independent:
    every difference d whose score statistic |T(d)| stays within the normal quantile, with

        T(d) = (up - down - n d) / sqrt(n (2 q + d (1 - d))),

    q the maximum-likelihood rate of "down" pairs given the difference d. Unlike a percentile bootstrap
    it does not collapse to [0, 0] when few or no pairs changed: n identical pairs rule out a regression
    of only about z^2 / (n + z^2) (3.3 points at n = 112, 11.3 at n = 30)."""
    if n <= 0:
        return None
    if up < 0 or down < 0 or up + down > n:
        raise ValueError(f"need 0 <= up, down and up + down <= n, got {up}, {down}, {n}")
    from scipy.optimize import brentq
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - confidence) / 2))
    observed = (up - down) / n

    def score(d: float) -> float:
        w = -up - down + (2 * n - up + down) * d
        q = (max(w * w + 8 * n * down * d * (1 - d), 0.0) ** 0.5 - w) / (4 * n)
        spread = n * (2 * q + d * (1 - d))
        return (up - down - n * d) / spread ** 0.5 if spread > 0 else 0.0

    # the score falls as d rises: the bounds are where it crosses -z (upper) and +z (lower)
    edge = 1 - 1e-12
    high = 1.0 if score(edge) >= -z else brentq(lambda d: score(d) + z, observed, edge, xtol=1e-10)
    low = -1.0 if score(-edge) <= z else brentq(lambda d: score(d) - z, -edge, observed, xtol=1e-10)
    return float(low), float(high)


def _replicates(rng: np.random.Generator, net: np.ndarray, size: np.ndarray, count: int) -> np.ndarray:
    picks = rng.integers(0, len(size), size=(count, len(size)))
    result: np.ndarray = net[picks].sum(axis=1) / size[picks].sum(axis=1)
    return result


def required_pairs(delta: float, p01: float, alpha: float, power: float = POWER) -> float:
    """Connor (1987) sample size for the one-sided McNemar test of a regression delta = p10 - p01, the
    normal approximation docs/suites.md sizes the suites with (the gate's own power: exact_power):

        n = [z_{1-alpha} sqrt(psi) + z_{power} sqrt(psi - delta^2)]^2 / delta^2,  psi = p10 + p01
    """
    from scipy.stats import norm

    psi = 2 * p01 + delta
    za, zb = float(norm.ppf(1 - alpha)), float(norm.ppf(power))
    return float((za * psi ** 0.5 + zb * max(psi - delta * delta, 0.0) ** 0.5) ** 2 / (delta * delta))


def exact_power(n: int, p10: float, p01: float, alpha: float) -> float:
    """Power of the gate's test, the one-sided exact McNemar test at alpha, with n pairs of which a share
    p10 regress and p01 improve: over the m discordant pairs (m ~ Bin(n, p10 + p01)), the chance that the
    regressions among them (Bin(m, p10 / (p10 + p01))) reach the count whose p-value is <= alpha."""
    from scipy.stats import binom

    psi = p10 + p01
    if n <= 0 or psi <= 0:
        return 0.0
    # only the discordant counts m with a chance above 1e-12 (a few standard deviations: fast on large runs)
    low, high = binom.ppf([TAIL, 1 - TAIL], n, psi)
    m = np.arange(int(low), int(high) + 1)
    # fewest regressions b among m discordant pairs with P(X >= b) <= alpha, X ~ Bin(m, 1/2) (none: m + 1)
    need = binom.ppf(1 - alpha, m, 0.5) + 1
    return float(np.sum(binom.pmf(m, n, psi) * binom.sf(need - 1, m, min(p10 / psi, 1.0))))


def minimum_detectable_regression(n: int, p01: float, alpha: float, power: float = POWER) -> float | None:
    """Smallest regression (p10 - p01, as a rate) that n pairs detect with the given power by the gate's
    exact one-sided test, keeping the fix rate p01 at its observed value (c / n). None when no regression
    is detectable at all. (Connor's normal approximation, `required_pairs`, promised 80% where the exact
    test has 63-77%: its detectable regressions were 6-14% too small at every n.)"""
    if n <= 0:
        return None
    p01 = min(max(p01, 0.0), 0.5)
    top = 1 - 2 * p01  # p10 + p01 <= 1
    if top <= 0 or exact_power(n, top + p01, p01, alpha) < power:
        return None
    from scipy.optimize import brentq

    # the power rises with delta (more discordant pairs, more of them regressions), so the root is unique
    return float(brentq(lambda d: exact_power(n, d + p01, p01, alpha) - power, 1e-9, top, xtol=1e-7))
