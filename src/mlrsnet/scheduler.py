"""``MLRSNetLR``: a loss-driven ``torch.optim.lr_scheduler.LRScheduler``."""

from __future__ import annotations

import logging
import math
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from mlrsnet.functional import STAGE_SCALES, State, mlrsnet_forward, stage_gamma
from mlrsnet.lossdriven import LossDrivenLR, mean_over_ranks
from mlrsnet.net import MLRSNet

__all__ = ["MLRSNetLR", "StageHook"]

logger = logging.getLogger(__name__)

#: ``hook(stage_index, scheduler) -> new scale(s) or None``, called when a stage starts.
StageHook = Callable[[int, "MLRSNetLR"], "float | Sequence[float] | None"]


_version = operator.attrgetter("_version")

#: The numpy path treats a loss beyond this magnitude like a non-finite one, which
#: keeps every float64 intermediate finite without a check per element.
MAX_FAST_LOSS = 1e200
#: The factor (so the learning rate is 0) when the loss of the very first step, or of every
#: step so far, is not finite: there is no finite rate to keep yet, and 0 is the one rate that
#: is safe whatever the loss surface (``γ`` itself, the factor before any step, can be far
#: too large where the loss is already diverging).
NONFINITE_FIRST_FACTOR = 0.0
#: Decay of the training-loss average that ``stage_scale`` reads: about the last 50 steps.
LOSS_AVERAGE_DECAY = 0.98


class _NumpyNet:
    """A frozen float64 copy of an :class:`MLRSNet` in numpy, for a fast CPU step.

    Same maths as :func:`mlrsnet.functional.mlrsnet_forward`, rearranged so that
    a step is a dozen numpy calls: the two gate MLPs of a layer become one
    block-diagonal product with the biases folded in (the input vector carries a
    constant 1), and each sigmoid is written ``σ(z) = ½ + ½ tanh(z/2)`` with the
    halves folded into the weights, so one ``tanh`` covers all four gates.

    The LSTM state lives inside the input vectors ``rows`` (``[layers, 2H+1]``:
    layer input, hidden state, constant 1) and in ``c``; the scheduler exposes
    torch views of them.
    """

    def __init__(self, net: MLRSNet, rows: np.ndarray, c: np.ndarray) -> None:
        self.params = list(net.parameters())
        self.versions = tuple(map(_version, self.params))
        to_np = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
        H, P = net.hidden_size, net.projection_size
        if not all(bool(torch.isfinite(p).all()) for p in self.params):
            raise ValueError("MLRSNetLR: the schedule network has non-finite weights")
        gate_scale = np.full(4 * H, 0.5)
        gate_scale[2 * H : 3 * H] = 1.0  # the cell gate is a tanh already
        self.offset = np.full(4 * H, 0.5)
        self.offset[2 * H : 3 * H] = 0.0
        self.scale = gate_scale
        self.layers = []
        for layer, cell in enumerate(net.cells):
            wi1, bi1, wi2, bi2, wh1, bh1, wh2, bh2 = map(to_np, cell.params())
            n_in = wi1.shape[1]  # 1 for the first layer, H above it
            # w1 @ rows[layer, H - n_in:] = [W1i x + b1i ; W1h h + b1h ; 1]
            w1 = np.zeros((2 * P + 1, n_in + H + 1))
            w1[:P, :n_in] = wi1
            w1[P : 2 * P, n_in : n_in + H] = wh1
            w1[:P, -1] = bi1
            w1[P : 2 * P, -1] = bh1
            w1[-1, -1] = 1.0
            # w2 @ [relu(...) ; 1] = the gate pre-activations, scaled for tanh
            w2 = np.concatenate([wi2, wh2, (bi2 + bh2)[:, None]], axis=1) * gate_scale[:, None]
            a, t = np.empty(2 * P + 1), np.empty(4 * H)
            i, f, g, o = t[:H], t[H : 2 * H], t[2 * H : 3 * H], t[3 * H :]
            inp, h = rows[layer, H - n_in :], rows[layer, H : 2 * H]
            self.layers.append((inp, w1, a, w2, t, i, f, g, o, c[layer], h))
        self.head_w = to_np(net.head.weight)[0] * 0.5
        self.head_b = float(to_np(net.head.bias)[0]) * 0.5
        self.rows, self.H = rows, H
        self.tmp = np.empty(H)

    def stale(self) -> bool:
        return tuple(map(_version, self.params)) != self.versions

    def __call__(self, x: float) -> float:
        """Advance the state in place for a finite ``|x| <= MAX_FAST_LOSS``; return the factor."""
        H, rows, tmp, scale, offset = self.H, self.rows, self.tmp, self.scale, self.offset
        rows[0, H - 1] = x
        for layer, (inp, w1, a, w2, t, i, f, g, o, c, h) in enumerate(self.layers):
            if layer:
                rows[layer, :H] = rows[layer - 1, H : 2 * H]
            np.dot(w1, inp, out=a)
            np.maximum(a, 0.0, out=a)
            np.dot(w2, a, out=t)
            np.tanh(t, out=t)
            t *= scale
            t += offset  # t = [i, f, g, o]
            c *= f
            np.multiply(i, g, out=tmp)
            c += tmp
            np.tanh(c, out=h)
            h *= o
        return 0.5 + 0.5 * math.tanh(self.head_w.dot(h) + self.head_b)


