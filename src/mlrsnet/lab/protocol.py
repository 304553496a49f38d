"""The one training-step protocol: every method a run can train with implements it.

A *method* owns the optimizer of one model and whatever sets its learning rate: a torch
scheduler, Schedule-Free or Prodigy, a hypergradient optimizer, a transferred MLR-SNet, or
the meta-training of one (:class:`~mlrsnet.lab.meta_training.MetaTraining`). The run loop
(:mod:`mlrsnet.lab.runner`) does the forward pass and hands the loss over, so it never
asks which kind of method it drives::

    for inputs, targets in loader:
        loss = task.loss_fn(model(inputs), targets)
        result = method.step(loss, meta_loss=meta.loss, meta_batch=meta.batch)
    method.eval(); evaluate(model); method.train()        # Schedule-Free evaluates at x
    extra = method.epoch_end(val_loss=...)                # only if method.needs_val_loss

``step`` receives the loss *with its graph* and does the rest: zeroing the gradients,
backward, clipping (:func:`mlrsnet.gradients.compute_gradients`), the optimizer step and
per-step scheduling.

**Non-finite steps.** Every method applies one rule (:func:`mlrsnet.gradients.finite_step`,
re-exported here, as :class:`~mlrsnet.MetaTrainer` does): a step whose loss or gradient norm
is NaN or infinite is skipped — no weight, optimizer state, schedule or meta-network changes —
and reported with ``StepResult(skipped=True)``; the run loop counts these in the summary
(``nonfinite_steps_skipped``). The schedule's clock counts the steps taken, so a skipped step
does not advance a torch scheduler either.

Held-out data comes as two lazy callables, drawn only by the methods
that use them: ``meta_loss()`` (the model's loss on the next held-out batch at its current
weights: RTHO) and ``meta_batch()`` (the next held-out batch itself: meta-training's
lookahead).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mlrsnet.gradients import finite_step

__all__ = ["MetaBatch", "MetaLoss", "StepResult", "TrainingMethod", "finite_step", "log_skip"]

logger = logging.getLogger(__name__)

#: Returns the model's loss on the next held-out batch at its current weights, with its graph.
MetaLoss = Callable[[], Tensor]
#: Returns the next held-out batch ``(inputs, targets)``.
MetaBatch = Callable[[], Any]


@dataclass(frozen=True)
class StepResult:
    """What one training step reports.

    Attributes:
        lr: The learning rate the step used (of the first parameter group).
        skipped: The step was skipped (a non-finite loss or gradient): nothing was updated.
        meta_loss: The held-out loss of a meta update made in this step, else ``None``.
    """

    lr: float
    skipped: bool = False
    meta_loss: float | None = None


class TrainingMethod:
    """The protocol: one training step at a time, epoch ends, train/eval modes, state.

    Subclasses implement :meth:`step`, :attr:`lr`, :meth:`state_dict` and
    :meth:`load_state_dict`; the rest has defaults that do nothing.

    Attributes:
        name: The method's name (a baseline's registry name, ``mlrsnet``, ...).
        needs_val_loss: :meth:`epoch_end` needs the epoch's validation loss.
    """

    name: str = ""
    needs_val_loss: bool = False

    def step(
        self,
        loss: Tensor,
        *,
        meta_loss: MetaLoss | None = None,
        meta_batch: MetaBatch | None = None,
    ) -> StepResult:
        """One optimizer step from this batch's training loss (with its graph).

        Args:
            loss: The scalar training loss of the batch, with its autograd graph.
            meta_loss: The held-out loss at the current weights, for methods that use it.
            meta_batch: The next held-out batch, for methods that use it.
        """
        raise NotImplementedError

    def epoch_end(self, val_loss: float | None = None) -> dict[str, Any]:
        """Called once at the end of every epoch, after the model was evaluated.

        Args:
            val_loss: The epoch's validation loss where :attr:`needs_val_loss`.

        Returns:
            Extra fields for the epoch's record (none by default).
        """
        return {}

    def train(self) -> None:
        """Switch to training mode (Schedule-Free moves to the gradient point)."""

    def eval(self) -> None:
        """Switch to evaluation mode; called before the model is evaluated."""

    @property
    def lr(self) -> float:
        """The learning rate of the last step (the current one before any step)."""
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Extra fields for the run's summary (none by default)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue exactly, except the model's parameters and buffers."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a method built the same way."""
        raise NotImplementedError


def log_skip(name: str, step: int, count: int) -> None:
    """Log a skipped step: a warning at the 1st, 10th, 100th, ... skip, else at debug level."""
    level = logging.WARNING if math.log10(count).is_integer() else logging.DEBUG
    logger.log(level, "%s: non-finite loss or gradient at step %d; step skipped (%d so far)",
               name, step, count)  # fmt: skip
