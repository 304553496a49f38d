"""Lightning: feed each training step's loss to :class:`~mlrsnet.MLRSNetLR`.

Return the scheduler from ``configure_optimizers`` with ``"interval": "step"`` and add
:class:`MLRSNetCallback` to the ``Trainer``. Lightning steps the scheduler after each
optimizer step, in torch's order; the callback gives it the loss of that step first
(:meth:`MLRSNetLR.observe <mlrsnet.MLRSNetLR.observe>`), so that each step's learning rate
is ``γ · A(the previous step's loss)``.

Example:
    >>> import lightning.pytorch as pl
    >>> import torch, mlrsnet
    >>> from mlrsnet.integrations.lightning import MLRSNetCallback
    >>> class Regression(pl.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.layer = torch.nn.Linear(4, 1)
    ...     def training_step(self, batch, batch_idx):
    ...         x, y = batch
    ...         return torch.nn.functional.mse_loss(self.layer(x), y)
    ...     def configure_optimizers(self):
    ...         optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
    ...         scheduler = mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())
    ...         return {"optimizer": optimizer,
    ...                 "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    >>> dataset = torch.utils.data.TensorDataset(torch.randn(24, 4), torch.randn(24, 1))
    >>> data = torch.utils.data.DataLoader(dataset, batch_size=8)
    >>> trainer = pl.Trainer(max_epochs=1, callbacks=[MLRSNetCallback()], accelerator="cpu",
    ...                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
    ...                      enable_model_summary=False)
    >>> trainer.fit(Regression(), data)
    >>> trainer.lr_scheduler_configs[0].scheduler.num_steps
    3
"""

from __future__ import annotations

# the framework first: without it, fail before importing torch
try:
    import lightning.pytorch as pl
except ImportError:  # the standalone package
    try:
        import pytorch_lightning as pl
    except ImportError as error:
        raise ImportError(
            "mlrsnet.integrations.lightning needs Lightning: pip install 'mlrsnet[lightning]'"
        ) from error

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from mlrsnet.integrations._common import LOSS_DRIVEN
from mlrsnet.plus import MLRSNetPlusLR
from mlrsnet.scheduler import MLRSNetLR

__all__ = ["MLRSNetCallback"]

logger = logging.getLogger(__name__)

_MISSING = object()


class MLRSNetCallback(pl.Callback):
    """Give each training step's loss to the :class:`~mlrsnet.MLRSNetLR` schedulers.

    At the start of ``fit`` it finds the ``MLRSNetLR`` schedulers that
    ``configure_optimizers`` returned (they must have ``"interval": "step"``) and
    wraps the module's ``training_step``: every loss it returns (the tensor, or
    the ``"loss"`` of a dict; unscaled by AMP, undivided by gradient accumulation)
    goes to :meth:`MLRSNetLR.observe <mlrsnet.MLRSNetLR.observe>`. Lightning steps
    the scheduler once per optimizer step, which reads the mean of the losses of
    that step's micro-batches (``accumulate_grad_batches``). The wrapper is
    removed when ``fit`` ends. A ``training_step`` that returns ``None`` feeds
    nothing, and the scheduler keeps its learning rate. Under DDP each rank
    observes its own loss and the scheduler averages it over the ranks, so every
    rank sets the same learning rate.

    An :class:`~mlrsnet.plus.MLRSNetPlusLR` whose network reads a validation loss
    (:attr:`PlusNet.reads_validation <mlrsnet.plus.PlusNet.reads_validation>`) is given the
    logged metric ``monitor`` after every validation run of ``fit`` (the sanity check
    excepted), as ``EarlyStopping`` reads it
    (:meth:`MLRSNetPlusLR.observe_validation <mlrsnet.plus.MLRSNetPlusLR.observe_validation>`).

    Args:
        monitor: The logged validation loss (``self.log("val_loss", loss)`` in
            ``validation_step``) for networks that read one.

    Raises:
        ValueError: At the start of ``fit``, if no ``MLRSNetLR`` is configured,
            one is stepped per epoch, or the module uses manual optimization
            (step the scheduler yourself there: ``scheduler.step(loss)``); after a
            validation run, if a network reads a validation loss and ``monitor`` was
            not logged.
    """

    def __init__(self, monitor: str = "val_loss") -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"MLRSNetCallback: monitor must be a metric's name, got {monitor!r}")
        self.monitor = monitor
        self.schedulers: list[MLRSNetLR | MLRSNetPlusLR] = []
        self._module: pl.LightningModule | None = None
        self._saved: Any = _MISSING

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the schedulers and wrap ``training_step``."""
        if not pl_module.automatic_optimization:
            raise ValueError(
                "MLRSNetCallback: the module uses manual optimization, where Lightning does not "
                "step schedulers; call scheduler.step(loss) before optimizer.step() yourself"
            )
        schedulers = []
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, LOSS_DRIVEN):
                if config.interval != "step":
                    raise ValueError(
                        "MLRSNetCallback: configure the MLRSNetLR scheduler with "
                        f'"interval": "step", not {config.interval!r} (it reads every step\'s loss)'
                    )
                schedulers.append(config.scheduler)
        if not schedulers:
            raise ValueError(
                "MLRSNetCallback: configure_optimizers returned no MLRSNetLR (or MLRSNetPlusLR) scheduler; return "
                '{"optimizer": optimizer, "lr_scheduler": {"scheduler": MLRSNetLR(optimizer, net), '
                '"interval": "step"}}'
            )
        for scheduler in schedulers:
            # fed in torch's order from now on: a step without a loss (a training_step that
            # returned None) keeps the lr, even before the first loss
            scheduler.mark_observing()
        self.schedulers = schedulers
        self._wrap(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give the logged validation loss to the networks that read one."""
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        readers = [s for s in self.schedulers
                   if isinstance(s, MLRSNetPlusLR) and s.net.reads_validation]  # fmt: skip
        if not readers:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ValueError(
                f"MLRSNetCallback: the MLR-SNet+ network reads a validation loss, but "
                f"{self.monitor!r} was not logged (logged: {sorted(trainer.callback_metrics)}); "
                f"log it in validation_step (self.log({self.monitor!r}, loss)) or name it with "
                "MLRSNetCallback(monitor=...)"
            )
        for scheduler in readers:
            scheduler.observe_validation(value.detach() if isinstance(value, Tensor) else value)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the wrapper from ``training_step``."""
        self._unwrap()

    def _wrap(self, pl_module: pl.LightningModule) -> None:
        self._unwrap()
        original: Callable[..., Any] = pl_module.training_step
        schedulers = self.schedulers

        @functools.wraps(original)
        def training_step(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            loss = output.get("loss") if isinstance(output, Mapping) else output
            if isinstance(loss, Tensor):
                loss = loss.detach()
                for scheduler in schedulers:
                    scheduler.observe(loss)
            else:  # None skips the batch; Lightning then steps the scheduler, which holds
                logger.debug("MLRSNetCallback: training_step returned no loss")
            return output

        self._saved = pl_module.__dict__.get("training_step", _MISSING)
        pl_module.training_step = training_step  # type: ignore[method-assign]
        self._module = pl_module

    def _unwrap(self) -> None:
        module, self._module = self._module, None
        if module is None:
            return
        if self._saved is _MISSING:
            module.__dict__.pop("training_step", None)
        else:
            module.training_step = self._saved  # type: ignore[method-assign]
        self._saved = _MISSING