class MLRSNetLR(LossDrivenLR):
    """Set each group's learning rate to ``initial lr × A(loss)`` every step.

    ``A`` is an :class:`~mlrsnet.MLRSNet`; the group's learning rate at
    construction is the scale ``γ`` of that group, so groups keep their ratios
    and any optimizer works. Call it as the paper does, after ``backward`` and
    before ``optimizer.step()``, so that this step's learning rate is
    ``γ · A(this batch's loss)``::

        loss.backward(); scheduler.step(loss); optimizer.step()

    (``torch.optim.lr_scheduler.ReduceLROnPlateau.step(metrics)`` is the
    precedent for a scheduler driven by a value.) The LSTM state is carried from
    step to step and is part of :meth:`state_dict`, with the network weights, so
    a resumed run continues with bit-identical learning rates.

    **torch's order.** Trainers that step the scheduler themselves (Lightning,
    the Hugging Face ``Trainer``, Accelerate) call ``scheduler.step()`` with no
    argument after ``optimizer.step()``. Give the loss to :meth:`observe`
    instead, and ``step()`` sets the *next* step's learning rate from it::

        loss.backward(); scheduler.observe(loss); optimizer.step(); scheduler.step()

    The two orders differ only by a lag of one step: the learning rate of step
    ``t + 1`` in torch's order is the one of step ``t`` in the paper's order (for
    the same losses), and step 0 runs at ``γ`` (the factor is 1 before any loss).
    Several :meth:`observe` calls before one ``step()`` (gradient accumulation)
    are averaged; ``step()`` with nothing observed since the last step keeps the
    learning rate (a step without a loss: a skipped batch, or Accelerate's
    repeated ``step()`` under several processes), and raises ``TypeError`` if
    no loss was ever observed (the order is then not torch's: the loss is missing).
    The losses observed and not yet read are part of :meth:`state_dict`.
    ``mlrsnet.integrations`` feeds the loss for Lightning and the ``Trainer``.

    **Transfer in stages.** The paper's transfer protocol switches networks
    during training (its released checkpoints of meta-training epochs 1, 100
    and 200 at 0, 1/3 and 2/3 of the new run). Pass ``stages=[(0.0, net_a),
    (1/3, net_b), (2/3, net_c)]`` with ``total_steps``; when a stage starts,
    ``on_stage_start(stage_index, scheduler)`` may return a new scale (one
    float, or one per group); or name a policy with ``stage_scale`` — ``"paper"``
    is the authors' rule of the current training loss, which this scheduler
    tracks. The LSTM state carries over, as in the authors' code.

    **Non-finite losses.** A NaN or infinite loss (or a non-finite output)
    never reaches the optimizer: the last finite factor is kept, the state is
    not advanced, the event is counted in :attr:`num_nonfinite` and a warning is
    issued once. In torch's order the same holds for a non-finite observed loss
    (or a non-finite mean of several), when ``step()`` reads it. Before any finite step
    there is no factor to keep: the factor is then :data:`NONFINITE_FIRST_FACTOR` (0, a
    learning rate of 0) until a finite loss arrives. Both paths (numpy and torch) check
    the loss and the output. :meth:`load_state_dict` refuses a state holding a
    non-finite or out-of-range number, so none can enter that way either.

    **Cost.** On CPU each step runs a numpy copy of the network (refreshed
    whenever the network's weights change in place) in about 20 µs. On other
    devices the step is a handful of small kernels and never waits for the
    device, provided each group's ``lr`` is a tensor (create the optimizer with
    ``lr=torch.tensor(γ)``); with a float ``lr`` torch's optimizers need a host
    number, which costs one device synchronisation per step. ``loss_lag=1`` avoids
    it with any ``lr``: the loss is copied to the host without waiting and read one
    step later by the numpy path (the rates are exactly those of ``loss_lag=0`` one
    step later; :mod:`mlrsnet.lossdriven`).

    Args:
        optimizer: Any ``torch.optim.Optimizer``.
        net: The schedule network (or give ``stages``). It is moved to the
            device of the optimizer's parameters.
        stages: ``[(fraction_of_training, net), ...]``, fractions increasing from 0.
        total_steps: Steps of the whole run; needed when a stage starts after 0.
        on_stage_start: Hook called when stage ``i >= 1`` starts (see above).
        distributed: Average the loss over ``torch.distributed`` ranks before
            the network reads it, so every rank sets the same learning rate.
            ``None`` means: when a process group of several ranks is initialised.
        loss_scale: The network reads ``loss / loss_scale``. 1 for classification;
            the authors' language models use ``ln(vocabulary size)``, the loss of
            a uniform prediction, so that the input is about 1 at the start.
        stage_scale: A named policy for the scale when a stage starts (instead of a hook):
            ``"fixed"`` keeps ``γ``; ``"paper"`` is the paper's rule of the training loss
            this scheduler tracks (a moving average of the losses it reads, about the last
            50 steps); ``"paper-guarded"`` is the rule only where ``L·C ≥ e`` and keeps
            ``γ`` near the rule's zero (see :func:`mlrsnet.functional.stage_gamma`). The
            rule is refused for optimizers other than SGD and warned about with momentum;
            it never raises mid-run (where it gives no scale, ``γ`` is kept and a warning
            is shown once). Ratios between groups are kept.
        num_classes: ``C`` of the paper's rule (the vocabulary size for language models).
        language_model: The rule reads the perplexity ``exp(L)``, as the authors' language
            models do.
        fast: Use the numpy path on CPU, and on other devices with ``loss_lag`` (the torch
            path is the reference).
        loss_lag: Read each loss this many steps after it is given, copied to the host
            without blocking (0: at once; see :class:`~mlrsnet.lossdriven.LaggedLosses`).
        last_epoch: As in ``LRScheduler``; leave it at -1 and use
            :meth:`load_state_dict` to resume.

    Example:
        >>> import torch
        >>> import mlrsnet
        >>> model = torch.nn.Linear(3, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=5e-4)
        >>> scheduler = mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())
        >>> loss = model(torch.ones(4, 3)).pow(2).mean()
        >>> loss.backward(); scheduler.step(loss); optimizer.step()
        >>> 0 < scheduler.get_last_lr()[0] < 0.5
        True

        torch's order, one step later:

        >>> scheduler.observe(loss); optimizer.step(); scheduler.step()
        >>> scheduler.num_steps
        2
    """

    def __init__(
        self,
        optimizer: Optimizer,
        net: MLRSNet | None = None,
        *,
        stages: Sequence[tuple[float, MLRSNet]] | None = None,
        total_steps: int | None = None,
        on_stage_start: StageHook | None = None,
        distributed: bool | None = None,
        loss_scale: float = 1.0,
        stage_scale: str | None = None,
        num_classes: int | None = None,
        language_model: bool = False,
        fast: bool = True,
        loss_lag: int = 0,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"MLRSNetLR needs a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not optimizer.param_groups:
            raise ValueError("MLRSNetLR: the optimizer has no param groups")
        self._boundaries, self._nets = _check_stages(net, stages, total_steps)
        _check_stage_scale(optimizer, stage_scale, num_classes, on_stage_start)
        self.on_stage_start = on_stage_start
        self.stage_scale = stage_scale
        self.num_classes = num_classes
        self.language_model = bool(language_model)
        self._tracks_loss = stage_scale in ("paper", "paper-guarded")
        self._warned_stage_scale = False
        # a bias-corrected moving average of the training loss: (sum, weight), see _track
        self._loss_sum, self._loss_weight = 0.0, 0.0
        if (
            isinstance(loss_scale, bool)
            or not isinstance(loss_scale, (int, float))
            or not (math.isfinite(loss_scale) and loss_scale > 0)
        ):
            raise ValueError(
                f"MLRSNetLR: loss_scale must be a positive finite number, got {loss_scale!r}"
            )
        self.loss_scale = float(loss_scale)
        first = next((p for g in optimizer.param_groups for p in g["params"]), None)
        if first is None:
            raise ValueError("MLRSNetLR: the optimizer's param groups hold no parameters")
        self.device = first.device
        for stage_net in self._nets:
            stage_net.to(self.device)
        self.stage_index = 0
        self.num_steps = 0
        self._warned_nonfinite = False
        self._fast = fast and (
            self.device.type == "cpu" or (isinstance(loss_lag, int) and loss_lag > 0)
        )
        self._numpy_net: _NumpyNet | None = None
        first_net = self._nets[0]
        if self._fast:
            # float64 state shared with the numpy path (see _NumpyNet)
            L, H = first_net.num_layers, first_net.hidden_size
            self._rows = np.zeros((L, 2 * H + 1))
            self._rows[:, 2 * H] = 1.0
            self._c_np = np.zeros((L, H))
            self._h = torch.from_numpy(self._rows[:, H : 2 * H])
            self._c = torch.from_numpy(self._c_np)
            self._factor = torch.ones((), dtype=torch.float64)
            self._factor_np = self._factor.numpy()
            self._nonfinite = torch.zeros((), dtype=torch.int64)
            self._nonfinite_np = self._nonfinite.numpy()
            if self.device.type != "cpu":  # copy the network to the host now, not in the loop
                self._numpy_net = _NumpyNet(first_net, self._rows, self._c_np)
        else:
            self._h, self._c = first_net.init_state()
            dtype = first_net.head.weight.dtype
            self._factor = torch.ones((), dtype=dtype, device=self.device)
            self._nonfinite = torch.zeros((), dtype=torch.int64, device=self.device)
        self._init_loss_reading(device=self.device, distributed=distributed, loss_lag=loss_lag,
                                host_losses=self._fast, mean_dtype=self._factor.dtype)  # fmt: skip
        super().__init__(optimizer, last_epoch)

    # -- the torch protocol -------------------------------------------------------

    @property
    def net(self) -> MLRSNet:
        """The schedule network of the current stage."""
        return self._nets[self.stage_index]

    @property
    def factor(self) -> Tensor:
        """The last factor ``A(loss)`` (a 0-d tensor; 1 before the first step)."""
        return self._factor

    @property
    def state(self) -> State:
        """The LSTM state ``(h, c)`` the next step starts from."""
        return self._h, self._c

    @property
    def num_nonfinite(self) -> int:
        """How many steps had a non-finite loss or factor (reading it syncs on CUDA)."""
        count = int(self._nonfinite)
        if count and not self._warned_nonfinite:
            self._warn_nonfinite()
        return count

    def get_lr(self) -> list[float | Tensor]:
        """``initial lr × factor`` for each group."""
        return [self._rate(base) for base in self.base_lrs]

    # -- the maths of a step (the mechanism is LossDrivenLR's) ---------------------------

    def _before_read(self) -> None:
        if self.stage_index + 1 < len(self._nets):
            self._maybe_start_stage()

    def _read_loss(self, loss: Tensor | float) -> None:
        if self._fast:
            x = loss if isinstance(loss, float) else float(loss)
            if self._tracks_loss:
                self._track(x)  # the host number the numpy path reads anyway: no tensor ops
            self._step_numpy(x / self.loss_scale if self.loss_scale != 1.0 else x)
        else:
            if self._tracks_loss:
                self._track(loss)
            self._step_torch(loss / self.loss_scale if self.loss_scale != 1.0 else loss)

    def _count_step(self) -> None:
        self.num_steps += 1
        self.last_epoch = self.num_steps
        self._step_count += 1

    def network_input(self, loss: Tensor | float) -> Tensor:
        """What the network reads for this training loss: the mean over ranks where
        :meth:`reads_mean_over_ranks`, divided by ``loss_scale``; a 0-d tensor on the
        network's device and dtype, detached.

        Args:
            loss: The training loss of a step (a float or a one-element tensor).

        Example:
            >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
            >>> MLRSNetLR(opt, MLRSNet(), loss_scale=2.0).network_input(torch.tensor(3.0))
            tensor(1.5000)
        """
        weight = self.net.head.weight
        x = torch.as_tensor(loss.detach() if isinstance(loss, Tensor) else loss)
        x = x.to(weight.device, weight.dtype).reshape(())
        if self.reads_mean_over_ranks():
            x = mean_over_ranks(x, weight.device, weight.dtype)
        return x / self.loss_scale

    def _track(self, loss: Tensor | float) -> None:
        """Fold a finite training loss into the moving average the stage scale reads."""
        if isinstance(loss, Tensor):
            x = loss.detach().reshape(()).to(torch.float64)
            ok = torch.isfinite(x)
            if not isinstance(self._loss_sum, Tensor):
                self._loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
                self._loss_weight = torch.zeros((), dtype=torch.float64, device=x.device)
            self._loss_sum = torch.where(
                ok, LOSS_AVERAGE_DECAY * self._loss_sum + x, self._loss_sum
            )
            self._loss_weight = torch.where(ok, LOSS_AVERAGE_DECAY * self._loss_weight + 1.0,
                                            self._loss_weight)  # fmt: skip
        elif math.isfinite(loss):
            self._loss_sum = LOSS_AVERAGE_DECAY * float(self._loss_sum) + loss
            self._loss_weight = LOSS_AVERAGE_DECAY * float(self._loss_weight) + 1.0

    @property
    def tracked_loss(self) -> float:
        """The moving average of the training loss (about the last 50 finite steps) that
        ``stage_scale`` reads; NaN before any step or without a paper ``stage_scale``."""
        weight = float(self._loss_weight)
        return float(self._loss_sum) / weight if weight > 0 else math.nan

    def _step_numpy(self, x: float) -> None:
        numpy_net = self._numpy_net
        if numpy_net is None or numpy_net.stale():
            numpy_net = self._numpy_net = _NumpyNet(self.net, self._rows, self._c_np)
        if abs(x) <= MAX_FAST_LOSS:  # False for NaN and inf
            factor = numpy_net(x)
            if math.isfinite(factor):
                self._factor_np[()] = factor
                return
            # With finite weights and |x| <= MAX_FAST_LOSS every intermediate is finite, so a
            # non-finite factor means the state it started from was not finite already: what
            # it left behind is no worse. Counted and kept like a non-finite loss.
        if self.num_steps == int(self._nonfinite_np):  # no finite step yet: nothing to keep
            self._factor_np[()] = NONFINITE_FIRST_FACTOR
        self._nonfinite_np[()] += 1
        self._warn_nonfinite()

    def _step_torch(self, loss: Tensor | float) -> None:
        net = self.net
        if isinstance(loss, Tensor):
            loss = loss.detach()
        x = torch.as_tensor(loss, dtype=self._factor.dtype).to(self.device, non_blocking=True)
        with torch.no_grad():
            factor, (h, c) = mlrsnet_forward(
                x.reshape(()), (self._h, self._c), net.cell_params(), net.head.weight, net.head.bias
            )
            ok = torch.isfinite(x.reshape(())) & torch.isfinite(factor)
            # no finite step yet (every step so far was counted non-finite): nothing to keep
            kept = torch.where(self._nonfinite < self.num_steps, self._factor,
                               torch.full_like(self._factor, NONFINITE_FIRST_FACTOR))  # fmt: skip
            self._factor.copy_(torch.where(ok, factor, kept))
            self._h.copy_(torch.where(ok, h, self._h))
            self._c.copy_(torch.where(ok, c, self._c))
            self._nonfinite.add_((~ok).to(self._nonfinite.dtype))
        if self.device.type == "cpu" and not bool(ok):
            self._warn_nonfinite()

    def _rate(self, base: float | Tensor) -> float | Tensor:
        if isinstance(base, Tensor):
            return base * self._factor.to(base.device)
        if self._fast:
            return base * float(self._factor_np)
        return base * self._factor.item()

    def _warn_nonfinite(self) -> None:
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                "MLRSNetLR: a non-finite loss or factor; keeping the last finite learning rate "
                "(counted in scheduler.num_nonfinite; this warning is shown once)",
                RuntimeWarning,
                stacklevel=4,
            )

    # -- stages -------------------------------------------------------------------

    def _maybe_start_stage(self) -> None:
        while (
            self.stage_index + 1 < len(self._nets)
            and self.num_steps >= self._boundaries[self.stage_index + 1]
        ):
            self.stage_index += 1
            self._numpy_net = None
            logger.info("MLRSNetLR: stage %d starts at step %d", self.stage_index, self.num_steps)
            if self.stage_scale is not None:
                self._apply_stage_scale()
            if self.on_stage_start is not None:
                scale = self.on_stage_start(self.stage_index, self)
                if scale is not None:
                    self.set_scale(scale)

    def _apply_stage_scale(self) -> None:
        """The named stage policy: a new scale from the tracked loss, ratios between groups kept."""
        assert self.stage_scale is not None
        old = float(self.base_lrs[0])
        loss = self.tracked_loss
        new, note = stage_gamma(self.stage_scale, old, loss, self.num_classes or 2,
                                language_model=self.language_model)  # fmt: skip
        logger.info("MLRSNetLR: stage %d, tracked loss %.4g -> gamma %.4g (%s)",
                    self.stage_index, loss, new, note or self.stage_scale)  # fmt: skip
        if note is not None and not self._warned_stage_scale:
            self._warned_stage_scale = True
            warnings.warn(f"MLRSNetLR: stage {self.stage_index}: {note} (this warning is shown once)",
                          RuntimeWarning, stacklevel=5)  # fmt: skip
        if new != old:
            self.set_scale([float(b) * new / old for b in self.base_lrs])

    def set_scale(self, scale: float | Sequence[float]) -> None:
        """Set the scale ``γ`` (each group's base learning rate) from now on.

        Args:
            scale: One positive finite float for all groups, or one per group.
        """
        values = list(scale) if isinstance(scale, Sequence) else [scale] * len(self.base_lrs)
        if len(values) != len(self.base_lrs):
            raise ValueError(
                f"set_scale: got {len(values)} scales for {len(self.base_lrs)} param groups"
            )
        for v in values:
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v <= 0
            ):
                raise ValueError(
                    f"set_scale: each scale must be a positive finite float, got {v!r}"
                )
        new_bases: list[float | Tensor] = []
        for group, base, v in zip(self.optimizer.param_groups, self.base_lrs, values, strict=True):
            if isinstance(base, Tensor):
                base = base.clone().fill_(float(v))
            else:
                base = float(v)
            group["initial_lr"] = base.clone() if isinstance(base, Tensor) else base
            new_bases.append(base)
        self.base_lrs = new_bases

    # -- state --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and numbers only.

        Loads with ``torch.load(weights_only=True)``: step counters, the stage,
        the scales, the last factor, the LSTM state, the non-finite count and the
        weights of every stage's network.
        """
        state: dict[str, Any] = {
            "num_steps": self.num_steps,
            "loss_scale": self.loss_scale,
            "last_epoch": self.last_epoch,
            "step_count": self._step_count,
            "stage_index": self.stage_index,
            "boundaries": list(self._boundaries),
            "base_lrs": [b.clone() if isinstance(b, Tensor) else b for b in self.base_lrs],
            "factor": self._factor.clone(),
            "h": self._h.clone(),
            "c": self._c.clone(),
            "num_nonfinite": self._nonfinite.clone(),
            "loss_average": torch.tensor(
                [float(self._loss_sum), float(self._loss_weight)], dtype=torch.float64
            ),
            **self._waiting_state(),  # the losses observed or lagged and not read yet
        }
        for i, stage_net in enumerate(self._nets):
            for name, value in stage_net.state_dict().items():
                state[f"nets.{i}.{name}"] = value.detach().clone()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the next step continues bit-identically.

        Every number is checked before anything changes: counters are non-negative
        integers, the scales positive and finite, the factor finite in ``[0, 1]``, the LSTM
        state finite and of the network's shape, the loss average finite, the networks'
        weights finite floating-point tensors of their shapes. A state that fails leaves the
        scheduler as it was.

        Raises:
            ValueError: If the state was saved with other stages or networks of
                another shape, or holds a value out of range (the message names it).
        """
        where = "MLRSNetLR.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(state_dict).__name__}")
        required = {"num_steps", "stage_index", "base_lrs", "factor", "h", "c", "boundaries"}
        missing = sorted(required - state_dict.keys())
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        boundaries = state_dict["boundaries"]
        if not isinstance(boundaries, (list, tuple)) or list(boundaries) != list(self._boundaries):
            raise ValueError(
                f"{where}: saved stage boundaries {boundaries!r} differ from this scheduler's "
                f"{self._boundaries}"
            )
        base_lrs = state_dict["base_lrs"]
        if not isinstance(base_lrs, (list, tuple)) or len(base_lrs) != len(
            self.optimizer.param_groups
        ):
            count = len(base_lrs) if isinstance(base_lrs, (list, tuple)) else base_lrs
            raise ValueError(
                f"{where}: saved {count!r} scales for {len(self.optimizer.param_groups)} "
                "param groups"
            )
        for base in base_lrs:
            value = _one_number(base)
            if value is None or not value > 0:
                raise ValueError(f"{where}: each scale (base_lrs) must be a positive finite "
                                 f"number, got {base!r}")  # fmt: skip
        num_steps = _count(state_dict, "num_steps", where)
        stage_index = _count(state_dict, "stage_index", where)
        if stage_index >= len(self._nets):
            raise ValueError(
                f"{where}: stage_index {stage_index} for a scheduler of {len(self._nets)} stages"
            )
        last_epoch = _count(state_dict, "last_epoch", where, default=num_steps, low=-1)
        step_count = _count(state_dict, "step_count", where, default=num_steps + 1)
        num_nonfinite = _count(state_dict, "num_nonfinite", where, default=0)
        factor = _one_number(state_dict["factor"])
        if factor is None or not 0.0 <= factor <= 1.0:
            raise ValueError(f"{where}: factor must be a finite number in [0, 1], "
                             f"got {state_dict['factor']!r}")  # fmt: skip
        loss_scale = _one_number(state_dict.get("loss_scale", self.loss_scale))
        if loss_scale is None or not loss_scale > 0:
            raise ValueError(f"{where}: loss_scale must be a positive finite number, "
                             f"got {state_dict.get('loss_scale')!r}")  # fmt: skip
        loss_average = None
        if "loss_average" in state_dict:
            saved = state_dict["loss_average"]
            values = (
                [_one_number(v) for v in saved] if isinstance(saved, (Tensor, list, tuple)) else []
            )
            if len(values) != 2 or None in values or values[1] < 0:
                raise ValueError(f"{where}: loss_average must be two finite numbers "
                                 f"(sum, weight >= 0), got {saved!r}")  # fmt: skip
            loss_average = values
        for name in ("h", "c"):
            own, saved = getattr(self, "_" + name), state_dict[name]
            if not isinstance(saved, Tensor) or tuple(saved.shape) != tuple(own.shape):
                shape = tuple(saved.shape) if isinstance(saved, Tensor) else type(saved).__name__
                raise ValueError(
                    f"{where}: LSTM state {name} has shape {shape}, the network needs "
                    f"{tuple(own.shape)}"
                )
            if not saved.is_floating_point() or not bool(torch.isfinite(saved).all()):
                raise ValueError(f"{where}: LSTM state {name} holds non-finite or non-float values")
        weights = []
        for i, stage_net in enumerate(self._nets):
            prefix = f"nets.{i}."
            stage = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            stage_net.check_state(stage, source=f"saved stage {i} network")
            weights.append(stage)
        waiting = self._check_waiting_state(state_dict, where)
        # -- everything checked: restore -----------------------------------------------
        for stage_net, stage in zip(self._nets, weights, strict=True):
            stage_net.load_checked(stage)
        self._h.copy_(state_dict["h"])
        self._c.copy_(state_dict["c"])
        self.loss_scale = loss_scale
        self._factor.copy_(torch.as_tensor(factor, dtype=self._factor.dtype))
        if loss_average is not None:
            self._loss_sum, self._loss_weight = loss_average
        self._nonfinite.copy_(torch.as_tensor(num_nonfinite))
        self.num_steps = num_steps
        self.last_epoch = last_epoch
        self._step_count = step_count
        self.stage_index = stage_index
        self._restore_waiting(waiting)
        self.base_lrs = [
            b.clone() if isinstance(b, Tensor) else float(b) for b in state_dict["base_lrs"]
        ]
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["initial_lr"] = base.clone() if isinstance(base, Tensor) else base
        self._numpy_net = None
        self._apply_lrs()


