"""Hugging Face ``Trainer``: feed each optimizer step's loss to :class:`~mlrsnet.MLRSNetLR`.

Give the ``Trainer`` the scheduler with ``optimizers=(optimizer, scheduler)`` and attach
:class:`MLRSNetCallback`. The ``Trainer`` steps the scheduler after each optimizer step, in
torch's order; the callback gives it the loss of that step first
(:meth:`MLRSNetLR.observe <mlrsnet.MLRSNetLR.observe>`), so that each step's learning rate is
``γ · A(the previous step's loss)``.

Example:
    >>> import tempfile, torch, mlrsnet
    >>> from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments
    >>> from mlrsnet.integrations.huggingface import MLRSNetCallback
    >>> config = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
    ...                      num_hidden_layers=1, num_attention_heads=2)
    >>> model = LlamaForCausalLM(config)  # a tiny model from a config: nothing to download
    >>> ids = torch.randint(0, 16, (8, 8))
    >>> data = [{"input_ids": row, "labels": row} for row in ids]
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> scheduler = mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())
    >>> args = TrainingArguments(tempfile.mkdtemp(), per_device_train_batch_size=4,
    ...                          num_train_epochs=1, use_cpu=True, report_to="none",
    ...                          save_strategy="no", disable_tqdm=True)
    >>> trainer = Trainer(model=model, args=args, train_dataset=data,
    ...                   optimizers=(optimizer, scheduler))
    >>> callback = MLRSNetCallback.attach(trainer)
    >>> _ = trainer.train()  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    >>> scheduler.num_steps  # one step per optimizer step, each from the loss before it
    2
"""

from __future__ import annotations

# the framework first: without it, fail before importing torch
try:
    from transformers import Trainer, TrainerCallback
except ImportError as error:
    raise ImportError(
        "mlrsnet.integrations.huggingface needs transformers: pip install 'mlrsnet[huggingface]'"
    ) from error

import functools
import logging
from typing import Any

from torch import Tensor

from mlrsnet.integrations._common import LOSS_DRIVEN
from mlrsnet.plus import MLRSNetPlusLR

__all__ = ["MLRSNetCallback"]

logger = logging.getLogger(__name__)


class MLRSNetCallback(TrainerCallback):
    """Give each optimizer step's training loss to the ``Trainer``'s :class:`~mlrsnet.MLRSNetLR`.

    Create it with :meth:`attach`, which wraps the trainer's ``training_step`` to
    collect the losses it returns and adds the callback. After each optimizer
    step (``on_optimizer_step``) the callback observes their sum, which is the
    ``Trainer``'s own training loss of that step: the mean over the
    ``gradient_accumulation_steps`` micro-batches (weighted by tokens where the
    model takes ``num_items_in_batch``), unscaled by AMP; the ``Trainer`` then
    calls ``scheduler.step()``. A step that the gradient scaler skipped (an
    overflow) feeds nothing: the ``Trainer`` does not step the scheduler then,
    and its losses are dropped. Under DDP each rank observes its own loss and the
    scheduler averages it over the ranks.

    An :class:`~mlrsnet.plus.MLRSNetPlusLR` whose network reads a validation loss
    (:attr:`PlusNet.reads_validation <mlrsnet.plus.PlusNet.reads_validation>`) is given the
    metric ``metric`` (``"eval_loss"``) of every evaluation the ``Trainer`` runs
    (``eval_strategy``; :meth:`MLRSNetPlusLR.observe_validation
    <mlrsnet.plus.MLRSNetPlusLR.observe_validation>`).
    """

    def __init__(self, metric: str = "eval_loss") -> None:
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"MLRSNetCallback: metric must be a metric's name, got {metric!r}")
        self.metric = metric
        self.trainer: Trainer | None = None
        self._window: Tensor | float | None = None

    @classmethod
    def attach(cls, trainer: Trainer, metric: str = "eval_loss") -> MLRSNetCallback:
        """Feed ``trainer``'s scheduler: wrap its ``training_step`` and add the callback.

        Args:
            trainer: A ``transformers.Trainer`` (or a subclass) built with
                ``optimizers=(optimizer, MLRSNetLR(optimizer, net))``.
            metric: The evaluation metric given to an MLR-SNet+ network that reads a
                validation loss.

        Returns:
            The callback (attaching twice returns the first one).

        Raises:
            TypeError: If ``trainer`` is not a ``Trainer``.
        """
        if not isinstance(trainer, Trainer):
            raise TypeError(
                f"MLRSNetCallback.attach needs a transformers.Trainer, got {type(trainer).__name__}"
            )
        for existing in trainer.callback_handler.callbacks:
            if isinstance(existing, cls) and existing.trainer is trainer:
                return existing
        callback = cls(metric)
        callback.trainer = trainer
        original = trainer.training_step

        @functools.wraps(original)
        def training_step(*args: Any, **kwargs: Any) -> Any:
            loss = original(*args, **kwargs)
            callback._collect(loss)
            return loss

        trainer.training_step = training_step  # type: ignore[method-assign]
        trainer.add_callback(callback)
        return callback

    def _collect(self, loss: Any) -> None:
        if isinstance(loss, Tensor):
            loss = loss.detach().reshape(())
        elif not isinstance(loss, (int, float)):
            return
        self._window = loss if self._window is None else self._window + loss

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Check that the trainer was attached and steps an ``MLRSNetLR``."""
        if self.trainer is None:
            raise ValueError(
                "MLRSNetCallback: create it with MLRSNetCallback.attach(trainer), which also "
                "collects the training losses (a callback alone does not see them)"
            )
        scheduler = kwargs.get("lr_scheduler")
        if not isinstance(scheduler, LOSS_DRIVEN):
            raise TypeError(
                "MLRSNetCallback: the Trainer's lr scheduler is "
                f"{type(scheduler).__name__}, not MLRSNetLR or MLRSNetPlusLR; pass "
                "Trainer(..., optimizers=(optimizer, MLRSNetLR(optimizer, net)))"
            )
        self._window = None

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Observe the loss of the step the optimizer just took (the ``Trainer`` steps next)."""
        window, self._window = self._window, None
        optimizer = kwargs.get("optimizer")
        if getattr(optimizer, "step_was_skipped", False):
            logger.info(
                "MLRSNetCallback: step %d was skipped by the gradient scaler; its loss is dropped",
                state.global_step,
            )
            return
        scheduler = kwargs.get("lr_scheduler")
        if window is not None and isinstance(scheduler, LOSS_DRIVEN):
            scheduler.observe(window)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Give the evaluation loss to a network that reads a validation loss."""
        scheduler = kwargs.get("lr_scheduler")
        if not (isinstance(scheduler, MLRSNetPlusLR) and scheduler.net.reads_validation):
            return
        metrics = kwargs.get("metrics") or {}
        if self.metric not in metrics:
            raise ValueError(
                f"MLRSNetCallback: the MLR-SNet+ network reads a validation loss, but the "
                f"evaluation gave no {self.metric!r} (it gave {sorted(metrics)}); name it with "
                "MLRSNetCallback.attach(trainer, metric=...)"
            )
        scheduler.observe_validation(float(metrics[self.metric]))
