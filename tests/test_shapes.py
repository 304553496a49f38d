"""The parametric learning-rate shapes of :mod:`mlrsnet.shapes`."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlrsnet.shapes import cosine_decay, linear_decay, warmup_factor, warmup_stable_decay

torch.set_num_threads(1)

SHAPES = (cosine_decay, linear_decay, warmup_stable_decay)


def trace(shape, total_steps, **kw):
    return [shape(t, total_steps, **kw) for t in range(total_steps)]


@pytest.mark.parametrize("total_steps", [1, 2, 3, 7, 50, 391])
def test_cosine_without_warmup_is_torch_cosine_annealing(total_steps):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    torch_lrs = []
    for _ in range(total_steps):
        torch_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # torch steps its cosine by a recursive formula, so allow float rounding (1e-12 absolute).
    assert trace(cosine_decay, total_steps) == pytest.approx(torch_lrs, rel=0, abs=1e-12)


def test_known_values():
    half = 0.5 * math.cos(math.pi / 4)
    assert trace(cosine_decay, 4) == pytest.approx([1.0, 0.5 + half, 0.5, 0.5 - half])
    assert trace(linear_decay, 4) == [1.0, 0.75, 0.5, 0.25]
    assert trace(linear_decay, 5, warmup=0.4) == pytest.approx([0.5, 1.0, 1.0, 2 / 3, 1 / 3])
    # cosine after 2 warmup steps of 6: progress (t - 2) / 4
    assert trace(cosine_decay, 6, warmup=1 / 3) == pytest.approx(
        [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    )


@pytest.mark.parametrize("warmup_steps", [1, 2, 5, 8])
def test_warmup_factor_ramps_linearly(warmup_steps):
    values = [warmup_factor(t, warmup_steps) for t in range(warmup_steps + 3)]
    assert values == [(t + 1) / warmup_steps for t in range(warmup_steps)] + [1.0] * 3
    assert warmup_factor(0, 0) == 1.0  # no warmup at all


@pytest.mark.parametrize("shape", SHAPES)
def test_warmup_part_of_every_shape(shape):
    total, warmup = 40, 0.25  # W = 10 steps
    values = trace(shape, total, warmup=warmup)
    assert values[:10] == [(t + 1) / 10 for t in range(10)]
    assert values[0] > 0.0  # the first step never has a zero learning rate


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("total_steps", [1, 5, 40])
def test_step_beyond_the_end_keeps_the_last_value(shape, total_steps):
    last = shape(total_steps - 1, total_steps, warmup=0.2)
    for step in (total_steps, total_steps + 1, 10 * total_steps + 7):
        assert shape(step, total_steps, warmup=0.2) == last
    # and a negative step is the first one
    assert shape(-3, total_steps, warmup=0.2) == shape(0, total_steps, warmup=0.2)


def test_wsd_stable_part_and_one_minus_sqrt_cooldown():
    total, warmup, cooldown = 100, 0.1, 0.2
    values = trace(warmup_stable_decay, total, warmup=warmup, cooldown=cooldown)
    assert values[:10] == [(t + 1) / 10 for t in range(10)]
    assert values[10:80] == [1.0] * 70  # exactly the peak between warmup and cooldown
    cooldown_steps = 20  # round(0.2 * 100)
    # the cooldown covers the last 20 steps: 1 - sqrt(k / 20) for k = 0 .. 19
    for k in (0, 1, 5, 10, 19):
        assert values[80 + k] == pytest.approx(1.0 - math.sqrt(k / cooldown_steps), abs=1e-15)
    assert values[-1] == pytest.approx(1.0 - math.sqrt(19 / 20)) and values[-1] > 0.0
    # strictly decreasing within the cooldown after its first (peak) step
    assert all(a > b for a, b in zip(values[80:], values[81:], strict=False))


@pytest.mark.parametrize("total,cooldown", [(10, 0.2), (10, 0.25), (7, 0.5), (33, 0.1), (5, 1.0)])
def test_wsd_cooldown_length_is_rounded_fraction_of_the_run(total, cooldown):
    values = trace(warmup_stable_decay, total, cooldown=cooldown)
    cooldown_steps = round(cooldown * total)
    start = total - cooldown_steps
    assert values[:start] == [1.0] * start
    # s runs from 0 at the first cooldown step, so that step is still at the peak and the
    # remaining C - 1 steps are below it
    assert values[start:] == pytest.approx(
        [1.0 - math.sqrt(k / cooldown_steps) for k in range(cooldown_steps)], abs=1e-15
    )
    assert sum(v < 1.0 for v in values) == cooldown_steps - 1
    assert values[-1] > 0.0


def test_wsd_without_cooldown_is_constant_after_warmup():
    assert trace(warmup_stable_decay, 10, warmup=0.2, cooldown=0.0) == [0.5] + [1.0] * 9


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("warmup", [1.0, 1.5, -0.1, float("nan"), "0.1", None])
def test_invalid_warmup_raises(shape, warmup):
    with pytest.raises(ValueError, match="warmup"):
        shape(0, 10, warmup=warmup)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("total_steps", [0, -5, 2.5, True, None])
def test_invalid_total_steps_raises(shape, total_steps):
    with pytest.raises(ValueError, match="total_steps"):
        shape(0, total_steps)


@pytest.mark.parametrize("cooldown", [-0.1, 1.01, float("nan"), "0.2"])
def test_invalid_cooldown_raises(cooldown):
    with pytest.raises(ValueError, match="cooldown"):
        warmup_stable_decay(0, 10, cooldown=cooldown)


@pytest.mark.parametrize("warmup,cooldown", [(0.5, 0.6), (0.9, 0.2), (0.1, 1.0)])
def test_wsd_warmup_plus_cooldown_above_one_raises(warmup, cooldown):
    with pytest.raises(ValueError, match="exceed"):
        warmup_stable_decay(0, 100, warmup=warmup, cooldown=cooldown)
    # exactly the whole run is fine: warm up, then cool down with no stable part
    warmup_stable_decay(0, 100, warmup=0.5, cooldown=0.5)


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(1, 400),
    warmup=st.floats(0.0, 0.99, allow_nan=False),
    cooldown=st.floats(0.0, 1.0, allow_nan=False),
)
def test_shape_properties(total, warmup, cooldown):
    warmup_steps = round(warmup * total)
    assume(warmup + cooldown <= 1.0)  # the fractions decide; the step counts are clamped
    for shape, kw in (
        (cosine_decay, {}),
        (linear_decay, {}),
        (warmup_stable_decay, {"cooldown": cooldown}),
    ):
        values = trace(shape, total, warmup=warmup, **kw)
        assert all(0.0 <= v <= 1.0 for v in values), shape.__name__
        assert values[0] > 0.0 and values[-1] > 0.0, shape.__name__
        # the warmup ramp (step + 1) / W, then monotone non-increasing from its peak
        assert values[:warmup_steps] == [(t + 1) / warmup_steps for t in range(warmup_steps)]
        after = values[warmup_steps:]  # empty when the warmup covers the whole run
        assert after[:1] in ([], [1.0]), shape.__name__
        assert all(a >= b for a, b in zip(after, after[1:], strict=False)), shape.__name__
        assert shape(total + 3, total, warmup=warmup, **kw) == values[-1]
    wsd = trace(warmup_stable_decay, total, warmup=warmup, cooldown=cooldown)
    cooldown_steps = round(cooldown * total)
    assert wsd[warmup_steps : total - cooldown_steps] == [1.0] * (
        total - cooldown_steps - warmup_steps
    )


def test_wsd_power_shapes_the_cooldown():
    total = 10  # cooldown of 2 steps: the second is at s = 1/2
    assert warmup_stable_decay(9, total, cooldown=0.2, power=1.0) == 0.5
    assert warmup_stable_decay(9, total, cooldown=0.2, power=2.0) == 0.75
    assert warmup_stable_decay(9, total, cooldown=0.2) == 1.0 - 0.5**0.5
    with pytest.raises(ValueError, match="power"):
        warmup_stable_decay(0, total, power=0.0)
