"""An automatic base learning rate: a short learning-rate range test.

The probe trains a model for a few steps with the learning rate rising geometrically from
``lr_min`` to ``lr_max`` (Smith, "Cyclical Learning Rates for Training Neural Networks", WACV
2017; fastai's ``lr_find``), smooths the losses with a bias-corrected moving average, stops
once the smoothed loss exceeds ``diverge`` times its minimum (or is not finite), and suggests
the learning rate at the smoothed minimum divided by ``divisor`` (fastai's "minimum / 10"
rule). The model, the optimizer and the random number generators are restored afterwards, so
the probe leaves no trace but the steps it cost.

The maths are the pure functions :func:`range_lrs`, :func:`smooth` and :func:`suggest`;
:func:`lr_range_test` runs them on a model.

Example:
    >>> import torch
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(8, 2)
    >>> x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> loss = lambda: torch.nn.functional.cross_entropy(model(x), y)
    >>> before = model.weight.clone()
    >>> result = lr_range_test(model, optimizer, loss, steps=60)
    >>> 1e-4 < result.lr < 10.0, torch.equal(model.weight, before)
    (True, True)
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mlrsnet.checks import number, positive_int
from mlrsnet.gradients import compute_gradients

__all__ = ["ProbeResult", "lr_range_test", "range_lrs", "smooth", "suggest"]

logger = logging.getLogger(__name__)


def range_lrs(lr_min: float, lr_max: float, steps: int) -> list[float]:
    """``steps`` learning rates rising geometrically from ``lr_min`` to ``lr_max``.

    Example:
        >>> [round(x, 6) for x in range_lrs(1e-3, 1.0, 4)]
        [0.001, 0.01, 0.1, 1.0]
    """
    number("lr_min", lr_min, 0.0, low_open=True)
    number("lr_max", lr_max, lr_min, low_open=True)
    steps = positive_int("steps", steps)
    if steps == 1:
        return [float(lr_min)]
    ratio = math.log(lr_max / lr_min) / (steps - 1)
    return [float(lr_min * math.exp(ratio * i)) for i in range(steps)]


def smooth(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average of ``losses`` (non-finite values kept as such).

    Example:
        >>> [round(v, 6) for v in smooth([1.0, 1.0, 4.0], beta=0.5)]
        [1.0, 1.0, 2.714286]
    """
    number("beta", beta, 0.0, 1.0, high_open=True)
    out, average, seen = [], 0.0, 0
    for loss in losses:
        if not math.isfinite(loss):
            out.append(float(loss))
            continue
        seen += 1  # the bias correction counts the averaged (finite) values only
        average = beta * average + (1.0 - beta) * loss
        out.append(average / (1.0 - beta**seen))
    return out


def suggest(lrs: Sequence[float], smoothed: Sequence[float], divisor: float = 10.0) -> float:
    """The learning rate at the smallest finite smoothed loss, divided by ``divisor``.

    Raises:
        ValueError: If the lists differ in length or no smoothed loss is finite.

    Example:
        >>> suggest([0.01, 0.1, 1.0], [2.0, 1.0, 5.0])
        0.01
    """
    if len(lrs) != len(smoothed) or not lrs:
        raise ValueError("lrs and smoothed must be non-empty and of the same length")
    number("divisor", divisor, 0.0, low_open=True)
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    if not finite:
        raise ValueError("the range test saw no finite loss")
    best = min(finite, key=lambda i: smoothed[i])
    return float(lrs[best] / divisor)


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`lr_range_test` measured.

    Attributes:
        lr: The suggested base learning rate.
        lrs: The learning rates tried, one per step taken.
        losses: The training loss at each step taken (before that step's update).
        smoothed: :func:`smooth` of ``losses``.
        steps: Optimizer steps the probe took (its cost, in steps of training).
        stopped_early: Whether it stopped on divergence before the last learning rate.
    """

    lr: float
    lrs: list[float] = field(repr=False)
    losses: list[float] = field(repr=False)
    smoothed: list[float] = field(repr=False)
    steps: int = 0
    stopped_early: bool = False


def lr_range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], Tensor],
    *,
    steps: int = 100,
    lr_min: float = 1e-6,
    lr_max: float = 10.0,
    beta: float = 0.98,
    diverge: float = 4.0,
    divisor: float = 10.0,
    grad_clip: float | None = None,
) -> ProbeResult:
    """Run a learning-rate range test and restore the model and optimizer afterwards.

    Args:
        model: The model being trained (its parameters are restored after the probe).
        optimizer: Its optimizer, any ``torch.optim`` optimizer; every parameter group's
            ``lr`` is overwritten during the probe and restored after.
        loss_fn: Returns the training loss (with its graph) of the next batch.
        steps: Most probe steps (fewer when the loss diverges first).
        lr_min, lr_max: The range of learning rates swept geometrically.
        beta: Smoothing of the losses (:func:`smooth`).
        diverge: Stop once the smoothed loss exceeds this multiple of its minimum.
        divisor: The suggestion is the learning rate at the smoothed minimum over this.
        grad_clip: Clip the global gradient norm as training will (``None``: no clip).

    Returns:
        A :class:`ProbeResult`.

    Raises:
        ValueError: For invalid settings, or when no step had a finite loss.
    """
    lrs = range_lrs(lr_min, lr_max, steps)
    number("diverge", diverge, 1.0, low_open=True)
    number("beta", beta, 0.0, 1.0, high_open=True)
    number("divisor", divisor, 0.0, low_open=True)
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    group_lrs = [group["lr"] for group in optimizer.param_groups]
    tried: list[float] = []
    losses: list[float] = []
    stopped_early = False
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=_cuda_devices(model)):
            for lr in lrs:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = loss_fn()
                value = float(loss.detach())
                tried.append(lr)
                losses.append(value)
                if not math.isfinite(value):
                    stopped_early = lr != lrs[-1]
                    break
                compute_gradients(loss, optimizer, grad_clip=grad_clip)
                optimizer.step()
                smoothed_now = smooth(losses, beta)
                finite = [v for v in smoothed_now if math.isfinite(v)]
                if smoothed_now[-1] > diverge * min(finite):
                    stopped_early = lr != lrs[-1]
                    break
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        for group, lr in zip(optimizer.param_groups, group_lrs, strict=True):
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    smoothed = smooth(losses, beta)
    result = ProbeResult(
        lr=suggest(tried, smoothed, divisor),
        lrs=tried,
        losses=losses,
        smoothed=smoothed,
        steps=len(tried),
        stopped_early=stopped_early,
    )
    logger.info(
        "lr range test: %d steps from %.3g to %.3g, suggested lr %.4g",
        result.steps,
        tried[0],
        tried[-1],
        result.lr,
    )
    return result


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
