"""Lightning: the learning rates a real Trainer uses equal a hand-written loop's, and resume."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import mlrsnet

pl = pytest.importorskip("lightning.pytorch")
from mlrsnet.integrations.lightning import MLRSNetCallback  # noqa: E402

BATCHES, BATCH_SIZE = 6, 8


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        # Lightning's own notes on a tiny CPU run: few workers, a loader of few batches, ...
        warnings.filterwarnings("ignore", module=r"lightning\..*")
        warnings.filterwarnings("ignore", message=r".*(num_workers|LeafSpec|log_every_n_steps).*")
        yield


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH_SIZE, 5, generator=g)
    y = x.sum(1, keepdim=True).sin() + 0.1 * torch.randn(len(x), 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH_SIZE)


def net_state(seed):
    torch.manual_seed(seed)
    return mlrsnet.MLRSNet().state_dict()


class Regression(pl.LightningModule):
    def __init__(self, net_seed=1, interval="step"):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
        self.net_seed, self.interval = net_seed, interval

    def training_step(self, batch, batch_idx):
        x, y = batch
        return {"loss": nn.functional.mse_loss(self.model(x), y)}

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.5)
        net = mlrsnet.MLRSNet()
        net.load_state_dict(net_state(self.net_seed))
        scheduler = mlrsnet.MLRSNetLR(optimizer, net)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.interval}}  # fmt: skip


class RecordLR(pl.Callback):
    """The learning rate each optimizer step runs at."""

    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def trainer(epochs, accumulate, callbacks, **kwargs):
    return pl.Trainer(max_epochs=epochs, accumulate_grad_batches=accumulate, accelerator="cpu",
                      devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=callbacks, **kwargs)  # fmt: skip


def hand_written(epochs, accumulate):
    """The same training as a plain loop in torch's order: observe, optimizer.step(), step()."""
    module = Regression()
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(epochs):
        batches = list(loader())
        for start in range(0, len(batches), accumulate):
            for i, batch in enumerate(batches[start : start + accumulate], start):
                loss = module.training_step(batch, i)["loss"]
                (loss / accumulate).backward()
                scheduler.observe(loss.detach())  # every micro-batch: the step reads the mean
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    return lrs, scheduler


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_uses_the_learning_rates_of_a_hand_written_loop(accumulate):
    record = RecordLR()
    module = Regression()
    trainer(3, accumulate, [MLRSNetCallback(), record], enable_checkpointing=False).fit(
        module, loader()
    )
    expected, reference = hand_written(3, accumulate)
    steps = 3 * BATCHES // accumulate
    assert len(record.lrs) == steps
    assert record.lrs == expected
    assert len(set(expected)) == steps  # every step had a learning rate of its own
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.num_steps == steps  # once per optimizer step, not per micro-batch
    assert scheduler.get_last_lr() == reference.get_last_lr()
    assert "training_step" not in module.__dict__  # the wrapper is gone after fit


def test_a_lightning_checkpoint_resumes_with_identical_learning_rates(tmp_path):
    full = RecordLR()
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1)
    trainer(4, 2, [MLRSNetCallback(), full, saver]).fit(Regression(), loader())
    checkpoint = tmp_path / "epoch=1-step=6.ckpt"
    assert checkpoint.is_file()
    resumed = RecordLR()
    # another schedule network and model: the checkpoint brings back the saved ones
    trainer(4, 2, [MLRSNetCallback(), resumed], enable_checkpointing=False).fit(
        Regression(net_seed=7), loader(), ckpt_path=checkpoint
    )
    assert len(full.lrs) == 12
    assert resumed.lrs == full.lrs[6:]


def test_the_callback_refuses_a_scheduler_stepped_per_epoch():
    with pytest.raises(ValueError, match='"interval": "step"'):
        trainer(1, 1, [MLRSNetCallback()], enable_checkpointing=False).fit(
            Regression(interval="epoch"), loader()
        )


class SkipsBatches(Regression):
    """Returns no loss for some batches: Lightning skips backward, still steps the scheduler."""

    SKIPPED = (0, 3)

    def training_step(self, batch, batch_idx):
        return None if batch_idx in self.SKIPPED else super().training_step(batch, batch_idx)


def test_a_batch_without_a_loss_keeps_the_learning_rate():
    record = RecordLR()
    trainer(1, 1, [MLRSNetCallback(), record], enable_checkpointing=False).fit(
        SkipsBatches(), loader()
    )
    module = Regression()
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    expected = []
    for i, batch in enumerate(loader()):
        expected.append(optimizer.param_groups[0]["lr"])
        if i not in SkipsBatches.SKIPPED:
            loss = module.training_step(batch, i)["loss"]
            loss.backward()
            scheduler.observe(loss.detach())
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()  # a batch without a loss is as if the scheduler were not stepped
    assert record.lrs == expected
    assert expected[0] == expected[1] == 0.5 and expected[4] == expected[3]
    assert scheduler.num_steps == BATCHES - len(SkipsBatches.SKIPPED)


class PlusRegression(Regression):
    """The same module with MLR-SNet+ (its torch order is the same one-step lag)."""

    def configure_optimizers(self):
        from mlrsnet.plus import MLRSNetPlusLR, PlusNet

        optimizer = torch.optim.AdamW(self.parameters(), lr=0.01)
        torch.manual_seed(self.net_seed)
        net = PlusNet(hidden=6)
        with torch.no_grad():
            net.layer1.weight.mul_(3.0)  # let the loss features move the rate
        scheduler = MLRSNetPlusLR(optimizer, net, total_steps=3 * BATCHES)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}  # fmt: skip


def test_lightning_feeds_mlrsnet_plus_like_a_hand_written_loop():
    record = RecordLR()
    trainer(3, 1, [MLRSNetCallback(), record], enable_checkpointing=False).fit(
        PlusRegression(), loader()
    )
    module = PlusRegression()
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    expected = []
    for _ in range(3):
        for i, batch in enumerate(loader()):
            loss = module.training_step(batch, i)["loss"]
            loss.backward()
            scheduler.observe(loss.detach())
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    assert record.lrs == expected
    assert len(set(expected)) > BATCHES  # the rates move with the run


class ValidatedPlus(PlusRegression):
    """MLR-SNet+ with a network that reads a validation loss, logged as ``val_loss``."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.model(x), y))

    def configure_optimizers(self):
        from mlrsnet.plus import MLRSNetPlusLR, PlusNet

        optimizer = torch.optim.AdamW(self.parameters(), lr=0.01)
        torch.manual_seed(self.net_seed)
        scheduler = MLRSNetPlusLR(optimizer, PlusNet(hidden=6, validation=True),
                                  total_steps=3 * BATCHES)  # fmt: skip
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}  # fmt: skip


class RecordValidation(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.losses.append(float(trainer.callback_metrics["val_loss"]))


def test_lightning_gives_a_validation_network_each_validation_loss():
    record = RecordValidation()
    module = ValidatedPlus()
    trainer(3, 1, [MLRSNetCallback(), record], enable_checkpointing=False).fit(
        module, loader(), loader()
    )
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    state = scheduler.validation_state
    assert len(record.losses) == 3 and state.count == 3  # the sanity check is not fed
    assert state.last == record.losses[-1] and state.minimum == min(record.losses)
    with pytest.raises(ValueError, match="'val_nope' was not logged"):
        trainer(1, 1, [MLRSNetCallback(monitor="val_nope")], enable_checkpointing=False,
                num_sanity_val_steps=0).fit(ValidatedPlus(), loader(), loader())  # fmt: skip
    with pytest.raises(ValueError, match="monitor"):
        MLRSNetCallback(monitor="")
