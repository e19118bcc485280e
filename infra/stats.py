"""Distribution-free statistics that bench and analysis both use."""

from __future__ import annotations

from collections.abc import Sequence

from scipy import stats


def median_bounds(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free interval of the median from order statistics: [x(k+1), x(n-k)], which covers it
    with probability 1 - 2 P(B <= k), B ~ Binomial(n, 1/2); k the largest that keeps that at least
    `confidence`. Too few samples for any such k: the smallest and the largest (coverage 1 - 2^(1-n)).
    Robust: a few outliers on one side do not move it."""
    ordered, n = sorted(samples), len(samples)
    tail = (1 - confidence) / 2
    k = int(stats.binom.ppf(tail, n, 0.5))
    if stats.binom.cdf(k, n, 0.5) > tail:
        k -= 1
    k = max(min(k, (n - 1) // 2), 0)
    return ordered[k], ordered[n - 1 - k]