def _one_number(value: Any) -> float | None:
    """A finite real number (or a one-element real tensor) as a float, else ``None``."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            return None
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(
    state: Mapping[str, Any], key: str, where: str, default: int | None = None, low: int = 0
) -> int:
    """An integer ``>= low`` of a saved state (an int or a one-element integer tensor)."""
    if key not in state and default is not None:
        return default
    value = state[key]
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: {key} must be an integer >= {low}, got {value!r}")
    return value


def _check_stage_scale(
    optimizer: Optimizer, stage_scale: str | None, num_classes: int | None, hook: Any
) -> None:
    if stage_scale is None:
        return
    if stage_scale not in STAGE_SCALES:
        raise ValueError(
            f"MLRSNetLR: stage_scale must be one of {STAGE_SCALES}, got {stage_scale!r}"
        )
    if hook is not None:
        raise ValueError("MLRSNetLR: give stage_scale or on_stage_start, not both")
    if stage_scale == "fixed":
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"MLRSNetLR: stage_scale={stage_scale!r} needs num_classes (an int >= 2: the classes, "
            f"or the vocabulary size of a language model), got {num_classes!r}"
        )
    if not isinstance(optimizer, torch.optim.SGD):
        raise ValueError(
            f"MLRSNetLR: stage_scale={stage_scale!r} is the paper's scale rule for SGD; "
            f"{type(optimizer).__name__} has another step size scale, where the rule multiplies "
            "the learning rate by orders of magnitude. Use stage_scale='fixed' (the lr you give "
            "stays the scale) with this optimizer"
        )
    momentum = max(float(g.get("momentum", 0.0)) for g in optimizer.param_groups)
    if momentum > 0:
        warnings.warn(
            f"MLRSNetLR: the paper's scale rule and networks were made for SGD without momentum; "
            f"with momentum {momentum:g} each step moves about {1 / (1 - momentum):.3g}x as far "
            "(use momentum 0, or divide the lr by that factor)",
            RuntimeWarning,
            stacklevel=3,
        )


def _check_stages(
    net: MLRSNet | None,
    stages: Sequence[tuple[float, MLRSNet]] | None,
    total_steps: int | None,
) -> tuple[list[int], list[MLRSNet]]:
    if (net is None) == (stages is None):
        raise TypeError("MLRSNetLR: give exactly one of `net` and `stages`")
    if net is not None:
        stages = [(0.0, net)]
    assert stages is not None
    if len(stages) == 0:
        raise ValueError("MLRSNetLR: `stages` is empty")
    fractions, nets = [], []
    for item in stages:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"MLRSNetLR: each stage must be (fraction, MLRSNet), got {item!r}")
        fraction, stage_net = item
        if not isinstance(stage_net, MLRSNet):
            raise TypeError(
                f"MLRSNetLR: stage network must be an MLRSNet, got {type(stage_net).__name__}"
            )
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"MLRSNetLR: stage fraction must be a number, got {fraction!r}")
        fractions.append(float(fraction))
        nets.append(stage_net)
    if fractions[0] != 0.0:
        raise ValueError(f"MLRSNetLR: the first stage must start at 0, got {fractions[0]}")
    if (
        any(not (a < b) for a, b in zip(fractions, fractions[1:], strict=False))
        or fractions[-1] >= 1
    ):
        raise ValueError(f"MLRSNetLR: stage fractions must increase within [0, 1), got {fractions}")
    shapes = {(n.hidden_size, n.num_layers) for n in nets}
    if len(shapes) > 1:
        raise ValueError(
            f"MLRSNetLR: stage networks must share hidden_size and num_layers, got {shapes}"
        )
    if total_steps is not None or len(nets) > 1:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(
                f"MLRSNetLR: total_steps must be an int >= 1 (several stages need it), got {total_steps!r}"
            )
    boundaries = [math.floor(f * total_steps + 1e-9) if total_steps else 0 for f in fractions]
    return boundaries, nets
