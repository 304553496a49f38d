"""Argument checks: one place for "is this a positive integer, a finite number in range, a bool".

Every public function of the library and the lab checks its arguments through these, so a
bad value always ends in the same kind of one-line ``ValueError`` that names the argument,
says what was expected and shows what was given.

Example:
    >>> positive_int("epochs", 3)
    3
    >>> number("momentum", 0.9, low=0.0, high=1.0, high_open=True)
    0.9
    >>> number("lr", float("inf"), low=0.0)
    Traceback (most recent call last):
        ...
    ValueError: lr must be a finite number, got inf
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_int", "is_real", "boolean", "non_negative_int", "number", "positive_int", "require"]


def is_real(value: Any) -> bool:
    """A finite int or float (``bool`` is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """An integer (``bool`` is not an integer here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require(ok: bool, name: str, value: Any, expected: str) -> None:
    """Raise ``ValueError("NAME must be EXPECTED, got VALUE")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an integer ``>= 1``; otherwise a ``ValueError`` naming ``name``."""
    require(is_int(value) and value >= 1, name, value, "a positive integer")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` if it is an integer ``>= 0``; otherwise a ``ValueError`` naming ``name``."""
    require(is_int(value) and value >= 0, name, value, "a non-negative integer")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is a ``bool``; otherwise a ``ValueError`` naming ``name``."""
    require(isinstance(value, bool), name, value, "a bool")
    return value


def number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float if it is finite and within the interval; else a ``ValueError``.

    Args:
        name: The argument's name, for the message.
        value: What was given.
        low, high: The interval's ends (infinite ends are not checked).
        low_open, high_open: Exclude that end.
    """
    require(is_real(value), name, value, "a finite number")
    inside = (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high
    )
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)
