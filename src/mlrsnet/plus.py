"""MLR-SNet+: a small learned schedule that reads *transferable* inputs and scales a base rate.

Beside the faithful MLR-SNet (:mod:`mlrsnet.scheduler`, unchanged), MLR-SNet+ is a stateless
MLP whose inputs mean the same thing on every task:

- **progress** ``p = t / T`` through training, embedded as ``tanh(10 (p - s))`` for the nine
  centres :data:`PROGRESS_CENTRES` (VeLO's embedding; Metz et al., 2022);
- **loss shape**, free of the loss's scale and offset: four moving averages of the training
  loss with half-lives of 1, 3, 10 and 30 % of the run, fed as the clipped ratios
  ``(ema_i - min) / (ema_{i+1} - min) - 1`` (``min`` the smallest loss seen; VeLO's loss
  features), and ``log(ema_0 / L_0)`` clipped to ``[-5, 1]`` and divided by 5 (scale-free);
- optionally, the **validation loss** a user computes on a held-out split (a network built
  with ``validation=True`` reads it, :meth:`MLRSNetPlusLR.observe_validation`): whether one
  was seen, how far it rose above its best, its gap over the training loss (memorisation of
  noisy labels) and how long ago its best was (:func:`validation_inputs`), all scale-free.

It outputs a bounded multiplier ``m = 2 σ(o)`` in ``(0, 2)`` of a base rate, times a learned
constant ``s_f`` of the optimizer's family ``f`` (:data:`OPTIMIZER_FAMILIES`: plain or momentum
SGD, or an adaptive method such as AdamW): the learning rate of a step is
``base_lr · s_f · m``, where ``base_lr`` is the optimizer's rate (as every torch scheduler reads
it: the peak) or the library's probe (:mod:`mlrsnet.probe`). ``s_f`` is how far the base rate
the network was meta-trained on (its manifest's ``config.base``: ``"probe"``, or ``"user"``
for the rate a user types) is from a good peak for that family, learned with the rest (it
starts at 1); nothing else depends on the loss's units or the optimizer, so one network serves
SGD and AdamW, images and text.

A *residual* network (:meth:`PlusNet.residual`) instead corrects a fixed warmup-stable-decay
shape (its :class:`Prior`, e.g. a family fitted by the same meta-training): the multiplier is
``prior(t, T) · limit^tanh(o)``, a correction bounded in ``[1/limit, limit]`` that is exactly 1
(the prior itself) while the output layer is zero, and its scales ``s_f`` are the prior's
peaks, held fixed. The maths are pure functions with explicit state (:func:`init_state`,
:func:`observe`, :func:`features`, :func:`multiplier`); :class:`PlusNet` holds the weights and
:class:`MLRSNetPlusLR` is the ``LRScheduler``.

Example:
    >>> import torch
    >>> net = PlusNet.from_shape(seed=0)   # starts as warmup-free hold + 20 % 1-sqrt cooldown
    >>> model = torch.nn.Linear(4, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> scheduler = MLRSNetPlusLR(optimizer, net, total_steps=100)
    >>> for step in range(100):
    ...     loss = model(torch.randn(8, 4)).pow(2).mean()
    ...     optimizer.zero_grad(); loss.backward()
    ...     scheduler.step(loss)            # this step's lr, from this step's loss
    ...     optimizer.step()
    >>> 0.0 < scheduler.get_last_lr()[0] < 0.05
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from mlrsnet import shapes
from mlrsnet.atomic import atomic_write
from mlrsnet.checks import number, positive_int
from mlrsnet.hub import shipped_dir, shipped_names
from mlrsnet.lossdriven import LossDrivenLR, check_loss, mean_over_ranks

__all__ = [
    "LOG_SCALE_LIMIT", "LOSS_HALF_LIVES", "NUM_FEATURES", "NUM_VALIDATION_FEATURES",
    "OPTIMIZER_FAMILIES", "PROGRESS_CENTRES", "LossState", "MLRSNetPlusLR", "PlusNet", "Prior",
    "ValidationState", "features", "init_state", "load", "multiplier", "observe",
    "observe_validation", "optimizer_family", "pretrained", "pretrained_names", "resolve", "save",
    "validation_inputs",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: Centres ``s`` of the progress embedding ``tanh(10 (t/T - s))``.
PROGRESS_CENTRES: tuple[float, ...] = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
#: Half-lives of the loss averages, as fractions of the run (at least one step).
LOSS_HALF_LIVES: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
#: Inputs of the network: progress, loss-average ratios, log loss ratio.
NUM_FEATURES = len(PROGRESS_CENTRES) + len(LOSS_HALF_LIVES) - 1 + 1
_NUM_PROGRESS = len(PROGRESS_CENTRES)
_CENTRES = np.asarray(PROGRESS_CENTRES)
_NO_LOSS_INPUTS = [0.0] * (NUM_FEATURES - len(PROGRESS_CENTRES))
#: Inputs a network built with ``validation=True`` reads besides :data:`NUM_FEATURES`
#: (:func:`validation_inputs`).
NUM_VALIDATION_FEATURES = 4
_NO_VALIDATION_INPUTS = [0.0] * NUM_VALIDATION_FEATURES
#: The optimizer families with a scale of their own: SGD (with or without momentum) and the
#: adaptive methods (Adam, AdamW, RMSprop, ...), whose good rates sit decades apart.
OPTIMIZER_FAMILIES: tuple[str, ...] = ("sgd", "adaptive")
#: The family scales are ``exp(log_scale)`` with ``log_scale`` clipped to ``±`` this (1000x).
LOG_SCALE_LIMIT = math.log(1000.0)
_ADAPTIVE = (
    torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam,
    torch.optim.Adamax, torch.optim.Adagrad, torch.optim.Adadelta, torch.optim.RMSprop,
    torch.optim.SparseAdam,
)  # fmt: skip


def optimizer_family(optimizer: Optimizer) -> str:
    """``"adaptive"`` for torch's adaptive optimizers and any optimizer with ``betas`` (the
    Adam family's hyperparameter), else ``"sgd"``.

    Example:
        >>> params = [torch.zeros(1, requires_grad=True)]
        >>> optimizer_family(torch.optim.AdamW(params)), optimizer_family(torch.optim.SGD(params))
        ('adaptive', 'sgd')
    """
    inner = getattr(optimizer, "optimizer", None)  # wrappers (Accelerate's) hold the real one
    if isinstance(inner, Optimizer):
        optimizer = inner
    defaults = getattr(optimizer, "defaults", {}) or {}
    return "adaptive" if isinstance(optimizer, _ADAPTIVE) or "betas" in defaults else "sgd"


# ------------------------------------------------------------------------------ the maths


@dataclass(frozen=True)
class LossState:
    """What the loss features remember: explicit, immutable, numbers only.

    Attributes:
        count: Finite losses read.
        initial: The first finite loss (``nan`` before one).
        minimum: The smallest finite loss (``inf`` before one).
        averages: The (not yet bias-corrected) moving averages, one per half-life.
    """

    count: int = 0
    initial: float = math.nan
    minimum: float = math.inf
    averages: tuple[float, ...] = (0.0,) * len(LOSS_HALF_LIVES)


def init_state() -> LossState:
    """The state before any loss."""
    return LossState()


def _decays(total_steps: int) -> np.ndarray:
    half_lives = np.maximum(1.0, np.asarray(LOSS_HALF_LIVES) * total_steps)
    return 0.5 ** (1.0 / half_lives)


def observe(state: LossState, loss: float, total_steps: int) -> LossState:
    """The state after reading ``loss`` (a non-finite loss, or one beyond :data:`MAX_LOSS`,
    leaves it unchanged).

    Example:
        >>> s = observe(observe(init_state(), 2.0, 100), 1.0, 100)
        >>> s.count, s.initial, s.minimum
        (2, 2.0, 1.0)
    """
    if not math.isfinite(loss) or abs(loss) > MAX_LOSS:
        return state
    decays = _decays(total_steps)
    averages = tuple(
        float(d * a + (1.0 - d) * loss) for d, a in zip(decays, state.averages, strict=True)
    )
    return LossState(
        count=state.count + 1,
        initial=loss if state.count == 0 else state.initial,
        minimum=min(state.minimum, loss),
        averages=averages,
    )


#: A loss beyond this magnitude is treated as non-finite (skipped): every float64
#: intermediate of the features stays finite without a check per element.
MAX_LOSS = 1e200


def _loss_inputs(corrected: Sequence[float], minimum: float, initial: float) -> list[float]:
    """The four loss features from bias-corrected averages (shared by both paths).

    The ratio's floor is relative to the loss's own size (1e-6 of it), so a flat loss, whose
    excess over the minimum is rounding noise, reads -1 at any scale.
    """
    floor = 1e-6 * (abs(corrected[-1]) + abs(minimum)) + 1e-300
    out = []
    below = corrected[0] - minimum
    for average in corrected[1:]:  # a plain loop: this runs at every scheduler step
        above = average - minimum
        ratio = below / (above if above > floor else floor) - 1.0
        out.append(-1.0 if ratio < -1.0 else (1.0 if ratio > 1.0 else ratio))
        below = above
    last = 0.0
    if initial > 0.0 and corrected[0] > 0.0:
        ratio = corrected[0] / initial
        last = max(math.log(ratio), -5.0) if ratio > 0.0 else -5.0
        last = min(last, 1.0) / 5.0
    out.append(last)
    return out


@dataclass(frozen=True)
class ValidationState:
    """What the validation inputs remember: the held-out losses a user reported.

    Attributes:
        count: Finite validation losses read.
        minimum: The smallest (``inf`` before one).
        last: The latest (``nan`` before one).
        best_step: The training step at which the smallest was read (-1 before one).
    """

    count: int = 0
    minimum: float = math.inf
    last: float = math.nan
    best_step: int = -1


def observe_validation(state: ValidationState, loss: float, step: int) -> ValidationState:
    """The state after reading the validation loss ``loss`` at training step ``step`` (a
    non-finite loss, or one beyond :data:`MAX_LOSS`, leaves it unchanged).

    Example:
        >>> s = observe_validation(observe_validation(ValidationState(), 1.0, 10), 1.2, 20)
        >>> s.minimum, s.last, s.best_step
        (1.0, 1.2, 10)
    """
    if not math.isfinite(loss) or abs(loss) > MAX_LOSS:
        return state
    better = loss < state.minimum
    return ValidationState(count=state.count + 1, minimum=loss if better else state.minimum,
                           last=loss, best_step=step if better else state.best_step)  # fmt: skip


def validation_inputs(
    minimum: float, last: float, best_step: int, train_loss: float, step: int, total_steps: int
) -> list[float]:
    """The four validation inputs, after at least one validation loss (shared by both paths).

    - ``1``: a validation loss was seen (all four are 0 before one, and for a network whose
      user never reports one);
    - ``clip(log(last / minimum), 0, 1)``: how far the validation loss rose above its best;
    - ``clip(log(last / train_loss), -1, 3) / 3``: the held-out loss over the training loss
      (the bias-corrected fastest average): it grows as a model memorises noisy labels;
    - ``min(4 (step - best_step) / total_steps, 1)``: how long ago the best was, saturating
      at a quarter of the run.

    A ratio of non-positive losses (which cross-entropy never gives) reads 0.

    Example:
        >>> [round(v, 3) for v in validation_inputs(1.0, 1.5, 40, 0.5, 90, 100)]
        [1.0, 0.405, 0.366, 1.0]
    """
    rise = gap = 0.0
    if minimum > 0.0 and last > 0.0:
        rise = min(max(math.log(last / minimum), 0.0), 1.0)
        if train_loss > 0.0:
            gap = min(max(math.log(last / train_loss), -1.0), 3.0) / 3.0
    since = min(4.0 * max(step - best_step, 0) / total_steps, 1.0)
    return [1.0, rise, gap, since]


def features(
    state: LossState, step: int, total_steps: int, validation: ValidationState | None = None
) -> np.ndarray:
    """The network's inputs at step ``step`` (0-based) of ``total_steps``, after ``state``
    (and, for a network that reads one, the validation losses in ``validation``).

    Before any finite loss the loss features are 0 (no information); so are the validation
    inputs before any validation loss.

    Example:
        >>> x = features(init_state(), 0, 100)
        >>> x.shape, float(x[-4:].sum())
        ((13,), 0.0)
        >>> features(init_state(), 0, 100, ValidationState()).shape
        (17,)
    """
    progress = step / total_steps
    out = np.zeros(NUM_FEATURES + (0 if validation is None else NUM_VALIDATION_FEATURES))
    out[:_NUM_PROGRESS] = np.tanh(10.0 * (progress - _CENTRES))
    if state.count:
        decays = [float(d) for d in _decays(total_steps)]
        corrected = [a / (1.0 - d**state.count)
                     for a, d in zip(state.averages, decays, strict=True)]  # fmt: skip
        out[_NUM_PROGRESS:NUM_FEATURES] = _loss_inputs(corrected, state.minimum, state.initial)
        if validation is not None and validation.count:
            out[NUM_FEATURES:] = validation_inputs(validation.minimum, validation.last,
                                                   validation.best_step, corrected[0], step,
                                                   total_steps)  # fmt: skip
    return out


def multiplier(
    params: Sequence[np.ndarray], x: np.ndarray, prior: float | None = None, limit: float = 2.0
) -> float:
    """The factor of the base rate from the network's output ``o = w2 · tanh(W1 x + b1) + b2``.

    A plain network gives ``2 σ(o)``, in ``[0, 2]`` (float64 reaches the ends only for
    ``|o| > 37``); a residual one gives ``prior · limit^tanh(o)``, its prior's value at this
    step (:meth:`Prior.value`) times a correction in ``[1/limit, limit]``.

    Example:
        >>> params = [np.zeros((4, 13)), np.zeros(4), np.zeros(4), np.zeros(1)]
        >>> multiplier(params, np.ones(13)), multiplier(params, np.ones(13), prior=0.3)
        (1.0, 0.3)
    """
    w1, b1, w2, b2 = params
    o = float(w2 @ np.tanh(w1 @ x + b1) + b2[0])
    if prior is not None:
        return prior * limit ** math.tanh(o)
    return 2.0 / (1.0 + math.exp(-max(min(o, 60.0), -60.0)))


@dataclass(frozen=True)
class Prior:
    """The fixed shape a residual network corrects: warmup-stable-decay
    (:func:`mlrsnet.shapes.warmup_stable_decay`) and the correction's bound.

    Attributes:
        warmup: Fraction of the run spent warming up, in ``[0, 1)``.
        cooldown: Fraction of the run spent cooling down, in ``[0, 1]`` (with ``warmup`` at
            most 1).
        power: The cooldown is ``1 - s**power``.
        limit: The correction ``limit^tanh(o)`` lies in ``[1/limit, limit]``; above 1.

    Raises:
        ValueError: For a field out of its range.

    Example:
        >>> prior = Prior(warmup=0.0, cooldown=0.5, power=1.0)
        >>> [prior.value(t, 4) for t in range(4)]
        [1.0, 1.0, 1.0, 0.5]
    """

    warmup: float
    cooldown: float
    power: float
    limit: float = 2.0

    def __post_init__(self) -> None:
        number("prior warmup", self.warmup, 0.0, 1.0, high_open=True)
        number("prior cooldown", self.cooldown, 0.0, 1.0)
        number("prior power", self.power, 0.0, low_open=True)
        number("prior limit", self.limit, 1.0, low_open=True)
        if self.warmup + self.cooldown > 1.0 + 1e-12:
            raise ValueError(f"prior warmup {self.warmup} + cooldown {self.cooldown} exceed the "
                             "whole run")  # fmt: skip

    def value(self, step: int, total_steps: int) -> float:
        """The shape at 0-based ``step`` of ``total_steps`` (its end past them), in ``(0, 1]``."""
        return shapes.warmup_stable_decay(step, total_steps, warmup=self.warmup,
                                          cooldown=self.cooldown, power=self.power)  # fmt: skip

    def as_list(self) -> list[float]:
        """``[warmup, cooldown, power, limit]``: how a network file holds it."""
        return [self.warmup, self.cooldown, self.power, self.limit]


# ------------------------------------------------------------------------------ the network


class PlusNet(nn.Module):
    """The MLR-SNet+ network: ``NUM_FEATURES -> hidden (tanh) -> 1``, output ``2 σ(o)``, or
    with a ``prior`` the correction ``limit^tanh(o)`` of that shape (:func:`multiplier`).

    The weights are ordinary parameters (saved with :func:`save`); the scheduler reads a
    float64 numpy copy of them. A residual network's prior and scales are buffers, not
    parameters: they are the fixed shape the network corrects, and meta-training learns only
    the correction.

    Args:
        hidden: Hidden units.
        prior: The shape a residual network corrects (:meth:`residual` builds one).
        validation: Read a validation loss as well (:data:`NUM_VALIDATION_FEATURES` more
            inputs, :func:`validation_inputs`), which the user reports with
            :meth:`MLRSNetPlusLR.observe_validation`; without one they read 0.
        peak: The rate bound the network was meta-trained under, a multiple of the base rate
            (``1.0``: the optimizer's rate is the peak): :class:`MLRSNetPlusLR`'s default
            ``peak``. Saved in the network's file; ``None`` declares none.

    Example:
        >>> net = PlusNet(hidden=8)
        >>> sum(p.numel() for p in net.parameters())  # 13*8 + 8 + 8 + 1, and 2 family scales
        123
        >>> PlusNet(hidden=8, validation=True).num_inputs
        17
    """

    def __init__(
        self,
        hidden: int = 16,
        prior: Prior | None = None,
        *,
        validation: bool = False,
        peak: float | None = None,
    ) -> None:
        super().__init__()
        self.hidden = positive_int("hidden", hidden)
        if prior is not None and not isinstance(prior, Prior):
            raise TypeError(f"prior must be a Prior, got {type(prior).__name__}")
        if not isinstance(validation, bool):
            raise TypeError(f"validation must be a bool, got {validation!r}")
        #: Whether the network reads a validation loss (:func:`validation_inputs`).
        self.reads_validation = validation
        #: The rate bound it declares (a multiple of the base rate), or ``None``.
        self.peak = None if peak is None else number("peak", peak, 0.0, low_open=True)
        self.layer1 = nn.Linear(self.num_inputs, hidden)
        self.layer2 = nn.Linear(hidden, 1)
        #: ``log s_f`` of every family of :data:`OPTIMIZER_FAMILIES` (0: the base rate as is).
        self.log_scale: Tensor
        if prior is None:
            self.log_scale = nn.Parameter(torch.zeros(len(OPTIMIZER_FAMILIES)))
        else:
            self.register_buffer("log_scale", torch.zeros(len(OPTIMIZER_FAMILIES)))
            self.register_buffer("prior_shape", torch.tensor(prior.as_list()))

    @property
    def num_inputs(self) -> int:
        """:data:`NUM_FEATURES`, plus :data:`NUM_VALIDATION_FEATURES` for a network that reads
        a validation loss."""
        return NUM_FEATURES + (NUM_VALIDATION_FEATURES if self.reads_validation else 0)

    @property
    def prior(self) -> Prior | None:
        """The shape a residual network corrects (``None`` for a plain network).

        Raises:
            ValueError: If the stored shape is out of range (a hand-edited network).
        """
        shape = getattr(self, "prior_shape", None)
        if shape is None:
            return None
        warmup, cooldown, power, limit = (float(v) for v in shape.detach().double())
        if 1.0 < warmup + cooldown <= 1.0 + 1e-6:  # float32 storage of a whole-run shape
            cooldown = 1.0 - warmup
        return Prior(warmup, cooldown, power, limit)

    @classmethod
    def residual(
        cls,
        prior: Prior,
        peaks: dict[str, float],
        *,
        hidden: int = 16,
        seed: int = 0,
        validation: bool = False,
        peak: float | None = None,
    ) -> PlusNet:
        """A network that starts as exactly ``prior`` at ``peaks`` (its correction is 1).

        The output layer is zero, so ``o = 0`` and the correction ``limit^0 = 1`` whatever
        the inputs; the hidden layer has torch's initialisation under ``seed``. The scales are
        ``s_f = peaks[f]``: a run's rate is ``base_lr · peaks[f] · prior(t, T)`` until
        meta-training moves the output layer.

        Args:
            prior: The shape to correct.
            peaks: The peak of every family of :data:`OPTIMIZER_FAMILIES`, as a multiple of the
                base rate.
            hidden: Hidden units.
            seed: Seed of the hidden layer's initialisation.
            validation: Read a validation loss as well (see :class:`PlusNet`).
            peak: The rate bound the network declares (see :class:`PlusNet`).

        Raises:
            ValueError: If ``peaks`` does not give a positive number for each family.

        Example:
            >>> net = PlusNet.residual(Prior(0.0, 0.25, 0.5), {"sgd": 2.0, "adaptive": 4.0}, hidden=4)
            >>> round(net.scale("adaptive"), 6), net.prior.cooldown  # float32 buffers
            (4.0, 0.25)
        """
        if set(peaks) != set(OPTIMIZER_FAMILIES):
            raise ValueError(f"peaks must give {OPTIMIZER_FAMILIES}, got {sorted(peaks)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(hidden=hidden, prior=prior, validation=validation, peak=peak)
        with torch.no_grad():
            net.layer2.weight.zero_()
            net.layer2.bias.zero_()
            for index, family in enumerate(OPTIMIZER_FAMILIES):
                net.log_scale[index] = math.log(
                    number(f"the {family} peak", peaks[family], 0.0, low_open=True)
                )
        return net

    def scale(self, family: str) -> float:
        """``s_f = exp(log_scale[f])`` (``log_scale`` clipped to ``±LOG_SCALE_LIMIT``).

        Raises:
            ValueError: For a family not in :data:`OPTIMIZER_FAMILIES`, or a non-finite weight.
        """
        if family not in OPTIMIZER_FAMILIES:
            raise ValueError(
                f"optimizer family must be one of {OPTIMIZER_FAMILIES}, got {family!r}"
            )
        value = float(self.log_scale.detach()[OPTIMIZER_FAMILIES.index(family)])
        if not math.isfinite(value):
            raise ValueError("PlusNet: the network has non-finite weights")
        return math.exp(max(min(value, LOG_SCALE_LIMIT), -LOG_SCALE_LIMIT))

    def forward(self, x: Tensor) -> Tensor:
        """The learned factor for features ``x`` (``[..., num_inputs]``): the multiplier
        ``2 σ(o)`` in ``(0, 2)``, or a residual network's correction ``limit^tanh(o)`` (the
        prior's value depends on the step, not on ``x``: :func:`multiplier` applies it)."""
        o = self.layer2(torch.tanh(self.layer1(x))).squeeze(-1)
        prior = self.prior
        if prior is not None:
            return torch.pow(torch.as_tensor(prior.limit, dtype=o.dtype), torch.tanh(o))
        return 2.0 * torch.sigmoid(o)

    def numpy_params(self) -> list[np.ndarray]:
        """``[W1, b1, w2, b2]`` as float64 numpy arrays (``w2`` flattened).

        Raises:
            ValueError: If a weight is not finite.
        """
        params = [
            self.layer1.weight, self.layer1.bias, self.layer2.weight.reshape(-1), self.layer2.bias,
        ]  # fmt: skip
        arrays = [p.detach().to("cpu", torch.float64).numpy().copy() for p in params]
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("PlusNet: the network has non-finite weights")
        return arrays

    @classmethod
    def from_shape(
        cls,
        shape: Callable[[int, int], float] | None = None,
        *,
        hidden: int = 16,
        seed: int = 0,
        iterations: int = 1500,
        validation: bool = False,
        peak: float | None = None,
    ) -> PlusNet:
        """A network fitted to a progress-only shape; its loss inputs start unused.

        The weights from the loss features are zero, so the network starts as exactly a
        function of ``t/T``: by default warmup-stable-decay without warmup (hold, then a
        1 − √ cooldown over the last 20 %), the strong default meta-training starts from.

        Args:
            shape: ``shape(step, total_steps) -> multiplier`` (default
                :func:`mlrsnet.shapes.warmup_stable_decay`).
            hidden: Hidden units.
            seed: Seed of the initialisation (the fit is deterministic on one machine).
            iterations: Adam iterations of the least-squares fit.
            validation: Read a validation loss as well (its weights start at 0, unused).
            peak: The rate bound the network declares (see :class:`PlusNet`).
        """
        shape = shape or (lambda t, n: shapes.warmup_stable_decay(t, n, cooldown=0.2))
        total = 400
        grid = np.arange(total)
        unseen = ValidationState() if validation else None
        inputs = np.stack([features(init_state(), int(t), total, unseen) for t in grid])
        target = torch.tensor([max(shape(int(t), total), 1e-3) for t in grid])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(hidden=hidden, validation=validation, peak=peak).double()
        x = torch.tensor(inputs)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(iterations):
            optimizer.zero_grad()
            loss = (net(x).log() - target.log()).pow(2).mean()  # relative error
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            net.layer1.weight[:, _NUM_PROGRESS:] = 0.0
        return net.float()


# ------------------------------------------------------------------------------ files

#: The ``format`` metadata of an MLR-SNet+ network file.
PLUS_FORMAT = "mlrsnet-plus"
#: The largest hidden width a file may declare (checked before anything is allocated).
MAX_HIDDEN = 4096
#: The ``prior`` metadata of a residual network's file: the shape :class:`Prior` describes.
PRIOR_KIND = "warmup-stable-decay"


def save(path: str | os.PathLike[str], net: PlusNet, manifest: dict[str, Any]) -> Path:
    """Write ``net`` to ``path`` (safetensors) and ``manifest`` beside it (``.json``).

    The weights are written first, then the manifest, each atomically; the manifest names the
    weights' SHA-256, so a manifest never describes other weights.

    Raises:
        ValueError: If ``path`` does not end in ``.safetensors``.
    """
    from safetensors.torch import save as save_tensors

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: an MLR-SNet+ network file must end in .safetensors")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in net.state_dict().items()}  # fmt: skip
    metadata = {"format": PLUS_FORMAT, "hidden": str(net.hidden),
                "num_features": str(net.num_inputs),
                "optimizer_families": ",".join(OPTIMIZER_FAMILIES)}  # fmt: skip
    if net.prior is not None:
        metadata["prior"] = PRIOR_KIND
    if net.peak is not None:
        metadata["peak"] = repr(net.peak)
    payload = save_tensors(tensors, metadata=metadata)
    atomic_write(path, payload)
    full = {**manifest, "format": PLUS_FORMAT, "hidden": net.hidden,
            "sha256": hashlib.sha256(payload).hexdigest()}  # fmt: skip
    atomic_write(path.with_suffix(".json"),
                 (json.dumps(full, indent=2, allow_nan=False) + "\n").encode())  # fmt: skip
    return path


def load(path: str | os.PathLike[str]) -> tuple[PlusNet, dict[str, Any]]:
    """Read an MLR-SNet+ network file and its manifest (empty if absent or not its own).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not an MLR-SNet+ file, or its header declares other shapes, dtypes
            or sizes than :class:`PlusNet` of its width (checked before reading any tensor).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MLR-SNet+ network file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != PLUS_FORMAT:
                raise ValueError(
                    f"{path}: not an MLR-SNet+ file (format {metadata.get('format')!r})"
                )
            hidden = metadata.get("hidden", "")
            if not hidden.isdigit() or not 1 <= int(hidden) <= MAX_HIDDEN:
                raise ValueError(f"{path}: bad hidden width {hidden!r}")
            inputs = metadata.get("num_features")
            known = (str(NUM_FEATURES), str(NUM_FEATURES + NUM_VALIDATION_FEATURES))
            if inputs not in known:
                raise ValueError(f"{path}: made for {inputs} inputs, this version reads "
                                 f"{' or '.join(known)}")  # fmt: skip
            peak = metadata.get("peak")
            try:
                peak = None if peak is None else number("peak", float(peak), 0.0, low_open=True)
            except ValueError as err:
                raise ValueError(f"{path}: bad declared peak {metadata.get('peak')!r}") from err
            families = metadata.get("optimizer_families")
            if families != ",".join(OPTIMIZER_FAMILIES):
                raise ValueError(f"{path}: made for optimizer families {families!r}, this "
                                 f"version has {','.join(OPTIMIZER_FAMILIES)!r}")  # fmt: skip
            prior = metadata.get("prior")
            if prior not in (None, PRIOR_KIND):
                raise ValueError(f"{path}: unknown prior {prior!r} (this version knows "
                                 f"{PRIOR_KIND!r})")  # fmt: skip
            net = PlusNet(hidden=int(hidden),
                          prior=None if prior is None else Prior(0.0, 0.2, 0.5),
                          validation=inputs == known[1], peak=peak)  # fmt: skip
            expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
            if set(f.keys()) != set(expected):
                raise ValueError(f"{path}: tensors {sorted(f.keys())}, expected {sorted(expected)}")
            for key, shape in expected.items():
                view = f.get_slice(key)
                if tuple(view.get_shape()) != shape or view.get_dtype() not in ("F32", "F64"):
                    raise ValueError(f"{path}: {key} is {view.get_dtype()} "
                                     f"{view.get_shape()}, expected float {list(shape)}")  # fmt: skip
            tensors = {k: f.get_tensor(k) for k in expected}
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
        raise ValueError(f"{path}: non-finite weights")
    net.load_state_dict({k: t.float() for k, t in tensors.items()})
    try:
        net.prior  # noqa: B018 - checks the stored shape
    except ValueError as err:
        raise ValueError(f"{path}: bad prior ({err})") from err
    manifest_path = path.with_suffix(".json")
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if manifest.get("sha256") != digest:
            logger.warning("%s: the manifest describes other weights; ignored", manifest_path)
            manifest = {}
    return net, manifest


def _pretrained_dir() -> Path:
    return shipped_dir("plus")


def pretrained_names() -> list[str]:
    """Names of the MLR-SNet+ networks shipped inside the package.

    Example:
        >>> isinstance(pretrained_names(), list)
        True
    """
    return shipped_names(_pretrained_dir())


def pretrained(name: str) -> tuple[PlusNet, dict[str, Any]]:
    """A shipped MLR-SNet+ network and its manifest, by name (see :func:`pretrained_names`).

    Raises:
        ValueError: If no shipped network has that name (the message lists them).
    """
    path = _pretrained_dir() / f"{name}.safetensors"
    if "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(pretrained_names()) or "none"
        raise ValueError(f"no shipped MLR-SNet+ network named {name!r}; shipped: {known}")
    return load(path)


def resolve(spec: str | os.PathLike[str]) -> tuple[PlusNet, dict[str, Any]]:
    """A shipped network's name, or the path of a network file.

    Raises:
        ValueError: If ``spec`` is neither (the message lists the shipped names).
    """
    if str(spec) in pretrained_names():
        return pretrained(str(spec))
    path = Path(spec).expanduser()
    if path.suffix == ".safetensors" or path.exists():
        return load(path)
    known = ", ".join(pretrained_names()) or "none"
    raise ValueError(f"{str(spec)!r} is neither a shipped MLR-SNet+ network ({known}) nor a file")


# ------------------------------------------------------------------------------ the scheduler


class MLRSNetPlusLR(LossDrivenLR):
    """MLR-SNet+ as a ``torch.optim.lr_scheduler.LRScheduler``: ``lr = base_lr · m(features)``.

    Two orders, as :class:`~mlrsnet.MLRSNetLR`: ``step(loss)`` before ``optimizer.step()``
    reads this step's loss and sets this step's rate (the loss-driven order); ``observe(loss)``
    and then ``step()`` after ``optimizer.step()`` (torch's order) sets the *next* step's rate
    from the observed loss: the same rates one step later. A non-finite loss is skipped (the
    state and the rate stay) and counted in :attr:`num_nonfinite`; the multiplier is bounded,
    so no non-finite rate can reach the optimizer. Past ``total_steps`` the progress inputs
    saturate and the schedule holds its end.

    Args:
        optimizer: Any torch optimizer; each group's ``lr`` at construction is its base rate.
        net: A :class:`PlusNet` (frozen: the scheduler reads a copy of its weights).
        total_steps: Optimizer steps in the run (``T``).
        last_epoch: As every ``LRScheduler``.
        progress_only: Hold every loss input at 0 (no information), so the rate depends on
            ``t/T`` alone: the ablation that says whether the network uses the loss.
        family: The optimizer's family for the network's scale ``s_f``
            (:data:`OPTIMIZER_FAMILIES`); ``None`` reads it off the optimizer
            (:func:`optimizer_family`).
        distributed: Average the loss over ``torch.distributed`` ranks before it is read, so
            that every rank sets the same rate; ``None``: when a process group of several
            ranks is initialised.
        loss_lag: Read each loss this many steps after it is given, copied to the host without
            blocking, so that a loop on a GPU never waits for the schedule (0: at once; the
            rates are exactly those of ``loss_lag=0`` that many steps later; see
            :mod:`mlrsnet.lossdriven`).
        peak: The most the rate may reach, as a multiple of each group's base rate. ``1.0``
            makes the optimizer's rate the peak, as for every torch scheduler (the user-rate
            contract: the network then only shapes the rate below it); ``None`` (the default)
            takes the bound the network declares (:attr:`PlusNet.peak`), and for a network
            that declares none (or with ``math.inf``) keeps the network's own bound, ``s_f``
            times 2 or times its prior's limit (``v6`` reaches 2.18x the base rate with SGD
            and 4.83x with AdamW).

    A network built to read a validation loss (:attr:`PlusNet.reads_validation`) is given one
    with :meth:`observe_validation` whenever the user computes it (e.g. once an epoch, as
    ``ReduceLROnPlateau`` is): it changes the rates from the next loss read on.

    Raises:
        ValueError: For a non-positive ``total_steps`` or ``peak``, or non-finite network
            weights.

    Example:
        >>> import torch
        >>> from mlrsnet.plus import PlusNet
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> net = PlusNet.from_shape(iterations=20)
        >>> capped = MLRSNetPlusLR(opt, net, total_steps=100, peak=1.0)
        >>> capped.step(2.3)
        >>> opt.param_groups[0]["lr"] <= 0.1
        True
    """

    def __init__(
        self,
        optimizer: Optimizer,
        net: PlusNet,
        total_steps: int,
        last_epoch: int = -1,
        *,
        progress_only: bool = False,
        family: str | None = None,
        distributed: bool | None = None,
        loss_lag: int = 0,
        peak: float | None = None,
    ) -> None:
        if not isinstance(net, PlusNet):
            raise TypeError(f"net must be a PlusNet, got {type(net).__name__}")
        if not isinstance(progress_only, bool):
            raise TypeError(f"progress_only must be a bool, got {progress_only!r}")
        self.total_steps = positive_int("total_steps", total_steps)
        self.net = net
        self.progress_only = progress_only
        if peak is None:
            peak = net.peak
        elif peak == math.inf:
            peak = None
        self.peak = None if peak is None else number("peak", peak, 0.0, low_open=True)
        self._cap = math.inf if peak is None else float(peak)
        self._reads_validation = net.reads_validation
        self._val_count, self._val_minimum, self._val_last, self._val_best_step = (
            0, math.inf, math.nan, -1)  # fmt: skip
        self.family = optimizer_family(optimizer) if family is None else family
        self._scale = net.scale(self.family)
        self._params = net.numpy_params()
        w1, b1, w2, b2 = self._params
        self._hidden_weights = np.ascontiguousarray(np.c_[w1, b1])  # the bias on an input of 1
        self._output_weights, self._b2 = w2, float(b2[0])
        self._decays = [float(d) for d in _decays(self.total_steps)]
        self._count, self._initial, self._minimum = 0, math.nan, math.inf
        self._averages = [0.0] * len(LOSS_HALF_LIVES)
        self._losses_read = 0
        prior = self._prior = net.prior
        if prior is not None:  # the shape's step counts, as shapes.warmup_stable_decay has them
            self._warmup_steps = round(prior.warmup * self.total_steps)
            self._cooldown_steps = min(round(prior.cooldown * self.total_steps),
                                       self.total_steps - self._warmup_steps)  # fmt: skip
        self._max_multiplier = 2.0 if prior is None else prior.limit
        start = features(init_state(), 0, self.total_steps,
                         ValidationState() if self._reads_validation else None)  # fmt: skip
        self._multiplier = multiplier(self._params, start, *self._prior_at(0))
        self.num_nonfinite = 0
        params = [p for group in optimizer.param_groups for p in group["params"]]
        device = params[0].device if params else torch.device("cpu")
        self._init_loss_reading(device=device, distributed=distributed, loss_lag=loss_lag,
                                host_losses=True, mean_dtype=torch.float64)  # fmt: skip
        super().__init__(optimizer, last_epoch)

    def _prior_at(self, step: int) -> tuple[()] | tuple[float, float]:
        """``(prior.value(step, T), limit)`` for a residual network (the arguments
        :func:`multiplier` takes after ``x``), ``()`` for a plain one; the same arithmetic as
        :func:`mlrsnet.shapes.warmup_stable_decay` without its checks."""
        prior = self._prior
        if prior is None:
            return ()
        step = min(max(step, 0), self.total_steps - 1)
        if step < self._warmup_steps:
            return (step + 1) / self._warmup_steps, prior.limit
        into_cooldown = step - (self.total_steps - self._cooldown_steps)
        if into_cooldown < 0:
            return 1.0, prior.limit
        if prior.power == 0.5:
            return 1.0 - math.sqrt(into_cooldown / self._cooldown_steps), prior.limit
        return 1.0 - (into_cooldown / self._cooldown_steps) ** prior.power, prior.limit

    @property
    def loss_state(self) -> LossState:
        """What the loss features remember now (see :func:`observe`)."""
        return LossState(self._count, self._initial, self._minimum, tuple(self._averages))

    @property
    def validation_state(self) -> ValidationState:
        """The validation losses read so far (see :func:`observe_validation`)."""
        return ValidationState(self._val_count, self._val_minimum, self._val_last,
                               self._val_best_step)  # fmt: skip

    def observe_validation(self, loss: Tensor | float) -> None:
        """Read a validation loss (on a held-out split, at the weights of the last step).

        The network's validation inputs (:func:`validation_inputs`) take it from the next
        training loss read on; a network that does not read one
        (:attr:`PlusNet.reads_validation` false) keeps it without any effect on its rates.
        Under ``torch.distributed`` (as for the training loss) it is averaged over the
        ranks, so every rank must call it. A non-finite loss is skipped and counted in
        :attr:`num_nonfinite`.

        Example:
            >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
            >>> net = PlusNet(hidden=4, validation=True)
            >>> scheduler = MLRSNetPlusLR(opt, net, total_steps=10)
            >>> scheduler.observe_validation(0.7)
            >>> scheduler.validation_state.minimum
            0.7
        """
        check_loss(loss, "observe_validation", "MLRSNetPlusLR")
        if self.reads_mean_over_ranks():
            loss = mean_over_ranks(loss, self.device, torch.float64)
        value = float(loss)
        if not math.isfinite(value) or abs(value) > MAX_LOSS:
            self.num_nonfinite += 1
            logger.warning("MLRSNetPlusLR: non-finite validation loss %r skipped", value)
            return
        state = observe_validation(self.validation_state, value, self._losses_read)
        self._val_count, self._val_minimum, self._val_last, self._val_best_step = (
            state.count, state.minimum, state.last, state.best_step)  # fmt: skip

    @property
    def factor(self) -> float:
        """The network's bounded multiplier ``m`` now in effect (in ``(0, 2)``; for a residual
        network, the prior's value times the correction, in ``(0, limit]``)."""
        return self._multiplier

    @property
    def scale(self) -> float:
        """The network's constant ``s_f`` for this optimizer's family."""
        return self._scale

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """``base_lr · min(s_f · m, peak)`` for every parameter group."""
        return [self._rate(base) for base in self.base_lrs]  # type: ignore[misc]

    # -- the maths of a step (the mechanism is LossDrivenLR's) ---------------------------

    #: ``step()`` before any loss was observed keeps the rate (a trainer's first call).
    keeps_rate_without_loss = True

    def _constructor_step(self) -> bool:
        if self.last_epoch >= 0:
            return False
        self.last_epoch, self._step_count = 0, self._step_count + 1  # the rates at the start
        return True

    def _rate(self, base: float | Tensor) -> float | Tensor:
        if self._scale * self._multiplier > self._cap:
            return base * self._cap
        return base * self._scale * self._multiplier  # the product as without a peak

    def _read_loss(self, loss: Tensor | float) -> None:
        """:func:`observe`, :func:`features` and :func:`multiplier` on host floats: the
        same loss state exactly, the same multiplier to rounding (the hidden bias folded into
        the matrix as the weight of an input of 1, and ``math.tanh`` for the progress inputs)."""
        loss = loss if isinstance(loss, float) else float(loss)
        step = self._losses_read
        progress = step / self.total_steps
        self._losses_read += 1  # a skipped step still advances time, as MLRSNetLR counts it
        if not math.isfinite(loss) or abs(loss) > MAX_LOSS:
            self.num_nonfinite += 1
            logger.warning("MLRSNetPlusLR: non-finite loss %r skipped; the rate is kept", loss)
            return
        count = self._count = self._count + 1
        averages, corrected = self._averages, []
        for i, d in enumerate(self._decays):  # the averages and their bias corrections
            average = averages[i] = d * averages[i] + (1.0 - d) * loss
            corrected.append(average / (1.0 - d**count))
        minimum = self._minimum = min(self._minimum, loss)
        if count == 1:
            self._initial = loss
        x = [math.tanh(10.0 * (progress - c)) for c in PROGRESS_CENTRES]
        if self.progress_only:
            x += _NO_LOSS_INPUTS
        else:
            x += _loss_inputs(corrected, minimum, self._initial)
        if self._reads_validation:
            if self._val_count and not self.progress_only:
                x += validation_inputs(self._val_minimum, self._val_last, self._val_best_step,
                                       corrected[0], step, self.total_steps)  # fmt: skip
            else:
                x += _NO_VALIDATION_INPUTS
        x.append(1.0)
        o = float(np.dot(self._output_weights, np.tanh(np.dot(self._hidden_weights, x)))) + self._b2
        if self._prior is None:
            self._multiplier = 2.0 / (1.0 + math.exp(-max(min(o, 60.0), -60.0)))
        else:
            value, limit = self._prior_at(step)
            self._multiplier = value * limit ** math.tanh(o)

    def state_dict(self) -> dict[str, Any]:
        """Numbers only: torch's scheduler fields and the loss state (not the network)."""
        state = {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}
        state["_averages"] = list(self._averages)
        waiting = self._waiting_state()  # as plain numbers
        state["_observed"] = waiting["observed_loss"].item() if self._observed_count else None
        state["_observed_count"] = self._observed_count
        state["_observes"] = self._observes
        state["_lagged_losses"] = waiting["lagged_losses"].tolist()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output, checking every number first.

        Raises:
            ValueError: If a number is missing, of the wrong kind or out of range.
        """
        state = dict(state_dict)
        count, observed = state.pop("_observed_count", 0), state.pop("_observed", None)
        lagged = state.pop("_lagged_losses", [])
        if count and (isinstance(observed, bool) or not isinstance(observed, (int, float))):
            raise ValueError(f"MLRSNetPlusLR state: bad observed loss {observed!r}")
        if not (isinstance(lagged, list) and all(_is_finite(v) for v in lagged)):
            raise ValueError(f"MLRSNetPlusLR state: bad lagged losses {lagged!r}")
        waiting = self._check_waiting_state(
            {"observed_count": count, "observes": state.pop("_observes", False),
             "observed_loss": torch.tensor([float(observed)] if count else [], dtype=torch.float64),
             "lagged_losses": torch.tensor(lagged, dtype=torch.float64)},
            "MLRSNetPlusLR state",
        )  # fmt: skip
        state = {k: v for k, v in state.items() if k not in _NOT_STATE}
        averages = state.get("_averages")
        if not (isinstance(averages, list) and len(averages) == len(LOSS_HALF_LIVES)
                and all(isinstance(a, float) and math.isfinite(a) for a in averages)):  # fmt: skip
            raise ValueError(f"MLRSNetPlusLR state: bad loss averages {averages!r}")
        count, read = state.get("_count"), state.get("_losses_read")
        for name, value in (("_count", count), ("_losses_read", read)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"MLRSNetPlusLR state: bad {name} {value!r}")
        minimum, initial = state.get("_minimum"), state.get("_initial")
        if count and not (_is_finite(minimum) and _is_finite(initial)):
            raise ValueError(f"MLRSNetPlusLR state: bad loss extremes {initial!r}, {minimum!r}")
        number("_multiplier", state.get("_multiplier"), 0.0, self._max_multiplier)
        if state.get("progress_only", False) != self.progress_only:
            raise ValueError(
                f"state is for progress_only={state.get('progress_only', False)}, this "
                f"scheduler has {self.progress_only}"
            )
        _check_validation_state(state)
        if state.get("peak") != self.peak:
            raise ValueError(
                f"state is for peak={state.get('peak')}, this scheduler has {self.peak}"
            )
        if state.get("total_steps") != self.total_steps:
            raise ValueError(
                f"state is for total_steps={state.get('total_steps')}, this scheduler has "
                f"{self.total_steps}"
            )
        bases = state.get("base_lrs")
        if not (isinstance(bases, list) and len(bases) == len(self.optimizer.param_groups)):
            raise ValueError(f"MLRSNetPlusLR state: bad base_lrs {bases!r}")
        for base in bases:
            number("base_lrs", float(base) if isinstance(base, Tensor) else base, 0.0)
        self.__dict__.update(state)
        self._averages = list(averages)
        self._restore_waiting(waiting)


def _is_finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


_VALIDATION_DEFAULTS = {"_val_count": 0, "_val_minimum": math.inf, "_val_last": math.nan,
                        "_val_best_step": -1}  # fmt: skip


def _check_validation_state(state: dict[str, Any]) -> None:
    """Check (and, for a state saved before validation inputs existed, fill in) the validation
    fields of a :class:`MLRSNetPlusLR` state."""
    for key, default in _VALIDATION_DEFAULTS.items():
        state.setdefault(key, default)
    count, best = state["_val_count"], state["_val_best_step"]
    for name, value, low in (("_val_count", count, 0), ("_val_best_step", best, -1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"MLRSNetPlusLR state: bad {name} {value!r}")
    minimum, last = state["_val_minimum"], state["_val_last"]
    if count and not (_is_finite(minimum) and _is_finite(last) and best >= 0):
        raise ValueError(f"MLRSNetPlusLR state: bad validation losses {minimum!r}, {last!r}")


#: What :meth:`MLRSNetPlusLR.state_dict` leaves out: the optimizer, the network and what is
#: computed from them, the settings of the loss reading, and the waiting losses (saved in their
#: own checked format).
_NOT_STATE = frozenset((
    "optimizer", "net", "family", "_params", "_hidden_weights", "_output_weights", "_b2",
    "_decays", "_scale", "_prior", "_warmup_steps", "_cooldown_steps", "_max_multiplier", "_cap",
    "_reads_validation",
    "device", "distributed", "loss_lag", "_host_losses", "_mean_dtype", "_lagged", "_observed",
    "_observed_count", "_observes",
))  # fmt: skip
