"""Baseline learning-rate schedules and adaptive optimizers behind one factory.

Every baseline MLR-SNet is compared with -- hand-designed schedules, adaptive
optimizers, hypergradient methods and today's schedule-free / parameter-free
optimizers, and MLR-SNet transfer -- is built by :func:`build` as a :class:`Schedule`, which
implements the lab's one training-step protocol (:mod:`mlrsnet.lab.protocol`), so a training
loop can swap them freely::

    sched = baselines.build("cosine", model.parameters(),
                            total_steps=epochs * len(loader),
                            steps_per_epoch=len(loader))
    for epoch in range(epochs):
        model.train(); sched.train()
        for x, y in loader:
            sched.step(loss_fn(model(x), y), meta_loss=val_batch_loss)
        model.eval(); sched.eval()          # schedule-free evaluates at x
        sched.epoch_end(val_loss=evaluate(model))

``sched.step`` receives the loss *with its graph* and does everything else:
zeroing gradients, backward, optional gradient-norm clipping, the optimizer
step(s) and per-step scheduling. Equations, sources, defaults and options of
every method are in ``docs/schedules.md`` and in the docstrings of the
builders below. Torch's own schedulers and the maintained ``schedulefree`` and
``prodigyopt`` packages are used wherever they exist; SGD-HD, RTHO and L4 are
implemented in :mod:`mlrsnet.lab.hypergradient`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import lr_scheduler as lrs

from mlrsnet import shapes
from mlrsnet.checks import boolean, is_int, is_real, require
from mlrsnet.gradients import compute_gradients
from mlrsnet.lab import protocol
from mlrsnet.lab.hypergradient import L4, RTHOSGD, SGDHD
from mlrsnet.lab.protocol import MetaBatch, MetaLoss, StepResult, TrainingMethod

logger = logging.getLogger(__name__)

__all__ = [
    "Schedule", "adam_beta1", "base_rate_optimizer", "build", "default_lr", "default_options",
    "names",
]  # fmt: skip


class Schedule(TrainingMethod):
    """A baseline as a :class:`~mlrsnet.lab.protocol.TrainingMethod`: an optimizer and its LR scheduler.

    Built by :func:`build`; subclasses adapt the protocol to methods that need
    the loss value (L4), a validation closure (RTHO) or train/eval switching
    (Schedule-Free).

    Attributes:
        name: The registry name this schedule was built from.
        optimizer: The underlying :class:`torch.optim.Optimizer`.
        scheduler: The torch LR scheduler, or ``None``.
        interval: When ``scheduler`` is stepped: ``"step"`` (after each optimizer step),
            ``"loss"`` (before each optimizer step, on the step's loss: MLR-SNet),
            ``"epoch"``, ``"plateau"`` (per epoch, on the validation loss) or ``None``.
        total_steps: Planned number of optimizer steps.
        steps_per_epoch: Optimizer steps per epoch.
        grad_clip: Max global gradient norm, or ``None``.
        requires_meta_loss: Whether :meth:`step` needs ``meta_loss``.
        step_count: Optimizer steps taken so far.
        skipped_steps: Steps skipped for a non-finite loss or gradient (not in ``step_count``).
        epoch_count: Calls to :meth:`epoch_end` so far.

    Example:
        >>> model = torch.nn.Linear(4, 3)
        >>> sched = build("fixed", model.parameters(), total_steps=10, steps_per_epoch=5)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> sched.step(torch.nn.functional.cross_entropy(model(x), y))
        StepResult(lr=0.1, skipped=False, meta_loss=None)
        >>> sched.lr
        0.1
    """

    requires_meta_loss: bool = False

    def __init__(
        self,
        name: str,
        optimizer: torch.optim.Optimizer,
        scheduler: lrs.LRScheduler | None = None,
        *,
        interval: str | None = None,
        total_steps: int,
        steps_per_epoch: int,
        grad_clip: float | None = None,
    ) -> None:
        if interval not in (None, "step", "epoch", "plateau", "loss"):
            raise ValueError(f"bad scheduler interval {interval!r}")
        if (scheduler is None) != (interval is None):
            raise ValueError("scheduler and interval must be given together")
        self.name = name
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.interval = interval
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.grad_clip = grad_clip
        self.step_count = 0
        self.skipped_steps = 0
        self.epoch_count = 0
        self._last_lr: float | None = None
        self._warned_overrun = False

    # ------------------------------------------------------------------ protocol
    @property
    def needs_val_loss(self) -> bool:  # type: ignore[override]
        """``plateau`` steps its scheduler on the epoch's validation loss."""
        return self.interval == "plateau"

    def step(
        self,
        loss: Tensor,
        *,
        meta_loss: MetaLoss | None = None,
        meta_batch: MetaBatch | None = None,
    ) -> StepResult:
        """Zero grads, backward, clip, optimizer step and per-step scheduling.

        Args:
            loss: Scalar training loss with its autograd graph.
            meta_loss: Closure returning a held-out loss at the current weights;
                only used by methods with ``requires_meta_loss`` (RTHO).
            meta_batch: Not used by the baselines (part of the protocol).

        Returns:
            The learning rate the step used.
        """
        _check_loss(loss)
        norm = compute_gradients(loss, self.optimizer, grad_clip=self.grad_clip, total_norm=True)
        if not protocol.finite_step(loss, norm):
            return self._skip()
        self._last_lr = self._optimizer_step(loss)
        self.step_count += 1
        if self.interval == "step":
            if self.step_count <= self.total_steps:
                self.scheduler.step()
            elif not self._warned_overrun:
                self._warned_overrun = True
                logger.warning(
                    "%s: more than total_steps=%d steps; the per-step scheduler is frozen",
                    self.name,
                    self.total_steps,
                )
        return StepResult(lr=self._last_lr)

    def epoch_end(self, val_loss: float | None = None) -> dict[str, Any]:
        """Advance epoch-level schedules; call once at the end of every epoch.

        Args:
            val_loss: Validation loss of the epoch; required by ``plateau``,
                ignored elsewhere.
        """
        self.epoch_count += 1
        if self.interval == "epoch":
            self.scheduler.step()
        elif self.interval == "plateau":
            if val_loss is None:
                raise ValueError(f"schedule {self.name!r} needs epoch_end(val_loss=...)")
            self.scheduler.step(float(val_loss))
        return {}

    def train(self) -> None:
        """Switch to training mode (only Schedule-Free optimizers have one)."""

    def eval(self) -> None:
        """Switch to evaluation mode; call before evaluating the model."""

    @property
    def lr(self) -> float:
        """Learning rate used at the last step (the current one before any step)."""
        return self._current_lr() if self._last_lr is None else self._last_lr

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, scheduler and counter state (tensors are not copied).

        Returns:
            A dict for :meth:`load_state_dict`; ``copy.deepcopy`` or
            ``torch.save`` it if training continues before it is used.
        """
        return {
            "name": self.name,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "counters": {
                "step_count": self.step_count,
                "epoch_count": self.epoch_count,
                "last_lr": self._last_lr,
                "warned_overrun": self._warned_overrun,
                "skipped_steps": self.skipped_steps,
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a schedule built the same way.

        Args:
            state: The saved state. Model parameters are restored separately.
        """
        if state.get("name") != self.name:
            raise ValueError(f"state is for schedule {state.get('name')!r}, not {self.name!r}")
        self.optimizer.load_state_dict(state["optimizer"])
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError("scheduler presence differs between state and schedule")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        counters = state["counters"]
        self.step_count = int(counters["step_count"])
        self.epoch_count = int(counters["epoch_count"])
        self._last_lr = counters["last_lr"]
        self._warned_overrun = bool(counters["warned_overrun"])
        self.skipped_steps = int(counters.get("skipped_steps", 0))

    def _skip(self) -> StepResult:
        """A non-finite loss or gradient: nothing changes but the count (see the protocol)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        protocol.log_skip(self.name, self.step_count + self.skipped_steps, self.skipped_steps)
        return StepResult(lr=self.lr, skipped=True)

    # ------------------------------------------------------------------ hooks
    @property
    def params(self) -> list[Tensor]:
        """All parameters of the optimizer, in ``param_groups`` order."""
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _optimizer_step(self, loss: Tensor) -> float:
        lr = self._current_lr()
        self.optimizer.step()
        return lr

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, optimizer={type(self.optimizer).__name__}, "
            f"scheduler={type(self.scheduler).__name__ if self.scheduler else None}, "
            f"step={self.step_count}, lr={self.lr:g})"
        )


class _AdaptiveLRSchedule(Schedule):
    """The lr used is the one set inside ``optimizer.step`` (SGD-HD; DoG and Mechanic)."""

    def _optimizer_step(self, loss: Tensor) -> float:
        self.optimizer.step()
        return self._current_lr()


class _L4Schedule(Schedule):
    """L4 reads the loss value passed to :meth:`Schedule.step`."""

    def _optimizer_step(self, loss: Tensor) -> float:
        self.optimizer.step(loss=loss.detach())
        return self._current_lr()


class _ProdigySchedule(Schedule):
    """Prodigy: report the effective Adam step size ``d * lr`` (bias-corrected)."""

    def _current_lr(self) -> float:
        g = self.optimizer.param_groups[0]
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        scale = 1.0
        if g["use_bias_correction"]:
            b1, b2 = g["betas"]
            k = g["k"]
            scale = ((1 - b2 ** (k + 1)) ** 0.5) / (1 - b1 ** (k + 1))
        return float(g["d"] * lr * scale)


class _ScheduleFreeSchedule(Schedule):
    """Schedule-Free: forwards train()/eval() to the optimizer; starts in train mode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.optimizer.train()

    def train(self) -> None:
        """Move parameters to the gradient point ``y`` (``optimizer.train()``)."""
        self.optimizer.train()

    def eval(self) -> None:
        """Move parameters to the averaged iterate ``x`` (``optimizer.eval()``)."""
        self.optimizer.eval()

    def step(
        self,
        loss: Tensor,
        *,
        meta_loss: MetaLoss | None = None,
        meta_batch: MetaBatch | None = None,
    ) -> StepResult:
        if not self.optimizer.param_groups[0]["train_mode"]:
            raise RuntimeError(
                f"{self.name}: optimizer is in eval mode; call schedule.train() "
                "before computing the training loss"
            )
        return super().step(loss, meta_loss=meta_loss)

    def _current_lr(self) -> float:
        g = self.optimizer.param_groups[0]
        return float(g["scheduled_lr"] if g["k"] > 0 else g["lr"])

    def _optimizer_step(self, loss: Tensor) -> float:
        self.optimizer.step()
        return float(self.optimizer.param_groups[0]["scheduled_lr"])


class _RTHOSchedule(Schedule):
    """RTHO: double backward for the tangent, validation closure for the lr."""

    requires_meta_loss = True

    def __init__(self, *args: Any, hyper_interval: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hyper_interval = hyper_interval

    def step(
        self,
        loss: Tensor,
        *,
        meta_loss: MetaLoss | None = None,
        meta_batch: MetaBatch | None = None,
    ) -> StepResult:
        _check_loss(loss)
        opt: RTHOSGD = self.optimizer  # type: ignore[assignment]
        due = (
            opt.param_groups[0]["hyper_lr"] > 0.0
            and (self.step_count + 1) % self.hyper_interval == 0
        )
        if due and meta_loss is None:
            raise ValueError(
                "rtho needs step(loss, meta_loss=...) returning a held-out loss "
                "at the current weights"
            )
        opt.zero_grad(set_to_none=True)
        hvps = opt.gradients_and_hvps(loss, clip_norm=self.grad_clip)
        grads = [p.grad for p in self.params if p.grad is not None]
        if not protocol.finite_step(loss, torch.nn.utils.get_total_norm(grads) if grads else None):
            return self._skip()
        self._last_lr = self._current_lr()
        opt.step(hvps=hvps)
        self.step_count += 1
        if not due:
            return StepResult(lr=self._last_lr)
        if not math.isfinite(float(loss.detach())):
            logger.warning("rtho: non-finite training loss; keeping lr=%g", self._current_lr())
            return StepResult(lr=self._last_lr)
        params = self.params
        trainable = [p for p in params if p.requires_grad]
        with torch.enable_grad():
            val = meta_loss()
        if not isinstance(val, Tensor) or val.numel() != 1 or not val.requires_grad:
            raise ValueError("meta_loss() must return a scalar loss tensor with its graph")
        if not math.isfinite(float(val.detach())):
            hypergrad = math.nan
        else:
            grads = torch.autograd.grad(val, trainable, allow_unused=True)
            by_id = {id(p): g for p, g in zip(trainable, grads, strict=True)}
            hypergrad = opt.hypergradient([by_id.get(id(p)) for p in params])
        opt.update_lr(hypergrad)
        return StepResult(lr=self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["counters"]["hyper_interval"] = self.hyper_interval
        return state


def _check_loss(loss: Any) -> None:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError("Schedule.step expects the scalar training loss tensor with its graph")
    if not loss.requires_grad:
        raise ValueError("the loss has no graph (requires_grad=False); pass it before .item()")


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _Ctx:
    name: str
    params: list
    lr: float
    momentum: float
    weight_decay: float
    total_steps: int
    steps_per_epoch: int
    grad_clip: float | None

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def beta1(self) -> float:
        """:func:`adam_beta1` of the momentum (logged where it falls back to 0.9)."""
        if not 0.0 < self.momentum < 1.0:
            logger.info("%s: momentum %g is no valid beta1; using 0.9", self.name, self.momentum)
        return adam_beta1(self.momentum)

    def common(self) -> dict[str, Any]:
        return dict(
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            grad_clip=self.grad_clip,
        )


@dataclass(frozen=True)
class _Spec:
    builder: Callable[..., Schedule]
    default_lr: float
    options: Mapping[str, Any]
    rate_of: str | None = None  # the optimizer whose base rate ``lr`` is (see base_rate_optimizer)


_REGISTRY: dict[str, _Spec] = {}


def _register(name: str, default_lr: float, *, rate_of: str | None = None,
              **options: Any) -> Callable:  # fmt: skip
    def deco(fn: Callable[..., Schedule]) -> Callable[..., Schedule]:
        _REGISTRY[name] = _Spec(fn, default_lr, dict(options), rate_of)
        return fn

    return deco


def names() -> list[str]:
    """Names accepted by :func:`build`, in documentation order.

    Example:
        >>> "cosine" in names()
        True
    """
    return list(_REGISTRY)


def _spec(name: str) -> _Spec:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(names())}") from None


def adam_beta1(momentum: float) -> float:
    """β1 of the Adam family and Schedule-Free's interpolation: the momentum if in (0, 1).

    Language-model recipes train with plain SGD (momentum 0), which is no valid β1 for
    Schedule-Free and turns Adam into RMSprop; there the libraries' default 0.9 is used.

    Example:
        >>> adam_beta1(0.95), adam_beta1(0.0)
        (0.95, 0.9)
    """
    return momentum if 0.0 < momentum < 1.0 else 0.9


def default_lr(name: str) -> float:
    """Learning rate (or step-size multiplier) used when ``lr=None``.

    Example:
        >>> default_lr("adam")
        0.001
    """
    return _spec(name).default_lr


def base_rate_optimizer(name: str, options: Mapping[str, Any] | None = None) -> str | None:
    """The optimizer whose base learning rate ``lr`` is for schedule ``name`` with ``options``:
    its ``optimizer`` option where it has one (the option's default unless given), else the
    one it trains with; ``None`` where ``lr`` is no such rate (Adam's coupled weight decay,
    L4's fraction, Schedule-Free's and Prodigy's rates, the faithful MLR-SNet's scale γ).
    A probe of that optimizer's rate (``mlrsnet train --lr probe``) can give it.

    Example:
        >>> base_rate_optimizer("cosine", {"optimizer": "adamw"}), base_rate_optimizer("sgdr")
        ('adamw', 'sgd')
        >>> base_rate_optimizer("prodigy") is None
        True
    """
    spec = _spec(name)
    if spec.rate_of is None:
        return None
    if "optimizer" in spec.options:
        return (options or {}).get("optimizer", spec.options["optimizer"])
    return spec.rate_of


def default_options(name: str) -> dict[str, Any]:
    """Method-specific options accepted by :func:`build` and their defaults.

    Example:
        >>> default_options("sgdr")
        {'T_0': 10, 'T_mult': 2, 'eta_min': 0.0}
    """
    return dict(_spec(name).options)


def build(
    name: str,
    params: Iterable[Tensor] | Iterable[dict],
    *,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    total_steps: int,
    steps_per_epoch: int,
    grad_clip: float | None = None,
    **options: Any,
) -> Schedule:
    """Build a baseline schedule/optimizer by name.

    Args:
        name: One of :func:`names`.
        params: Model parameters or parameter groups.
        lr: Base learning rate (peak lr for ``onecycle``, initial lr for
            ``hd``/``rtho``, the fraction alpha for ``l4``, the multiplier for
            ``prodigy``); ``None`` uses :func:`default_lr`.
        momentum: SGD momentum; beta1 for Adam-type methods and Schedule-Free's
            interpolation (0.9 instead where ``momentum`` is 0, as in language-model
            recipes: no valid beta1); the EMA decay of L4's estimators.
        weight_decay: L2 (coupled) or decoupled (``adamw``, ``prodigy``,
            ``schedulefree-adamw``) weight decay, as each source defines it.
        total_steps: Planned number of optimizer steps.
        steps_per_epoch: Optimizer steps per epoch (converts epoch-based
            settings to steps).
        grad_clip: Max global gradient norm before each step, or ``None``.
        **options: Method-specific options, see :func:`default_options`.

    Returns:
        The :class:`Schedule`.

    Raises:
        ValueError: Unknown name or an invalid value.
        TypeError: An option the method does not accept.

    Example:
        >>> model = torch.nn.Linear(4, 3)
        >>> s = build("multistep", model.parameters(), total_steps=100,
        ...           steps_per_epoch=10, milestones=(0.5,), gamma=0.1)
        >>> s.scheduler.milestones
        Counter({5: 1})
    """
    spec = _spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for schedule {name!r}; "
            f"accepted: {', '.join(spec.options) or 'none'}"
        )
    lr = spec.default_lr if lr is None else lr
    require(is_real(lr) and lr > 0.0, "lr", lr, "a finite number > 0")
    require(is_real(momentum) and 0.0 <= momentum < 1.0, "momentum", momentum, "in [0, 1)")
    require(is_real(weight_decay) and weight_decay >= 0.0, "weight_decay", weight_decay, ">= 0")
    require(is_int(total_steps) and total_steps >= 1, "total_steps", total_steps, "an int >= 1")
    require(
        is_int(steps_per_epoch) and steps_per_epoch >= 1,
        "steps_per_epoch",
        steps_per_epoch,
        "an int >= 1",
    )
    if grad_clip is not None:
        require(is_real(grad_clip) and grad_clip > 0.0, "grad_clip", grad_clip, "> 0 or None")
    params = list(params)
    if not params:
        raise ValueError("params is empty")
    ctx = _Ctx(
        name,
        params,
        float(lr),
        float(momentum),
        float(weight_decay),
        int(total_steps),
        int(steps_per_epoch),
        None if grad_clip is None else float(grad_clip),
    )
    opts = {**spec.options, **options}
    sched = spec.builder(ctx, **opts)
    logger.debug("built %r with options %s", sched, opts)
    return sched


def _sgd(ctx: _Ctx, nesterov: bool) -> torch.optim.SGD:
    boolean("nesterov", nesterov)
    return torch.optim.SGD(
        ctx.params,
        lr=ctx.lr,
        momentum=ctx.momentum,
        weight_decay=ctx.weight_decay,
        nesterov=nesterov,
    )


#: The optimizers a learning-rate shape (``cosine``, ``linear``, ``wsd``, ``onecycle``,
#: ``mlrsnet``) can drive through its ``optimizer`` option.
SHAPE_OPTIMIZERS = ("sgd", "adamw")


def _shape_optimizer(ctx: _Ctx, optimizer: str, nesterov: bool) -> torch.optim.Optimizer:
    """SGD (momentum, coupled L2) or AdamW (``betas=(beta1, 0.999)``, decoupled decay)."""
    require(optimizer in SHAPE_OPTIMIZERS, "optimizer", optimizer, f"one of {SHAPE_OPTIMIZERS}")
    if optimizer == "sgd":
        return _sgd(ctx, nesterov)
    require(not nesterov, "nesterov", nesterov, "False with optimizer='adamw'")
    return torch.optim.AdamW(
        ctx.params, lr=ctx.lr, betas=(ctx.beta1, 0.999), weight_decay=ctx.weight_decay
    )


def _lambda_schedule(ctx: _Ctx, optimizer: torch.optim.Optimizer, shape: Callable) -> Schedule:
    """A per-step ``LambdaLR`` whose multiplier is ``shape(step, total_steps)``."""
    total = ctx.total_steps
    sched = lrs.LambdaLR(optimizer, lambda step: shape(step, total))
    return Schedule(ctx.name, optimizer, sched, interval="step", **ctx.common())


def _fraction(name: str, value: Any, high: float = 1.0) -> float:
    require(is_real(value) and 0.0 <= value < high, name, value, f"a fraction in [0, {high:g})")
    return float(value)


# ------------------------------------------------------------ hand-designed
@_register("fixed", 0.1, rate_of="sgd", optimizer="sgd", nesterov=False)
def _build_fixed(ctx: _Ctx, *, optimizer: str, nesterov: bool) -> Schedule:
    r"""Constant learning rate: :math:`\eta_t = \eta_0`, momentum SGD or AdamW."""
    return Schedule(ctx.name, _shape_optimizer(ctx, optimizer, nesterov), **ctx.common())


@_register(
    "multistep",
    0.1,
    rate_of="sgd",
    milestones=(0.3, 0.6, 0.8),
    gamma=0.1,
    per_step=False,
    nesterov=False,
)
def _build_multistep(
    ctx: _Ctx, *, milestones: Any, gamma: float, per_step: bool, nesterov: bool
) -> Schedule:
    r"""Step decay :math:`\eta_t = \eta_0 \gamma^{|\{m \in M : m \le e\}|}` (torch MultiStepLR).

    Milestones are fractions of training, converted to epochs
    (``round(f * epochs)``, the scheduler stepped in :meth:`Schedule.epoch_end`)
    or, with ``per_step=True``, to steps (``round(f * total_steps)``).
    """
    try:
        fracs = [float(m) for m in milestones]
    except TypeError:
        raise ValueError(
            f"milestones must be a sequence of fractions, got {milestones!r}"
        ) from None
    require(
        bool(fracs) and all(0.0 < f < 1.0 for f in fracs) and fracs == sorted(fracs),
        "milestones",
        milestones,
        "a non-empty increasing sequence of fractions in (0, 1)",
    )
    require(is_real(gamma) and 0.0 < gamma <= 1.0, "gamma", gamma, "in (0, 1]")
    boolean("per_step", per_step)
    horizon = ctx.total_steps if per_step else ctx.epochs
    points = [max(1, round(f * horizon)) for f in fracs]
    opt = _sgd(ctx, nesterov)
    sched = lrs.MultiStepLR(opt, milestones=points, gamma=gamma)
    return Schedule(ctx.name, opt, sched, interval="step" if per_step else "epoch", **ctx.common())


@_register("exponential", 0.1, rate_of="sgd", gamma=None, final_factor=None, nesterov=False)
def _build_exponential(
    ctx: _Ctx, *, gamma: float | None, final_factor: float | None, nesterov: bool
) -> Schedule:
    r"""Per-epoch exponential decay :math:`\eta_e = \eta_0 \gamma^e` (torch ExponentialLR).

    ``gamma`` defaults to 0.95; alternatively ``final_factor`` sets
    :math:`\gamma = \text{final\_factor}^{1/\text{epochs}}` so that the lr has
    decayed by that total factor after training.
    """
    if gamma is not None and final_factor is not None:
        raise ValueError("give either gamma or final_factor, not both")
    if final_factor is not None:
        require(
            is_real(final_factor) and 0.0 < final_factor <= 1.0,
            "final_factor",
            final_factor,
            "in (0, 1]",
        )
        gamma = final_factor ** (1.0 / ctx.epochs)
    elif gamma is None:
        gamma = 0.95
    require(is_real(gamma) and 0.0 < gamma <= 1.0, "gamma", gamma, "in (0, 1]")
    opt = _sgd(ctx, nesterov)
    sched = lrs.ExponentialLR(opt, gamma=gamma)
    return Schedule(ctx.name, opt, sched, interval="epoch", **ctx.common())


@_register("cosine", 0.1, rate_of="sgd", eta_min=0.0, nesterov=False, warmup=0.0, optimizer="sgd")
def _build_cosine(
    ctx: _Ctx, *, eta_min: float, nesterov: bool, warmup: float, optimizer: str
) -> Schedule:
    r"""Cosine annealing per step (Loshchilov & Hutter 2017, torch CosineAnnealingLR).

    :math:`\eta_t = \eta_{\min} + \tfrac12(\eta_0-\eta_{\min})(1+\cos(\pi t/T))`
    with ``T = total_steps``. With ``warmup`` (a fraction of training) the lr first rises
    linearly (:func:`mlrsnet.shapes.cosine_decay`, as nanoGPT trains), then anneals over the
    remaining steps. ``optimizer`` is ``"sgd"`` or ``"adamw"``.
    """
    require(is_real(eta_min) and 0.0 <= eta_min <= ctx.lr, "eta_min", eta_min, "in [0, lr]")
    warmup = _fraction("warmup", warmup)
    opt = _shape_optimizer(ctx, optimizer, nesterov)
    if warmup == 0.0:
        sched = lrs.CosineAnnealingLR(opt, T_max=ctx.total_steps, eta_min=eta_min)
        return Schedule(ctx.name, opt, sched, interval="step", **ctx.common())
    floor = eta_min / ctx.lr

    def shape(step: int, total: int) -> float:
        if step < round(warmup * total):
            return shapes.cosine_decay(step, total, warmup=warmup)
        return floor + (1.0 - floor) * shapes.cosine_decay(step, total, warmup=warmup)

    return _lambda_schedule(ctx, opt, shape)


@_register("linear", 0.1, rate_of="sgd", warmup=0.0, optimizer="sgd", nesterov=False)
def _build_linear(ctx: _Ctx, *, warmup: float, optimizer: str, nesterov: bool) -> Schedule:
    r"""Linear decay to zero (optionally after a linear warmup): :func:`mlrsnet.shapes.linear_decay`.

    :math:`\eta_t = \eta_0 (1 - (t - W)/(T - W))` after ``W = round(warmup * T)`` warmup
    steps; the schedule Defazio et al. (2023, "When, why and how much? Adaptive learning
    rate scheduling by refinement") found to match or beat cosine.
    """
    warmup = _fraction("warmup", warmup)
    opt = _shape_optimizer(ctx, optimizer, nesterov)
    return _lambda_schedule(ctx, opt, lambda t, n: shapes.linear_decay(t, n, warmup=warmup))


@_register(
    "wsd", 0.1, rate_of="sgd", warmup=0.0, cooldown=0.2, power=0.5, optimizer="sgd", nesterov=False
)
def _build_wsd(
    ctx: _Ctx, *, warmup: float, cooldown: float, power: float, optimizer: str, nesterov: bool
) -> Schedule:
    r"""Warmup-stable-decay: hold the peak, then a ``1 - sqrt`` cooldown over the last 20 %.

    :func:`mlrsnet.shapes.warmup_stable_decay` (Hägele et al., NeurIPS 2024): linear warmup
    over ``warmup`` of training, the constant peak, then
    :math:`\eta_t = \eta_0 (1 - \sqrt{(t - T_c)/(T - T_c)})` from
    :math:`T_c = T - \text{round}(\text{cooldown}\cdot T)`.
    """
    warmup = _fraction("warmup", warmup)
    require(is_real(cooldown) and 0.0 <= cooldown <= 1.0, "cooldown", cooldown, "in [0, 1]")
    require(is_real(power) and power > 0.0, "power", power, "a number > 0")
    kw = {"warmup": warmup, "cooldown": cooldown, "power": float(power)}
    shapes.warmup_stable_decay(0, ctx.total_steps, **kw)  # checks
    opt = _shape_optimizer(ctx, optimizer, nesterov)
    return _lambda_schedule(ctx, opt, lambda t, n: shapes.warmup_stable_decay(t, n, **kw))


@_register("sgdr", 0.1, rate_of="sgd", T_0=10, T_mult=2, eta_min=0.0)
def _build_sgdr(ctx: _Ctx, *, T_0: int, T_mult: int, eta_min: float) -> Schedule:
    r"""SGDR warm restarts (Loshchilov & Hutter, ICLR 2017; torch CosineAnnealingWarmRestarts).

    :math:`\eta_t = \eta_{\min} + \tfrac12(\eta_0-\eta_{\min})(1+\cos(\pi T_{cur}/T_i))`,
    :math:`T_i = T_0 T_{mult}^i`. ``T_0`` is in epochs; the scheduler is
    stepped every batch with the period converted to steps, which equals the
    paper's fractional-epoch :math:`T_{cur}`.
    """
    require(is_int(T_0) and T_0 >= 1, "T_0", T_0, "an int >= 1 (epochs)")
    require(is_int(T_mult) and T_mult >= 1, "T_mult", T_mult, "an int >= 1")
    require(is_real(eta_min) and 0.0 <= eta_min <= ctx.lr, "eta_min", eta_min, "in [0, lr]")
    opt = _sgd(ctx, False)
    sched = lrs.CosineAnnealingWarmRestarts(
        opt, T_0=T_0 * ctx.steps_per_epoch, T_mult=T_mult, eta_min=eta_min
    )
    return Schedule(ctx.name, opt, sched, interval="step", **ctx.common())


@_register(
    "onecycle",
    0.1,
    rate_of="sgd",
    pct_start=0.3,
    anneal_strategy="cos",
    div_factor=25.0,
    final_div_factor=1e4,
    three_phase=False,
    cycle_momentum=True,
    base_momentum=0.85,
    max_momentum=0.95,
    optimizer="sgd",
)
def _build_onecycle(ctx: _Ctx, *, optimizer: str, **kw: Any) -> Schedule:
    r"""1cycle policy (Smith & Topin 2019; torch OneCycleLR) over ``total_steps``.

    ``lr`` is the peak; the lr rises from ``lr/div_factor`` to ``lr`` over
    ``pct_start`` of training and anneals to ``lr/(div_factor*final_div_factor)``.
    With ``cycle_momentum`` (torch's default) momentum cycles inversely
    between ``max_momentum`` and ``base_momentum``, overriding ``momentum`` (beta1 with
    ``optimizer="adamw"``).
    """
    require(
        is_real(kw["pct_start"]) and 0.0 < kw["pct_start"] < 1.0,
        "pct_start",
        kw["pct_start"],
        "in (0, 1)",
    )
    require(
        kw["anneal_strategy"] in ("cos", "linear"),
        "anneal_strategy",
        kw["anneal_strategy"],
        "'cos' or 'linear'",
    )
    for key in ("div_factor", "final_div_factor"):
        require(is_real(kw[key]) and kw[key] > 0.0, key, kw[key], "> 0")
    for key in ("three_phase", "cycle_momentum"):
        boolean(key, kw[key])
    opt = _shape_optimizer(ctx, optimizer, False)
    sched = lrs.OneCycleLR(opt, max_lr=ctx.lr, total_steps=ctx.total_steps, **kw)
    return Schedule(ctx.name, opt, sched, interval="step", **ctx.common())


@_register(
    "plateau", 0.1, rate_of="sgd", factor=0.25, patience=0, threshold=1e-4, cooldown=0, min_lr=0.0
)
def _build_plateau(
    ctx: _Ctx, *, factor: float, patience: int, threshold: float, cooldown: int, min_lr: float
) -> Schedule:
    r"""Validation-driven decay (torch ReduceLROnPlateau, mode ``min``).

    :math:`\eta \leftarrow \text{factor}\cdot\eta` whenever the validation
    loss given to :meth:`Schedule.epoch_end` has not improved (relative
    threshold) for more than ``patience`` epochs. The defaults (factor 0.25,
    patience 0) are the "divide the lr by 4 when validation perplexity stops
    improving" rule used by the language-model baselines (Zaremba et al. /
    Merity et al. style) that MLR-SNet compares with.
    """
    require(is_real(factor) and 0.0 < factor < 1.0, "factor", factor, "in (0, 1)")
    require(is_int(patience) and patience >= 0, "patience", patience, "an int >= 0")
    require(is_int(cooldown) and cooldown >= 0, "cooldown", cooldown, "an int >= 0")
    require(is_real(threshold) and threshold >= 0.0, "threshold", threshold, ">= 0")
    require(is_real(min_lr) and min_lr >= 0.0, "min_lr", min_lr, ">= 0")
    opt = _sgd(ctx, False)
    sched = lrs.ReduceLROnPlateau(
        opt,
        mode="min",
        factor=factor,
        patience=patience,
        threshold=threshold,
        cooldown=cooldown,
        min_lr=min_lr,
    )
    return Schedule(ctx.name, opt, sched, interval="plateau", **ctx.common())


# ------------------------------------------------------------ adaptive optimizers
@_register("adam", 1e-3, beta2=0.999, eps=1e-8, amsgrad=False)
def _build_adam(ctx: _Ctx, *, beta2: float, eps: float, amsgrad: bool) -> Schedule:
    """Adam (Kingma & Ba, ICLR 2015), fixed lr, coupled L2 weight decay."""
    boolean("amsgrad", amsgrad)
    opt = torch.optim.Adam(
        ctx.params,
        lr=ctx.lr,
        betas=(ctx.beta1, beta2),
        eps=eps,
        weight_decay=ctx.weight_decay,
        amsgrad=amsgrad,
    )
    return Schedule(ctx.name, opt, **ctx.common())


@_register("adamw", 1e-3, rate_of="adamw", beta2=0.999, eps=1e-8, amsgrad=False)
def _build_adamw(ctx: _Ctx, *, beta2: float, eps: float, amsgrad: bool) -> Schedule:
    """AdamW (Loshchilov & Hutter, ICLR 2019), fixed lr, decoupled weight decay."""
    boolean("amsgrad", amsgrad)
    opt = torch.optim.AdamW(
        ctx.params,
        lr=ctx.lr,
        betas=(ctx.beta1, beta2),
        eps=eps,
        weight_decay=ctx.weight_decay,
        amsgrad=amsgrad,
    )
    return Schedule(ctx.name, opt, **ctx.common())


# ------------------------------------------------------------ hypergradient / loss-based
@_register("hd", 0.1, rate_of="sgd", hyper_lr=1e-3, nesterov=False)
def _build_hd(ctx: _Ctx, *, hyper_lr: float, nesterov: bool) -> Schedule:
    r"""SGD-HD / SGDN-HD (Baydin et al., ICLR 2018).

    :math:`\alpha_t = \alpha_{t-1} + \beta g_t\cdot d_{t-1}`, see :class:`SGDHD`.
    """
    require(is_real(hyper_lr) and hyper_lr >= 0.0, "hyper_lr", hyper_lr, ">= 0")
    boolean("nesterov", nesterov)
    opt = SGDHD(
        ctx.params,
        lr=ctx.lr,
        hyper_lr=hyper_lr,
        momentum=ctx.momentum,
        nesterov=nesterov,
        weight_decay=ctx.weight_decay,
    )
    return _AdaptiveLRSchedule(ctx.name, opt, **ctx.common())


@_register("rtho", 0.1, rate_of="sgd", hyper_lr=1e-4, hyper_interval=1)
def _build_rtho(ctx: _Ctx, *, hyper_lr: float, hyper_interval: int) -> Schedule:
    r"""RTHO (Franceschi et al., ICML 2017), see :class:`RTHOSGD`.

    :math:`\eta \leftarrow \max(\eta - \beta\nabla E\cdot Z, 0)` every ``hyper_interval`` steps.
    """
    require(is_real(hyper_lr) and hyper_lr >= 0.0, "hyper_lr", hyper_lr, ">= 0")
    require(
        is_int(hyper_interval) and hyper_interval >= 1,
        "hyper_interval",
        hyper_interval,
        "an int >= 1",
    )
    opt = RTHOSGD(
        ctx.params,
        lr=ctx.lr,
        momentum=ctx.momentum,
        weight_decay=ctx.weight_decay,
        hyper_lr=hyper_lr,
    )
    return _RTHOSchedule(ctx.name, opt, hyper_interval=hyper_interval, **ctx.common())


@_register(
    "l4",
    0.15,
    direction="momentum",
    gamma=0.9,
    gamma0=0.75,
    tau=1000.0,
    eps=1e-12,
    beta2=0.999,
    adam_eps=1e-4,
)
def _build_l4(ctx: _Ctx, **kw: Any) -> Schedule:
    r"""L4Mom / L4Adam (Rolinek & Martius, NeurIPS 2018); ``lr`` is the fraction :math:`\alpha`.

    :math:`\eta_t = \alpha (L_t - \gamma L_{\min}) / (\hat g_t\cdot v_t + \epsilon)`.
    """
    opt = L4(ctx.params, alpha=ctx.lr, beta1=ctx.momentum, weight_decay=ctx.weight_decay, **kw)
    return _L4Schedule(ctx.name, opt, **ctx.common())


# ------------------------------------------------------------ schedule-free / parameter-free
def _sf_warmup_steps(ctx: _Ctx, warmup_steps: Any, warmup: Any) -> int:
    """The package's warmup in steps: ``warmup_steps``, or ``warmup`` as a fraction of training."""
    require(is_int(warmup_steps) and warmup_steps >= 0, "warmup_steps", warmup_steps, ">= 0")
    warmup = _fraction("warmup", warmup)
    if warmup and warmup_steps:
        raise ValueError("give either warmup_steps or warmup (a fraction), not both")
    return int(warmup_steps) or round(warmup * ctx.total_steps)


@_register("schedulefree-sgd", 1.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, warmup=0.0)
def _build_sf_sgd(
    ctx: _Ctx, *, warmup_steps: int, r: float, weight_lr_power: float, warmup: float
) -> Schedule:
    """Schedule-Free SGD (Defazio et al., NeurIPS 2024), ``schedulefree.SGDScheduleFree``.

    ``warmup`` gives the package's linear warmup as a fraction of training instead of steps.
    """
    import schedulefree

    opt = schedulefree.SGDScheduleFree(
        ctx.params,
        lr=ctx.lr,
        momentum=ctx.beta1,
        weight_decay=ctx.weight_decay,
        warmup_steps=_sf_warmup_steps(ctx, warmup_steps, warmup),
        r=r,
        weight_lr_power=weight_lr_power,
    )
    return _ScheduleFreeSchedule(ctx.name, opt, **ctx.common())


@_register(
    "schedulefree-adamw", 0.0025, warmup_steps=0, beta2=0.999, eps=1e-8, r=0.0,
    weight_lr_power=2.0, warmup=0.0,
)  # fmt: skip
def _build_sf_adamw(
    ctx: _Ctx, *, warmup_steps: int, beta2: float, eps: float, r: float, weight_lr_power: float,
    warmup: float,
) -> Schedule:  # fmt: skip
    """Schedule-Free AdamW (Defazio et al., NeurIPS 2024), ``schedulefree.AdamWScheduleFree``.

    ``warmup`` gives the package's linear warmup as a fraction of training instead of steps.
    """
    import schedulefree

    opt = schedulefree.AdamWScheduleFree(
        ctx.params,
        lr=ctx.lr,
        betas=(ctx.beta1, beta2),
        eps=eps,
        weight_decay=ctx.weight_decay,
        warmup_steps=_sf_warmup_steps(ctx, warmup_steps, warmup),
        r=r,
        weight_lr_power=weight_lr_power,
    )
    return _ScheduleFreeSchedule(ctx.name, opt, **ctx.common())


@_register(
    "prodigy",
    1.0,
    cosine=False,
    beta2=0.999,
    d_coef=1.0,
    d0=1e-6,
    decouple=True,
    use_bias_correction=False,
    safeguard_warmup=False,
    growth_rate=math.inf,
    eps=1e-8,
)
def _build_prodigy(ctx: _Ctx, *, cosine: bool, beta2: float, **kw: Any) -> Schedule:
    """Prodigy (Mishchenko & Defazio, ICML 2024), ``prodigyopt.Prodigy``; optional cosine."""
    from prodigyopt import Prodigy

    boolean("cosine", cosine)
    for key in ("decouple", "use_bias_correction", "safeguard_warmup"):
        boolean(key, kw[key])
    # prodigyopt prints a notice on construction; keep library output in logging.
    with contextlib.redirect_stdout(io.StringIO()) as out:
        opt = Prodigy(
            ctx.params,
            lr=ctx.lr,
            betas=(ctx.beta1, beta2),
            weight_decay=ctx.weight_decay,
            **kw,
        )
    if out.getvalue().strip():
        logger.debug("prodigyopt: %s", out.getvalue().strip())
    if cosine:
        sched = lrs.CosineAnnealingLR(opt, T_max=ctx.total_steps)
        return _ProdigySchedule(ctx.name, opt, sched, interval="step", **ctx.common())
    return _ProdigySchedule(ctx.name, opt, **ctx.common())


# ---------------------------------------------------------- learning-rate-free
def _zero_missing_gradients(params: list[Tensor]) -> None:
    """Give a parameter without a gradient (frozen, or unused this step) a zero one, for the
    packages that read every parameter's: a zero gradient adds nothing to their sums, but
    their weight decay then reaches it (torch's optimizers skip such a parameter)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)


class _DAdaptationSchedule(Schedule):
    """D-Adaptation: report the step size a step uses, ``d * lr`` (``d`` before the step;
    D-Adaptation SGD divides it by the first gradient's norm, ``g0_norm``)."""

    def _current_lr(self) -> float:
        group = self.optimizer.param_groups[0]
        return float(group["d"] * group["lr"] / group.get("g0_norm", 1.0))

    def _optimizer_step(self, loss: Tensor) -> float:
        group = self.optimizer.param_groups[0]
        if group["k"] == 0 and all(p.grad is None or not p.grad.any() for p in self.params):
            # the package divides by the first gradient's norm (ZeroDivisionError)
            logger.warning("%s: the first gradient is zero; the step is not taken", self.name)
            return self._current_lr()
        d = group["d"]
        self.optimizer.step()
        return float(d * group["lr"] / group.get("g0_norm", 1.0))


class _DoGSchedule(_AdaptiveLRSchedule):
    """DoG: report the step size ``eta`` the last step used (set inside ``step``)."""

    def _current_lr(self) -> float:
        eta = self.optimizer.param_groups[0].get("eta")
        return float(eta[0]) if eta else 0.0

    def _optimizer_step(self, loss: Tensor) -> float:
        _zero_missing_gradients(self.params)  # the package reads every parameter's gradient
        return super()._optimizer_step(loss)


class _MechanicSchedule(_AdaptiveLRSchedule):
    """Mechanic: report the base rate times the learned scale ``sum(s)`` after the step."""

    def _current_lr(self) -> float:
        state = self.optimizer.state.get("_mechanic")
        scale = 0.0 if state is None else float(torch.sum(state["s"]))
        return float(self.optimizer.param_groups[0]["lr"]) * scale

    def _optimizer_step(self, loss: Tensor) -> float:
        _zero_missing_gradients(self.params)  # its norms need a gradient of every parameter
        grad_mode = torch.is_grad_enabled()
        try:
            return super()._optimizer_step(loss)
        finally:  # the package turns gradients off and back on only when its step returns
            torch.set_grad_enabled(grad_mode)

    def state_dict(self) -> dict[str, Any]:
        """:meth:`Schedule.state_dict`, Mechanic's per-parameter references keyed by their
        index (the package keys them by the parameter tensors, which a new model does not
        share)."""
        state = super().state_dict()
        optimizer_state = dict(state["optimizer"]["state"])
        if "_mechanic" in optimizer_state:
            index = {id(p): i for i, p in enumerate(self.params)}
            optimizer_state["_mechanic"] = {
                (f"{_PARAM_KEY}{index[id(k)]}" if isinstance(k, Tensor) else k): v
                for k, v in optimizer_state["_mechanic"].items()
            }
        state["optimizer"] = {**state["optimizer"], "state": optimizer_state}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        saved = self.optimizer.state.get("_mechanic")
        if saved is not None:
            params = self.params
            self.optimizer.state["_mechanic"] = {
                (params[int(k[len(_PARAM_KEY):])]
                 if isinstance(k, str) and k.startswith(_PARAM_KEY) else k): copy.deepcopy(v)
                for k, v in saved.items()
            }  # fmt: skip


#: The prefix of a parameter's index in Mechanic's saved state.
_PARAM_KEY = "param:"


@_register("dadaptation-sgd", 1.0, d0=1e-6, growth_rate=math.inf)
def _build_dadaptation_sgd(ctx: _Ctx, *, d0: float, growth_rate: float) -> Schedule:
    """D-Adaptation SGD (Defazio & Mishchenko, ICML 2023), ``dadaptation.DAdaptSGD``: ``lr``
    multiplies the estimated step size (1.0, the package's default); the task's momentum and
    weight decay."""
    from dadaptation import DAdaptSGD

    opt = DAdaptSGD(ctx.params, lr=ctx.lr, momentum=ctx.momentum, weight_decay=ctx.weight_decay,
                    d0=d0, growth_rate=growth_rate)  # fmt: skip
    return _DAdaptationSchedule(ctx.name, opt, **ctx.common())


@_register("dadaptation-adam", 1.0, beta2=0.999, eps=1e-8, decouple=True, d0=1e-6,
           growth_rate=math.inf)  # fmt: skip
def _build_dadaptation_adam(
    ctx: _Ctx, *, beta2: float, eps: float, decouple: bool, d0: float, growth_rate: float
) -> Schedule:
    """D-Adaptation Adam, ``dadaptation.DAdaptAdam``: decoupled weight decay (AdamW's) unless
    ``decouple=False``; ``lr`` multiplies the estimated step size."""
    from dadaptation import DAdaptAdam

    boolean("decouple", decouple)
    with contextlib.redirect_stdout(io.StringIO()) as out:  # it prints its weight decay kind
        opt = DAdaptAdam(ctx.params, lr=ctx.lr, betas=(ctx.beta1, beta2), eps=eps,
                         weight_decay=ctx.weight_decay, decouple=decouple, d0=d0,
                         growth_rate=growth_rate)  # fmt: skip
    if out.getvalue().strip():
        logger.debug("dadaptation: %s", out.getvalue().strip())
    return _DAdaptationSchedule(ctx.name, opt, **ctx.common())


@_register("dog", 1.0, reps_rel=1e-6, eps=1e-8)
def _build_dog(ctx: _Ctx, *, reps_rel: float, eps: float) -> Schedule:
    """DoG, distance over gradients (Ivgi, Hinder & Carmon, ICML 2023), ``dog.DoG``: plain SGD
    whose step size is the largest distance from the start over the root of the summed squared
    gradient norms; ``lr`` multiplies it (1.0, the package's default). The last iterate is
    evaluated (the package's ``PolynomialDecayAverager`` is not used)."""
    from dog import DoG

    opt = DoG(ctx.params, reps_rel=reps_rel, lr=ctx.lr, weight_decay=ctx.weight_decay, eps=eps)
    return _DoGSchedule(ctx.name, opt, **ctx.common())


@_register("mechanic", 0.1, rate_of="sgd", optimizer="sgd", nesterov=False, s_decay=0.01,
           s_init=1e-8)  # fmt: skip
def _build_mechanic(
    ctx: _Ctx, *, optimizer: str, nesterov: bool, s_decay: float, s_init: float
) -> Schedule:
    """Mechanic (Cutkosky, Defazio & Mehta, NeurIPS 2023), ``mechanic_pytorch.mechanize``: the
    task's optimizer (SGD or AdamW) at ``lr``, its updates scaled by a learned factor that
    starts at ``s_init`` (the package's defaults)."""
    from mechanic_pytorch import mechanize

    require(optimizer in SHAPE_OPTIMIZERS, "optimizer", optimizer, f"one of {SHAPE_OPTIMIZERS}")
    boolean("nesterov", nesterov)
    tune = {"s_decay": s_decay, "s_init": s_init, "log_func": lambda data: None}
    if optimizer == "sgd":
        opt = mechanize(torch.optim.SGD, **tune)(
            ctx.params, lr=ctx.lr, momentum=ctx.momentum, weight_decay=ctx.weight_decay,
            nesterov=nesterov,
        )  # fmt: skip
    else:
        require(not nesterov, "nesterov", nesterov, "False with optimizer='adamw'")
        opt = mechanize(torch.optim.AdamW, **tune)(
            ctx.params, lr=ctx.lr, betas=(ctx.beta1, 0.999), weight_decay=ctx.weight_decay
        )
    return _MechanicSchedule(ctx.name, opt, **ctx.common())


# ------------------------------------------------------------------- MLR-SNet
class _MLRSNetSchedule(Schedule):
    """MLR-SNet transfer: SGD whose per-step lr is ``γ · A(loss)`` (``MLRSNetLR``)."""

    def _optimizer_step(self, loss: Tensor) -> float:
        self.scheduler.step(loss.detach())
        lr = self._current_lr()
        self.optimizer.step()
        return lr


@_register("mlrsnet", 0.1, network=None, on_stage_start=None, loss_scale=1.0, nesterov=False,
           stage_scale=None, num_classes=None, language_model=False,
           optimizer="sgd")  # fmt: skip
def _build_mlrsnet(
    ctx: _Ctx,
    *,
    network: Any,
    on_stage_start: Any,
    loss_scale: float,
    nesterov: bool,
    stage_scale: str | None,
    num_classes: int | None,
    language_model: bool,
    optimizer: str,
) -> Schedule:
    r"""MLR-SNet (Shu et al., TPAMI 2022): :math:`\eta_t = \gamma \, A(f_t; \theta)`.

    ``network`` is a shipped name or path (see :func:`mlrsnet.hub.resolve`), a
    :class:`~mlrsnet.hub.ScheduleBundle` (its snapshots become stages), or an
    :class:`~mlrsnet.MLRSNet`. ``lr`` is the scale ``γ`` — use
    :func:`mlrsnet.paper_gamma` for zero tuning; ``on_stage_start`` may return a
    new ``γ`` when a snapshot takes over, or ``stage_scale`` names a policy
    (``"fixed"``, ``"paper"``, ``"paper-guarded"``, with ``num_classes`` and
    ``language_model``), and the network reads ``loss / loss_scale`` (see
    :class:`~mlrsnet.MLRSNetLR`). ``optimizer="adamw"`` drives AdamW instead of the paper's
    SGD (``γ`` is then AdamW's peak rate; the paper's scale rule does not apply).
    """
    from mlrsnet.hub import ScheduleBundle, resolve
    from mlrsnet.net import MLRSNet
    from mlrsnet.scheduler import MLRSNetLR

    if network is None:
        raise ValueError("mlrsnet needs network=<shipped name, path, ScheduleBundle or MLRSNet>")
    bundle = resolve(network) if isinstance(network, str) else network
    if stage_scale is not None and optimizer != "sgd":
        raise ValueError(f"stage_scale={stage_scale!r} is the paper's rule for SGD only")
    optimizer = _shape_optimizer(ctx, optimizer, nesterov)
    if isinstance(bundle, MLRSNet):
        scheduler = MLRSNetLR(optimizer, bundle, loss_scale=loss_scale)
    elif isinstance(bundle, ScheduleBundle):
        scheduler = MLRSNetLR(
            optimizer,
            stages=bundle.stages(),
            total_steps=ctx.total_steps,
            on_stage_start=on_stage_start,
            loss_scale=loss_scale,
            stage_scale=stage_scale,
            num_classes=num_classes,
            language_model=language_model,
        )
    else:
        raise TypeError(
            f"mlrsnet: network must be a name, path, ScheduleBundle or MLRSNet, got {bundle!r}"
        )
    return _MLRSNetSchedule(ctx.name, optimizer, scheduler, interval="loss", **ctx.common())


# ------------------------------------------------------------------- MLR-SNet+
class _PlusSchedule(_MLRSNetSchedule):
    """MLR-SNet+; a network that reads a validation loss is given the epoch's at its end."""

    @property
    def needs_val_loss(self) -> bool:  # type: ignore[override]
        return self.scheduler.net.reads_validation and not self.scheduler.progress_only

    def epoch_end(self, val_loss: float | None = None) -> dict[str, Any]:
        out = super().epoch_end(val_loss)
        if self.needs_val_loss:
            if val_loss is None:
                raise ValueError(f"schedule {self.name!r} reads a validation loss: "
                                 "epoch_end(val_loss=...)")  # fmt: skip
            self.scheduler.observe_validation(float(val_loss))
        return out


@_register(
    "mlrsnet-plus",
    0.1,
    rate_of="sgd",
    network=None,
    optimizer="sgd",
    nesterov=False,
    progress_only=False,
    peak=None,
)
def _build_plus(
    ctx: _Ctx,
    *,
    network: Any,
    optimizer: str,
    nesterov: bool,
    progress_only: bool,
    peak: float | None,
) -> Schedule:
    r"""MLR-SNet+ (:mod:`mlrsnet.plus`): :math:`\eta_t = \eta_0 \, m_\theta(t/T, \text{loss shape})`.

    ``lr`` is the base (peak) rate: the task's, or the probe's; ``network`` a
    :class:`~mlrsnet.plus.PlusNet`, a shipped network's name or the path of a saved one
    (:func:`mlrsnet.plus.resolve`). Any optimizer of
    :data:`SHAPE_OPTIMIZERS`; the network reads the loss before each optimizer step.
    ``progress_only`` holds the loss inputs at 0 (the ablation); ``peak`` bounds the rate at
    that multiple of ``lr`` (``1.0``: ``lr`` is the peak; ``None``: the bound the network
    declares, or its own; ``math.inf``: no bound). A network that reads a validation loss is given the epoch's
    validation loss at every epoch end (``needs_val_loss``).
    """
    from mlrsnet import plus

    if isinstance(network, (str, os.PathLike)):
        network = plus.resolve(network)[0]
    if not isinstance(network, plus.PlusNet):
        raise ValueError(f"mlrsnet-plus needs network=<PlusNet, name or path>, got {network!r}")
    opt = _shape_optimizer(ctx, optimizer, nesterov)
    boolean("progress_only", progress_only)
    scheduler = plus.MLRSNetPlusLR(opt, network, ctx.total_steps, progress_only=progress_only,
                                   peak=peak)  # fmt: skip
    return _PlusSchedule(ctx.name, opt, scheduler, interval="loss", **ctx.common())
