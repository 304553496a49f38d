"""The mechanism of a learning-rate scheduler driven by the training loss.

:class:`LossDrivenLR` is what :class:`~mlrsnet.MLRSNetLR` and
:class:`~mlrsnet.plus.MLRSNetPlusLR` share; each keeps only its maths (:meth:`_read_loss`:
one loss in, the new rates' state out; :meth:`_rate`: a group's rate). The base does the rest:

- **two orders**: ``step(loss)`` before ``optimizer.step()`` (the paper's: this step's loss
  sets this step's rate), or ``observe(loss)`` and ``step()`` after ``optimizer.step()``
  (torch's: the rate of the next step); several ``observe`` calls before one ``step()``
  (gradient accumulation) are averaged; giving a loss to ``step`` while observed ones wait is
  refused;
- **checking** the loss (a number or a one-element tensor; :func:`check_loss`);
- **the mean over** ``torch.distributed`` **ranks**, so that every rank sets the same rate;
- **reading the loss without blocking** (``loss_lag=k``, :class:`LaggedLosses`): the loss is
  copied to host memory without waiting for the device and read ``k`` steps later, so that a
  training loop on a GPU never waits for the scheduler. The rates are exactly the reference's
  (``loss_lag=0``, the same losses) ``k`` steps later: the rate of step ``t`` is the
  reference's rate of step ``t - k``, and the first ``k`` steps run at the initial rate;
- **applying** the rates to the optimizer's groups (float or tensor ``lr``), and the checked
  state of the losses that wait to be read (:meth:`_waiting_state`).

Example:
    >>> import torch
    >>> from mlrsnet.plus import MLRSNetPlusLR, PlusNet
    >>> net = PlusNet()
    >>> def rates(lag):
    ...     optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    ...     scheduler = MLRSNetPlusLR(optimizer, net, total_steps=10, loss_lag=lag)
    ...     out = []
    ...     for loss in (2.0, 1.5, 1.2, 1.0):
    ...         scheduler.step(torch.tensor(loss)); out.append(scheduler.get_last_lr()[0])
    ...     return out
    >>> now, lagged = rates(0), rates(1)
    >>> lagged[1:] == now[:-1]  # one step later, exactly
    True
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["LaggedLosses", "LossDrivenLR", "check_loss", "in_distributed_run", "mean_over_ranks"]

logger = logging.getLogger(__name__)


def check_loss(loss: Any, method: str, owner: str) -> None:
    """Refuse what a loss-driven scheduler cannot read: anything but a number or a one-element
    tensor.

    Args:
        loss: The value given.
        method: The method it was given to (for the message).
        owner: The scheduler's class name (for the message).

    Raises:
        TypeError: For a bool, a string, a list, an array, ...
        ValueError: For a tensor of more or fewer than one element.

    Example:
        >>> check_loss(torch.ones(2), "step", "MyLR")
        Traceback (most recent call last):
        ValueError: MyLR.step(loss): the loss must be a scalar, got shape (2,)
    """
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"{owner}.{method}(loss): the loss must be a scalar, got shape {tuple(loss.shape)}"
            )
    elif isinstance(loss, bool) or not isinstance(loss, (int, float)):
        raise TypeError(
            f"{owner}.{method}(loss): the loss must be a float or a tensor, got {type(loss).__name__}"
        )


def in_distributed_run() -> bool:
    """Whether a ``torch.distributed`` process group of several ranks is initialised."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_over_ranks(loss: Tensor | float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The mean of ``loss`` over the ranks of the default process group, a 0-d tensor of
    ``dtype`` on ``device`` (an all-reduce: every rank must call it)."""
    dist = torch.distributed
    value = torch.as_tensor(loss, dtype=dtype).reshape(()).to(device, copy=True)
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


class LaggedLosses:
    """Losses read ``lag`` steps after they are given, copied to the host without blocking.

    :meth:`push` starts a non-blocking copy of the loss into host memory (pinned, with an
    event, for a CUDA tensor) and returns the loss pushed ``lag`` pushes earlier as a float,
    or ``None`` while fewer have been pushed. By then the device has long finished that copy:
    its event is checked (``query``) and waited on only if it has not (:attr:`num_waits`
    counts those), so the host never stops the device's queue. A CPU tensor or a number is
    held as it is: the same arithmetic, which makes the logic testable on any machine.

    Args:
        lag: Steps between giving a loss and reading it (``>= 1``).
        device: Where the losses will live: for a CUDA device, ``lag + 1`` pinned host
            buffers and their events are made now, and reused, so that no step allocates.

    Example:
        >>> lagged = LaggedLosses(2)
        >>> [lagged.push(torch.tensor(v)) for v in (1.0, 2.0, 3.0, 4.0)]
        [None, None, 1.0, 2.0]
        >>> lagged.waiting()
        [3.0, 4.0]
    """

    def __init__(self, lag: int, device: torch.device | str | None = None) -> None:
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1:
            raise ValueError(f"lag must be an int >= 1, got {lag!r}")
        self.lag = lag
        self.num_waits = 0
        self._queue: deque[tuple[Tensor | float, Any]] = deque()
        self._free: deque[tuple[Tensor, Any]] = deque()
        if device is not None and torch.device(device).type == "cuda":
            for _ in range(lag + 1):
                host = torch.empty((), dtype=torch.float64, pin_memory=True)
                self._free.append((host, torch.cuda.Event()))

    def push(self, loss: Tensor | float) -> float | None:
        """Start reading ``loss``; the loss pushed ``lag`` pushes ago (a float), or ``None``."""
        self._queue.append(self._start_copy(loss))
        if len(self._queue) <= self.lag:
            return None
        value, event = self._queue.popleft()
        loss = self._finish(value, event)
        if event is not None:  # its copy is done: the buffer takes a later loss
            self._free.append((value, event))
        return loss

    def waiting(self) -> list[float]:
        """The losses pushed and not read yet, oldest first (waits for their copies)."""
        return [self._finish(value, event) for value, event in self._queue]

    def restore(self, losses: list[float]) -> None:
        """Make ``losses`` (oldest first, at most ``lag``) the ones waiting to be read."""
        if len(losses) > self.lag:
            raise ValueError(f"{len(losses)} waiting losses for a lag of {self.lag}")
        self._queue = deque((float(v), None) for v in losses)

    def _start_copy(self, loss: Tensor | float) -> tuple[Tensor | float, Any]:
        if not isinstance(loss, Tensor):
            return float(loss), None
        loss = loss.detach().reshape(())
        if loss.device.type != "cuda":
            return loss.to("cpu", torch.float64, copy=True), None
        if self._free:
            host, event = self._free.popleft()
        else:  # a CUDA loss the constructor was not told of
            host, event = torch.empty((), dtype=torch.float64, pin_memory=True), torch.cuda.Event()
        host.copy_(loss.to(torch.float64), non_blocking=True)
        event.record()
        return host, event

    def _finish(self, value: Tensor | float, event: Any) -> float:
        if event is not None and not event.query():
            self.num_waits += 1
            event.synchronize()
        return value.item() if isinstance(value, Tensor) else value


class LossDrivenLR(LRScheduler):
    """A ``torch.optim.lr_scheduler.LRScheduler`` whose rates follow the training loss.

    The subclass calls :meth:`_init_loss_reading` before ``LRScheduler.__init__`` and
    implements :meth:`_read_loss` (its maths, on one loss) and :meth:`_rate` (a group's rate
    from its base rate); see the module's docstring for what the base does.
    """

    #: Whether ``step()`` with no loss ever observed keeps the rate (``True``) or is refused
    #: as a missing loss (``False``).
    keeps_rate_without_loss: bool = False

    def _init_loss_reading(
        self,
        *,
        device: torch.device,
        distributed: bool | None,
        loss_lag: int,
        host_losses: bool,
        mean_dtype: torch.dtype,
    ) -> None:
        """Set up the loss reading.

        Args:
            device: Where the optimizer's parameters live (the DDP mean is taken there).
            distributed: Average over ranks (``None``: when a group of several ranks is
                initialised, decided on first use).
            loss_lag: Steps between a loss and its reading (0: now).
            host_losses: Read losses as host floats (the maths runs on the host); otherwise a
                tensor loss stays a tensor on its device.
            mean_dtype: The dtype of the mean over ranks.
        """
        if isinstance(loss_lag, bool) or not isinstance(loss_lag, int) or loss_lag < 0:
            raise ValueError(
                f"{type(self).__name__}: loss_lag must be an int >= 0, got {loss_lag!r}"
            )
        self.device = device
        self.distributed = distributed
        self.loss_lag = loss_lag
        self._host_losses = host_losses
        self._mean_dtype = mean_dtype
        self._lagged = LaggedLosses(loss_lag, device) if loss_lag else None
        # torch's order: the losses observed since the last step (one as given, several as a
        # float64 sum), and whether observe() was ever called (step() then keeps the rate)
        self._observed: Tensor | float | None = None
        self._observed_count = 0
        self._observes = False

    # -- the subclass's maths ---------------------------------------------------------------

    def _read_loss(self, loss: Tensor | float) -> None:
        """Advance the schedule by one loss (a float, or a tensor when not ``host_losses``)."""
        raise NotImplementedError

    def _rate(self, base: float | Tensor) -> float | Tensor:
        """The rate now of a group whose base rate is ``base``."""
        raise NotImplementedError

    def _constructor_step(self) -> bool:
        """Whether this ``step()`` is ``LRScheduler.__init__``'s (the rates are then applied; a
        subclass may set its counters here)."""
        return bool(getattr(self, "_is_initial", False))

    def _count_step(self) -> None:
        """Advance the step counters after a loss was read."""
        self.last_epoch += 1
        self._step_count += 1

    def _before_read(self) -> None:
        """Called before each loss is read (stages start here)."""

    # -- the torch protocol -------------------------------------------------------------

    def step(self, loss: Tensor | float | None = None) -> None:  # type: ignore[override]
        """Read a training loss and set every group's learning rate.

        ``step(loss)`` (the paper's order, before ``optimizer.step()``) reads this step's loss
        and sets this step's learning rate. ``step()`` (torch's order, after
        ``optimizer.step()``) reads the loss given to :meth:`observe` (the mean of several) and
        sets the next step's learning rate; with nothing observed since the last step it keeps
        the learning rate and the state. With ``loss_lag=k`` the loss read is the one given
        ``k`` steps earlier.

        Args:
            loss: The training loss of this step: a float or a one-element tensor (it is
                detached; nothing is back-propagated into it).

        Raises:
            TypeError: If ``loss`` is not a number or tensor (or, for a scheduler that does
                not keep its rate without a loss, is missing and none was ever observed).
            ValueError: If ``loss`` has more than one element.
            RuntimeError: If ``loss`` is given while observed losses wait to be read.
        """
        if loss is None:
            if self._constructor_step():
                self._apply_lrs()
                return
            if self._observed_count == 0:
                self._step_without_loss()
                return
            loss = self._take_observed()
        else:
            check_loss(loss, "step", type(self).__name__)
            if self._observed_count:
                raise RuntimeError(
                    f"{type(self).__name__}.step(loss): a loss observed with observe() waits to be read by step(); "
                    "use one order: step(loss), or observe(loss) then step()"
                )
        if self.distributed or (self.distributed is None and self.reads_mean_over_ranks()):
            loss = mean_over_ranks(loss, self.device, self._mean_dtype)
        if self._lagged is not None:
            loss = self._lagged.push(loss)
            if loss is None:  # nothing given loss_lag steps ago: the initial rate stays
                return
        elif self._host_losses and isinstance(loss, Tensor):
            loss = loss.item()
        self._before_read()
        self._read_loss(loss)
        self._count_step()
        self._apply_lrs()

    def _step_without_loss(self) -> None:
        if self._observes or self.keeps_rate_without_loss:
            if not hasattr(self, "_last_lr"):  # constructed to resume (last_epoch >= 0)
                self._apply_lrs()
            logger.debug("%s: step() with no loss observed: lr kept", type(self).__name__)
            return
        raise TypeError(
            f"{type(self).__name__}.step() needs this step's training loss: "
            "scheduler.step(loss) before optimizer.step(), or scheduler.observe(loss) before a "
            "step() after optimizer.step() (torch's order; see docs/integrations.md)"
        )

    def observe(self, loss: Tensor | float) -> None:
        """Record a training loss for the next :meth:`step` without stepping (torch's order).

        Call it after ``backward`` and before (or after) ``optimizer.step()``; the ``step()``
        that follows ``optimizer.step()`` sets the next step's learning rate from this loss.
        Losses observed several times before one ``step()`` (gradient accumulation: once per
        micro-batch) are averaged. Give the loss as trained, not scaled by a ``GradScaler``
        nor divided for accumulation.

        Args:
            loss: A training loss: a float or a one-element tensor (it is detached; where the
                schedule reads host numbers without a lag its value is read now, elsewhere it
                stays on its device).

        Raises:
            TypeError: If ``loss`` is not a number or tensor.
            ValueError: If ``loss`` has more than one element.

        Example:
            >>> from mlrsnet import MLRSNet, MLRSNetLR
            >>> net = MLRSNet()
            >>> def scheduler():
            ...     return MLRSNetLR(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1), net)
            >>> a, b = scheduler(), scheduler()
            >>> a.observe(torch.tensor(2.0)); a.observe(4.0); a.step()  # accumulation: the mean
            >>> b.observe(3.0); b.step()
            >>> a.get_last_lr() == b.get_last_lr()
            True
        """
        check_loss(loss, "observe", type(self).__name__)
        if isinstance(loss, Tensor):
            loss = loss.detach()
            loss = loss.item() if self._host_losses and self._lagged is None else loss.clone()
        else:
            loss = float(loss)
        if self._observed_count == 0:
            self._observed = loss  # one loss is read as given: bit-identical to step(loss)
        elif isinstance(loss, float) and isinstance(self._observed, float):
            self._observed += loss
        else:
            self._observed = _as_sum(self._observed) + _as_sum(loss)
        self._observed_count += 1
        self._observes = True

    def mark_observing(self) -> None:
        """Declare that losses come through :meth:`observe` (torch's order) from now on, so a
        ``step()`` with none observed keeps the rate instead of being refused (a trainer that
        steps the scheduler before the first loss arrives)."""
        self._observes = True

    @property
    def observed_count(self) -> int:
        """How many losses :meth:`observe` recorded that no :meth:`step` has read yet."""
        return self._observed_count

    @property
    def num_lag_waits(self) -> int:
        """How often a lagged loss's copy was not finished when read (0 without a lag)."""
        return 0 if self._lagged is None else self._lagged.num_waits

    def _take_observed(self) -> Tensor | float:
        loss, count = self._observed, self._observed_count
        assert loss is not None
        self._observed, self._observed_count = None, 0
        return loss if count == 1 else loss / count

    def reads_mean_over_ranks(self) -> bool:
        """Whether the schedule reads the loss averaged over ``torch.distributed`` ranks.

        ``distributed=None`` is decided on first use: a process group of several ranks.
        """
        if self.distributed is None:
            self.distributed = in_distributed_run()
        return self.distributed

    def _apply_lrs(self) -> None:
        last = []
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            value = self._rate(base)
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(value)
                last.append(group["lr"].clone())
            else:
                group["lr"] = float(value)
                last.append(group["lr"])
        self._last_lr = last

    # -- state --------------------------------------------------------------------------

    def _waiting_state(self) -> dict[str, Any]:
        """The losses that wait to be read, as tensors and numbers: the observed ones (one
        value, or their sum, and their count), whether losses come through ``observe``, and
        the lagged ones (``lagged_losses``, oldest first)."""
        lagged = [] if self._lagged is None else self._lagged.waiting()
        return {
            "observed_loss": _saved_observed(self._observed),
            "observed_count": self._observed_count,
            "observes": self._observes,
            "lagged_losses": torch.tensor(lagged, dtype=torch.float64),
        }

    def _check_waiting_state(self, state: dict[str, Any], where: str) -> dict[str, Any]:
        """Check :meth:`_waiting_state`'s entries of ``state`` (absent ones: nothing waits);
        return them as :meth:`_restore_waiting` takes them.

        Raises:
            ValueError: For a count without its loss, or more lagged losses than the lag.
        """
        count = state.get("observed_count", 0)
        if isinstance(count, Tensor) and count.numel() == 1 and not count.is_floating_point():
            count = count.item()
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{where}: observed_count must be an integer >= 0, got {count!r}")
        observed = state.get("observed_loss")
        if count and not (
            isinstance(observed, Tensor) and observed.numel() == 1 and observed.is_floating_point()
        ):  # a pending loss may be non-finite: step() skips it as it would have
            raise ValueError(f"{where}: observed_count without one observed_loss")
        lagged = state.get("lagged_losses", torch.zeros(0))
        if not (isinstance(lagged, Tensor) and lagged.dim() == 1 and lagged.is_floating_point()):
            raise ValueError(f"{where}: lagged_losses must be a 1-d float tensor, got {lagged!r}")
        if lagged.numel() > self.loss_lag:
            raise ValueError(
                f"{where}: {lagged.numel()} lagged losses saved for loss_lag={self.loss_lag}"
            )
        return {"count": count, "observed": observed, "observes": bool(state.get("observes", False)),
                "lagged": lagged.tolist()}  # fmt: skip

    def _restore_waiting(self, checked: dict[str, Any]) -> None:
        """Restore what :meth:`_check_waiting_state` returned."""
        self._observed_count = checked["count"]
        self._observed = None
        if checked["count"]:
            saved = checked["observed"].detach().reshape(()).clone()
            host = self._host_losses and self._lagged is None
            self._observed = saved.item() if host else saved.to(self.device)
        self._observes = checked["observes"]
        if self._lagged is not None:
            self._lagged.restore(checked["lagged"])


def _as_sum(loss: Tensor | float) -> Tensor | float:
    """A loss as a term of a sum of observed losses: float64 (float32 on MPS, which lacks it)."""
    if not isinstance(loss, Tensor):
        return loss
    dtype = torch.float32 if loss.device.type == "mps" else torch.float64
    return loss.reshape(()).to(dtype)


def _saved_observed(observed: Tensor | float | None) -> Tensor:
    """The pending observed loss for a state dict: ``[]`` when none, ``[value]`` in its dtype."""
    if observed is None:
        return torch.zeros(0, dtype=torch.float64)
    if isinstance(observed, Tensor):
        return observed.detach().reshape(1).clone()
    return torch.tensor([observed], dtype=torch.float64)
