"""Interval statistics for pass rates and percentiles for latencies.

The Wilson score interval is a few lines of closed-form math (Wilson 1927; the interval
promptfoo-like tools lack and that stays inside [0, 1] and honest for n = 1): no need for scipy,
a 30 MB dependency, for one formula. z = 1.96 is the 95 % two-sided normal quantile.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

Z95 = 1.959963984540054


def wilson(passed: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The 95 % Wilson score interval of a pass rate; (0, 1) when there is nothing to count."""
    if total <= 0:
        return (0.0, 1.0)
    p = passed / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether interval `a` lies wholly above `b`."""
    return a[0] > b[1]


def cluster_bootstrap(
    groups: Sequence[Sequence[float]],
    statistic: Callable[[list[float]], float | None],
    resamples: int = 400,
    seed: int = 25,
) -> tuple[float, float] | None:
    """A 95 % interval of `statistic` over resampled groups (conversations, not calls: the calls
    of one conversation are not independent). Seeded, so the same data gives the same interval."""
    if len(groups) < 2:
        return None
    rng = random.Random(seed)  # noqa: S311  (resampling, not secrets: seeded on purpose)
    estimates = []
    for _ in range(resamples):
        pooled = [value for _ in groups for value in groups[rng.randrange(len(groups))]]
        estimate = statistic(pooled)
        if estimate is not None:
            estimates.append(estimate)
    low, high = percentile(estimates, 2.5), percentile(estimates, 97.5)
    return None if low is None or high is None else (low, high)
