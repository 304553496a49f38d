"""Strict JSON: what the project writes is JSON that every parser reads.

Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which strict parsers
(JavaScript's ``JSON.parse``, ``jq``, most non-Python readers) reject. Every JSON file the
project writes goes through :func:`dumps`, which writes a non-finite number as ``null``
(a diverged loss, a metric never measured) and refuses anything else that is not JSON.

Example:
    >>> dumps({"loss": float("nan"), "steps": [1, float("inf")], "lr": 0.1})
    '{"loss": null, "steps": [1, null], "lr": 0.1}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps", "finite_or_none"]


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists, tuples) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes non-finite numbers as ``null`` and never writes ``NaN``.

    Args:
        value: A JSON-serialisable value.
        **kwargs: Passed on to :func:`json.dumps` (``indent``, ``sort_keys``, ...).
    """
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)
