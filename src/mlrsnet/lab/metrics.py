"""The test metrics of the tasks: how they are reported and which direction is better.

The one table every part of the lab (runs, reports, benchmarks) reads.

Example:
    >>> higher_is_better("accuracy"), higher_is_better("perplexity")
    (True, False)
    >>> is_better("perplexity", 9.5, 10.0)
    True
    >>> reported("accuracy", 0.9875)
    98.75
"""

from __future__ import annotations

__all__ = ["HIGHER_IS_BETTER", "higher_is_better", "is_better", "reported"]

#: Metric name -> whether a larger value is better.
HIGHER_IS_BETTER: dict[str, bool] = {"accuracy": True, "perplexity": False}
#: Metric name -> the factor from a task's evaluation to the reported value (accuracy in %).
_REPORTED_SCALE: dict[str, float] = {"accuracy": 100.0, "perplexity": 1.0}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better.

    Raises:
        ValueError: For an unknown metric, naming the known ones.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(HIGHER_IS_BETTER))}")
    return HIGHER_IS_BETTER[metric]


def is_better(metric: str, value: float, than: float | None) -> bool:
    """Whether ``value`` beats ``than`` (``None``: nothing yet, so any value does)."""
    if than is None:
        return True
    return value > than if higher_is_better(metric) else value < than


def reported(metric: str, value: float) -> float:
    """A task's evaluation of ``metric`` as runs report it (accuracy in percent)."""
    higher_is_better(metric)
    scale = _REPORTED_SCALE[metric]
    return value * scale if scale != 1.0 else value
