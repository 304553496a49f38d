"""Parametric learning-rate shapes as pure functions of training progress.

Each function maps the index ``step`` of an optimizer step (0-based) within a run of
``total_steps`` steps to a multiplier of the peak learning rate in ``[0, 1]``, so a torch
``LambdaLR`` (or a learned schedule that starts from a known shape) can use it directly::

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_stable_decay(step, total_steps, warmup=0.05)
    )

Warmup is linear from ``1/W`` to 1 over the first ``W = round(warmup * total_steps)`` steps
(the first step never has a zero learning rate). After ``total_steps`` every shape keeps its
last value.

Example:
    >>> [round(linear_decay(t, 4), 2) for t in range(4)]
    [1.0, 0.75, 0.5, 0.25]
    >>> [round(warmup_stable_decay(t, 10, cooldown=0.2), 3) for t in range(10)]
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.293]
"""

from __future__ import annotations

import math

__all__ = ["cosine_decay", "linear_decay", "warmup_factor", "warmup_stable_decay"]


def _check(step: int, total_steps: int, warmup: float) -> tuple[int, int]:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    if not (isinstance(warmup, int | float) and 0.0 <= warmup < 1.0):
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup!r}")
    return min(max(int(step), 0), total_steps - 1), round(warmup * total_steps)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, else 1.

    Example:
        >>> [warmup_factor(t, 4) for t in range(5)]
        [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


def cosine_decay(step: int, total_steps: int, *, warmup: float = 0.0) -> float:
    """Linear warmup, then ``½(1 + cos(π s))`` over the remaining steps (``s`` from 0 to 1).

    With ``warmup=0`` this is torch's ``CosineAnnealingLR(T_max=total_steps)`` to zero.

    Example:
        >>> [round(cosine_decay(t, 4), 3) for t in range(4)]
        [1.0, 0.854, 0.5, 0.146]
    """
    step, warmup_steps = _check(step, total_steps, warmup)
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_decay(step: int, total_steps: int, *, warmup: float = 0.0) -> float:
    """Linear warmup, then a straight line from 1 towards 0 at ``total_steps``.

    Example:
        >>> [round(linear_decay(t, 5, warmup=0.4), 3) for t in range(5)]
        [0.5, 1.0, 1.0, 0.667, 0.333]
    """
    step, warmup_steps = _check(step, total_steps, warmup)
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    return 1.0 - (step - warmup_steps) / (total_steps - warmup_steps)


def warmup_stable_decay(
    step: int, total_steps: int, *, warmup: float = 0.0, cooldown: float = 0.2, power: float = 0.5
) -> float:
    """Warmup-stable-decay: warm up, hold the peak, then a ``1 - √s`` cooldown to 0.

    The cooldown covers the last ``round(cooldown * total_steps)`` steps (Hägele et al.,
    "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS
    2024, whose 1−sqrt cooldown over 20 % of training matches cosine); ``s`` runs from 0 at
    its first step to ``(C - 1) / C`` at the last, so no step has a zero learning rate.

    Args:
        step: 0-based step index.
        total_steps: Steps in the run.
        warmup: Fraction of the run spent warming up, in ``[0, 1)``.
        cooldown: Fraction of the run spent cooling down, in ``[0, 1]``.
        power: The cooldown is ``1 - s**power``: 0.5 (the default) is the 1 − √ cooldown,
            1 a linear one.

    Returns:
        The multiplier of the peak learning rate.

    Raises:
        ValueError: For fractions outside their range or warmup + cooldown above 1.

    Example:
        >>> [round(warmup_stable_decay(t, 5, warmup=0.2, cooldown=0.4), 3) for t in range(5)]
        [1.0, 1.0, 1.0, 1.0, 0.293]
    """
    step, warmup_steps = _check(step, total_steps, warmup)
    if not (isinstance(cooldown, int | float) and 0.0 <= cooldown <= 1.0):
        raise ValueError(f"cooldown must be a fraction in [0, 1], got {cooldown!r}")
    if not (isinstance(power, int | float) and 0.0 < power < math.inf):
        raise ValueError(f"power must be a positive number, got {power!r}")
    if warmup + cooldown > 1.0 + 1e-12:
        raise ValueError(f"warmup {warmup} + cooldown {cooldown} exceed the whole run")
    cooldown_steps = min(round(cooldown * total_steps), total_steps - warmup_steps)
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    into_cooldown = step - (total_steps - cooldown_steps)
    if into_cooldown < 0:
        return 1.0
    if power == 0.5:
        return 1.0 - math.sqrt(into_cooldown / cooldown_steps)
    return 1.0 - (into_cooldown / cooldown_steps) ** power
