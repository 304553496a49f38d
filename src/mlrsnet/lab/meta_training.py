"""Meta-training an MLR-SNet as a method of the run loop.

:class:`MetaTraining` drives the core :class:`~mlrsnet.MetaTrainer` through the lab's
training-step protocol (:mod:`mlrsnet.lab.protocol`): every step trains the model, every
``meta_interval`` steps the schedule network takes a meta update on a held-out batch, and
at the chosen epochs a snapshot of the network is kept and handed to ``on_snapshot`` (the
runner writes it as ``schedule.safetensors``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from mlrsnet.lab.protocol import MetaBatch, MetaLoss, StepResult, TrainingMethod
from mlrsnet.meta import MetaTrainer
from mlrsnet.net import MLRSNet

__all__ = ["MetaTraining", "copy_net"]

#: Called with every snapshot so far (name -> network) and the epoch just finished.
SnapshotSink = Callable[[dict[str, MLRSNet], int], None]


def copy_net(net: MLRSNet) -> MLRSNet:
    """A float32 CPU copy of ``net``, detached from its optimizer."""
    copy = MLRSNet(**net.config())
    copy.load_checked({k: v.detach().cpu().float() for k, v in net.state_dict().items()})
    return copy


class MetaTraining(TrainingMethod):
    """The model trained by a :class:`~mlrsnet.MetaTrainer`, its network snapshotted.

    Args:
        trainer: The meta-trainer (model, SGD, its ``MLRSNetLR``, the meta-optimizer).
        save_epochs: Epochs (1-based) after which a snapshot ``epoch_E`` is kept.
        on_snapshot: Called with all snapshots so far and the epoch, after each new one.
    """

    name = "mlrsnet-meta-train"

    def __init__(
        self,
        trainer: MetaTrainer,
        *,
        save_epochs: Sequence[int],
        on_snapshot: SnapshotSink | None = None,
    ) -> None:
        self.trainer = trainer
        self.save_epochs = list(save_epochs)
        self.on_snapshot = on_snapshot
        self.snapshots: dict[str, MLRSNet] = {}
        self.epoch = 0
        self._meta_loss_sum = 0.0
        self._meta_count = 0

    def step(
        self,
        loss: Tensor,
        *,
        meta_loss: MetaLoss | None = None,
        meta_batch: MetaBatch | None = None,
    ) -> StepResult:
        """The core :meth:`MetaTrainer.update <mlrsnet.MetaTrainer.update>` of this loss."""
        stats = self.trainer.update(loss, meta_batch=meta_batch)
        value = None
        if "meta_loss" in stats:
            value = float(stats["meta_loss"])
            self._meta_loss_sum += value
            self._meta_count += 1
        return StepResult(
            lr=float(stats["lr"]), skipped=bool(stats.get("skipped")), meta_loss=value
        )

    def epoch_end(self, val_loss: float | None = None) -> dict[str, Any]:
        """The epoch's mean meta loss and meta-step count; a snapshot at a save epoch."""
        self.epoch += 1
        extra = {
            "meta_loss": self._meta_loss_sum / self._meta_count if self._meta_count else None,
            "meta_steps": self.trainer.num_meta_steps,
        }
        self._meta_loss_sum, self._meta_count = 0.0, 0
        if self.epoch in self.save_epochs:
            self.snapshots[f"epoch_{self.epoch}"] = copy_net(self.trainer.scheduler.net)
            if self.on_snapshot is not None:
                self.on_snapshot(self.snapshots, self.epoch)
        return extra

    @property
    def lr(self) -> float:
        """The learning rate of the last step."""
        return float(self.trainer.scheduler.get_last_lr()[0])

    def summary(self) -> dict[str, Any]:
        """Meta-step counts and the schedule file, for the run's summary."""
        return {
            "schedule_file": "schedule.safetensors" if self.snapshots else None,
            "num_meta_steps": self.trainer.num_meta_steps,
            "num_skipped_meta_steps": self.trainer.num_skipped_meta_steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """The trainer's state, the epoch counter, the meta-loss sums and the snapshots."""
        return {
            "trainer": self.trainer.state_dict(),
            "epoch": self.epoch,
            "meta_loss_sum": self._meta_loss_sum,
            "meta_count": self._meta_count,
            "snapshots": {
                name: {"config": net.config(), "weights": net.state_dict()}
                for name, net in self.snapshots.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.trainer.load_state_dict(state["trainer"])
        self.epoch = int(state["epoch"])
        self._meta_loss_sum = float(state["meta_loss_sum"])
        self._meta_count = int(state["meta_count"])
        self.snapshots = {}
        for name, saved in state["snapshots"].items():
            net = MLRSNet(**saved["config"])
            net.load_checked(saved["weights"])
            self.snapshots[name] = net
