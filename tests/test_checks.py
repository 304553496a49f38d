"""mlrsnet.checks: the one place for argument checks; every message names the argument."""

import math

import numpy as np
import pytest

from mlrsnet import checks


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_integers_from_one(value):
    assert checks.positive_int("epochs", value) == int(value)


@pytest.mark.parametrize("value", [0, -1, 1.0, "2", True, None])
def test_positive_int_refuses_the_rest_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^epochs must be a positive integer, got "):
        checks.positive_int("epochs", value)


def test_non_negative_int_takes_zero_and_refuses_negatives():
    assert checks.non_negative_int("seed", 0) == 0
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        checks.non_negative_int("seed", -1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.1", None, False])
def test_number_refuses_non_finite_and_non_numbers(value):
    with pytest.raises(ValueError, match=r"^lr must be a finite number, got "):
        checks.number("lr", value, 0.0)


def test_number_checks_open_and_closed_ends():
    assert checks.number("momentum", 0.0, 0.0, 1.0, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
        checks.number("momentum", 1.0, 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match=r"lr must be in \(0, inf\], got 0.0"):
        checks.number("lr", 0.0, 0.0, low_open=True)
    assert checks.number("x", 5, -1.0) == 5.0 and isinstance(checks.number("x", 5), float)


def test_boolean_and_require():
    assert checks.boolean("nesterov", False) is False
    with pytest.raises(ValueError, match="nesterov must be a bool, got 1"):
        checks.boolean("nesterov", 1)
    checks.require(True, "x", 1, "anything")
    with pytest.raises(ValueError, match="gamma must be in \\(0, 1\\], got 2"):
        checks.require(False, "gamma", 2, "in (0, 1]")
