"""Statistics of the benchmark: paired bootstrap intervals, win/tie/loss, mean ranks.

Every method of a target runs on the same seeds, and a seed fixes the initialisation, the data
order and the splits, so two methods are compared *paired*: the difference of their metrics is
taken seed by seed, and its mean's 95 % interval is the percentile bootstrap over seeds.

Example:
    >>> low, high = paired_interval([90.0, 91.0, 92.0, 90.5, 91.5], [89.0, 90.0, 91.2, 89.1, 90.3])
    >>> round(low, 2) > 0, win_tie_loss(low, high, higher_is_better=True)
    (True, 'win')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["RESAMPLES", "mean_ranks", "paired_interval", "ranks", "win_tie_loss"]

#: Bootstrap resamples of every interval.
RESAMPLES = 10_000


def paired_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``mean(a - b)`` over paired samples.

    Args:
        a, b: One value per seed each, in the same seed order.
        level: Coverage of the interval.
        resamples: Bootstrap resamples.
        seed: Seed of the resampling (the interval is reproducible).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: If the samples differ in length or are empty.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or diff.size == 0:
        raise ValueError(
            f"paired samples must be non-empty and of equal length ({len(a)}, {len(b)})"
        )
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def win_tie_loss(low: float, high: float, *, higher_is_better: bool) -> str:
    """``"win"`` if the interval of (method − reference) lies on the better side of 0,
    ``"loss"`` on the worse side, ``"tie"`` if it contains 0.

    Example:
        >>> win_tie_loss(-3.0, -1.0, higher_is_better=False)
        'win'
    """
    if low <= 0.0 <= high:
        return "tie"
    better = low > 0.0 if higher_is_better else high < 0.0
    return "win" if better else "loss"


def ranks(means: Mapping[str, float], *, higher_is_better: bool) -> dict[str, float]:
    """Rank of each method by its mean (1 = best; ties share the average rank).

    Example:
        >>> ranks({"a": 1.0, "b": 3.0, "c": 3.0}, higher_is_better=True)
        {'a': 3.0, 'b': 1.5, 'c': 1.5}
    """
    names = list(means)
    values = np.array([means[n] for n in names], dtype=np.float64)
    if higher_is_better:
        values = -values
    order = values.argsort(kind="stable")
    result = np.empty(len(names))
    result[order] = np.arange(1, len(names) + 1)
    for value in np.unique(values):  # average the ranks of ties
        tied = values == value
        result[tied] = result[tied].mean()
    return {n: float(r) for n, r in zip(names, result, strict=True)}


def mean_ranks(
    table: Mapping[str, Mapping[str, Sequence[float]]],
    higher_is_better: Mapping[str, bool],
    *,
    level: float = 0.95,
    resamples: int = 2_000,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """Mean rank of each method over targets, with a bootstrap interval over seeds.

    Args:
        table: ``{target: {method: per-seed values}}``; every method must appear in every
            target (rank the methods common to all targets).
        higher_is_better: ``{target: whether a larger metric is better}``.
        level: Coverage of the interval.
        resamples: Bootstrap resamples: the seeds of every target are resampled (paired
            across methods), the ranks recomputed and averaged over targets.
        seed: Seed of the resampling.

    Returns:
        ``{method: (mean rank, low, high)}``.

    Example:
        >>> table = {"t1": {"a": [1.0, 1.1], "b": [0.0, 0.1]}, "t2": {"a": [5.0, 5.0], "b": [6.0, 6.1]}}
        >>> {m: r[0] for m, r in mean_ranks(table, {"t1": True, "t2": True}).items()}
        {'a': 1.5, 'b': 1.5}
    """
    targets = list(table)
    methods = sorted(set.intersection(*(set(table[t]) for t in targets))) if targets else []
    if not methods:
        return {}
    rng = np.random.default_rng(seed)
    point = np.zeros(len(methods))
    draws = np.zeros((resamples, len(methods)))
    for target in targets:
        values = np.array([table[target][m] for m in methods], dtype=np.float64)  # [M, S]
        sign = -1.0 if higher_is_better[target] else 1.0
        point += _rank_rows(sign * values.mean(axis=1)[None, :])[0]
        pick = rng.integers(0, values.shape[1], size=(resamples, values.shape[1]))
        sampled = values[:, pick].mean(axis=2).T  # [R, M]
        draws += _rank_rows(sign * sampled)
    point /= len(targets)
    draws /= len(targets)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, tail, axis=0), np.quantile(draws, 1.0 - tail, axis=0)
    return {m: (float(point[i]), float(low[i]), float(high[i])) for i, m in enumerate(methods)}


def _rank_rows(values: np.ndarray) -> np.ndarray:
    """Average ranks (1 = smallest) along the last axis of a 2-D array."""
    result = np.empty_like(values)
    for i, row in enumerate(values):
        order = row.argsort(kind="stable")
        r = np.empty(row.size)
        r[order] = np.arange(1, row.size + 1)
        for value in np.unique(row):
            tied = row == value
            if tied.sum() > 1:
                r[tied] = r[tied].mean()
        result[i] = r
    return result
