"""Exact binomial bounds for the export gates: judge a sample, not its noise.

    agreement_bounds(k=95, n=96) -> (0.951, 0.9995)       # one-sided 95% bounds each
    drop_bounds(b=1, c=0, n=96) -> (-0.0094, 0.0104)
    images_needed(0.995) -> 598

With 96 validation images one flip is 1.04%, so a fixed threshold of 1% fails
any model at random. A gate here fails only when the sample shows, with 95%
confidence (one-sided), that the artifact is worse than the limit; passing on
a sample smaller than `images_needed` means "not shown to be worse", not
"shown to be within the limit", and the report says so.

- Agreement: k of n top-1 answers agree. Clopper-Pearson's exact interval
  (each end a one-sided bound) from the binomial tail, with no normal
  approximation: scipy.stats.binomtest(k, n).proportion_ci(method="exact")
  gives the same numbers (the tests check it).
- Accuracy drop: paired, like McNemar's exact test. Of the n images, b were
  right in Keras and wrong in the artifact, c the reverse; only these m = b + c
  discordant pairs carry information. Given m, b ~ Binomial(m, pi), and the
  drop (b - c) / n = m (2 pi - 1) / n, so the exact bounds on pi translate
  into bounds on the drop (conditional on m, as McNemar's exact test is).
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95  # of each one-sided bound


def _log_binom_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = i), i = 0..n, X ~ Binomial(n, p), 0 < p < 1."""
    i = np.arange(1, n + 1, dtype=np.float64)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(n - i + 1) - np.log(i))])
    k = np.arange(n + 1, dtype=np.float64)
    return log_comb + k * math.log(p) + (n - k) * math.log1p(-p)


def _tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X >= k) if upper else P(X <= k), X ~ Binomial(n, p)."""
    logs = _log_binom_pmf(n, p)
    part = logs[k:] if upper else logs[:k + 1]
    top = part.max()
    return float(min(1.0, math.exp(top) * np.exp(part - top).sum()))


def _solve(f, target: float) -> float:
    """p in (0, 1) with f(p) = target, f increasing in p; bisection to 1e-12."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(lower, upper) bounds on a proportion from k successes of n trials; each is an
    exact one-sided `confidence` bound (together a 2*confidence - 1 two-sided interval)."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    # lower: the p at which seeing k or more is just alpha likely; upper: k or fewer.
    lower = 0.0 if k == 0 else _solve(lambda p: _tail(k, n, p, upper=True), alpha)
    upper = 1.0 if k == n else _solve(lambda p: -_tail(k, n, p, upper=False), -alpha)
    return lower, upper


def agreement_bounds(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided `confidence` bounds on the top-1 agreement rate, from k agreeing of n images."""
    return clopper_pearson(k, n, confidence)


def drop_bounds(b: int, c: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided `confidence` bounds on the accuracy drop (Keras minus artifact, a fraction of n).

    b: images Keras got right and the artifact wrong; c: the reverse; n: all images.
    """
    m = b + c
    if m == 0 or n <= 0:
        return 0.0, 0.0  # no discordant pair: the two models score alike on every image
    lo, hi = clopper_pearson(b, m, confidence)
    return m * (2 * lo - 1) / n, m * (2 * hi - 1) / n


def images_needed(limit: float, confidence: float = CONFIDENCE) -> int:
    """Images a rate limit needs: the least n at which a perfect sample (no flip) proves,
    with one-sided `confidence`, a flip rate of at most `limit` (1 - limit for an agreement limit).

    limit: a flip rate in (0, 1); 0.005 (agreement 0.995) -> 598, 0.01 -> 299, 0.03 -> 99.
    """
    if limit <= 0:
        return 0  # no sample proves a rate of exactly zero
    if limit >= 1:
        return 1
    return math.ceil(math.log(1 - confidence) / math.log1p(-limit))
