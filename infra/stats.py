"""Distribution-free statistics that bench and analysis both use."""

from __future__ import annotations

import math
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


def block_log_ratios(mine: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """One log ratio per ABBA block of a pair's samples (bench.timing.paired_host_latency: two of each side
    per block, in order): the mean log of this side's two minus the partner's two."""
    if len(mine) != len(theirs) or len(mine) % 2:
        raise ValueError(f"paired samples come two per block on each side: got {len(mine)} and {len(theirs)}")
    return [
        (math.log(mine[i]) + math.log(mine[i + 1]) - math.log(theirs[i]) - math.log(theirs[i + 1])) / 2
        for i in range(0, len(mine), 2)
    ]
