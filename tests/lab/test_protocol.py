"""The one training-step protocol: every method is driven by the same loop, without branches."""

import copy

import pytest
import torch

import mlrsnet
from mlrsnet.lab import baselines
from mlrsnet.lab.meta_training import MetaTraining
from mlrsnet.lab.protocol import StepResult, TrainingMethod


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(6, 16, 4, generator=g)
    ys = torch.randint(0, 3, (6, 16), generator=g)
    return list(zip(xs, ys, strict=True))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _meta_training(model, save_epochs=(1, 2)):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    torch.manual_seed(1)
    net = mlrsnet.MLRSNet()
    trainer = mlrsnet.MetaTrainer(
        model, optimizer, mlrsnet.MLRSNetLR(optimizer, net),
        torch.optim.Adam(net.parameters(), lr=1e-3), torch.nn.functional.cross_entropy,
        meta_interval=2,
    )  # fmt: skip
    return MetaTraining(trainer, save_epochs=list(save_epochs))


def _methods():
    names = [n for n in baselines.names() if n not in ("mlrsnet", "mlrsnet-plus")]
    yield from ((n, lambda m, n=n: baselines.build(n, m.parameters(), total_steps=12,
                                                  steps_per_epoch=6)) for n in names)  # fmt: skip
    yield "mlrsnet", lambda m: baselines.build(
        "mlrsnet", m.parameters(), lr=0.2, network=mlrsnet.MLRSNet(), total_steps=12,
        steps_per_epoch=6,
    )  # fmt: skip
    yield "mlrsnet-plus", lambda m: baselines.build(
        "mlrsnet-plus", m.parameters(), lr=0.2, network=_plus_net(), total_steps=12,
        steps_per_epoch=6,
    )  # fmt: skip
    yield "meta-training", _meta_training


def _plus_net():
    from mlrsnet.plus import PlusNet

    torch.manual_seed(3)
    return PlusNet(hidden=4)


def _train(model, method, batches, epochs=2):
    """The run loop's shape: forward here, the rest in the method; no branch on its kind."""
    held_out = iter(_data(seed=1) * 10)
    meta_batch = lambda: next(held_out)  # noqa: E731
    meta_loss = lambda: torch.nn.functional.cross_entropy(model(*meta_batch()[:1]), meta_batch()[1])  # noqa: E731
    lrs, extras = [], []
    for _ in range(epochs):
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            result = method.step(loss, meta_loss=meta_loss, meta_batch=meta_batch)
            assert isinstance(result, StepResult) and result.lr == method.lr
            lrs.append(result.lr)
        method.eval()
        val_loss = (
            float(torch.nn.functional.cross_entropy(model(x), y).detach())
            if method.needs_val_loss
            else None
        )
        method.train()
        extras.append(method.epoch_end(val_loss=val_loss))
    return lrs, extras


@pytest.mark.parametrize("name, make", list(_methods()), ids=[n for n, _ in _methods()])
def test_every_method_runs_in_one_loop_and_resumes_exactly(name, make):
    batches = _data()
    model = _model()
    method = make(model)
    assert isinstance(method, TrainingMethod)
    lrs, _ = _train(model, method, batches, epochs=1)
    assert all(lr == lr for lr in lrs) and len(lrs) == len(batches)  # finite rates, one a step
    saved_model = copy.deepcopy(model.state_dict())
    saved_method = copy.deepcopy(method.state_dict())
    rest, _ = _train(model, method, batches, epochs=1)

    model_again = _model()
    model_again.load_state_dict(saved_model)
    again = make(model_again)
    again.load_state_dict(saved_method)
    assert _train(model_again, again, batches, epochs=1)[0] == rest
    for a, b in zip(model.parameters(), model_again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_meta_trainer_update_after_the_callers_forward_equals_step():
    batches = _data()
    a, b = _model(), _model()
    ta, tb = _meta_training(a).trainer, _meta_training(b).trainer
    for x, y in batches:
        sa = ta.step((x, y), meta_batch=(x, y))
        sb = tb.update(
            torch.nn.functional.cross_entropy(b(x), y), meta_batch=lambda x=x, y=y: (x, y)
        )
        assert sa["lr"] == sb["lr"] and torch.equal(sa["loss"], sb["loss"])
        assert ("meta_loss" in sa) == ("meta_loss" in sb)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ta.num_meta_steps == tb.num_meta_steps == 3


def test_meta_training_reports_meta_losses_and_keeps_snapshots_at_save_epochs():
    seen = []
    model = _model()
    method = _meta_training(model, save_epochs=(1, 2))
    method.on_snapshot = lambda snapshots, epoch: seen.append((sorted(snapshots), epoch))
    _, extras = _train(model, method, _data(), epochs=2)
    assert [e["meta_steps"] for e in extras] == [3, 6]
    assert all(e["meta_loss"] > 0 for e in extras)
    assert seen == [(["epoch_1"], 1), (["epoch_1", "epoch_2"], 2)]
    summary = method.summary()
    assert summary["num_meta_steps"] == 6 and summary["schedule_file"] == "schedule.safetensors"
    net = method.trainer.scheduler.net
    snapshot = method.snapshots["epoch_2"].state_dict()
    assert snapshot.keys() == net.state_dict().keys()
    assert all(torch.equal(v.float(), snapshot[k]) for k, v in net.state_dict().items())


def test_plateau_needs_the_validation_loss_and_only_it():
    needs = {n: baselines.build(n, _model().parameters(), total_steps=4, steps_per_epoch=2).needs_val_loss
             for n in baselines.names() if n not in ("mlrsnet", "mlrsnet-plus")}  # fmt: skip
    assert [n for n, v in needs.items() if v] == ["plateau"]
