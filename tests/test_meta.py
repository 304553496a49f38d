"""MetaTrainer: the authors' meta-gradient, finite differences, buffers, resume, bad input."""

import copy
import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import mlrsnet
from mlrsnet.functional import mlrsnet_forward, sgd_direction

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True)
        self.fc = nn.Linear(7, 3)

    def forward(self, x, hidden=None):
        out, hidden = self.lstm(x, hidden)
        return self.fc(out[:, -1]), hidden


def lstm_loss(outputs, targets):
    return nn.functional.cross_entropy(outputs[0], targets)


def build(model, *, momentum=0.9, weight_decay=5e-4, lr=0.2, meta_interval=1, dtype=torch.float64,
          loss_fn=nn.functional.cross_entropy, **kwargs):  # fmt: skip
    model = model.to(dtype)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    net = mlrsnet.MLRSNet().to(dtype)
    scheduler = mlrsnet.MLRSNetLR(optimizer, net)
    meta_optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    trainer = mlrsnet.MetaTrainer(model, optimizer, scheduler, meta_optimizer, loss_fn,
                                  meta_interval=meta_interval, **kwargs)  # fmt: skip
    return trainer


def load_case(case):
    model = TwoLayer().double()
    model.load_state_dict(
        {k: torch.tensor(v, dtype=torch.float64) for k, v in case["model_weights"].items()}
    )
    trainer = build(
        model, momentum=case["momentum"], weight_decay=case["weight_decay"], lr=case["gamma"]
    )
    net_state = {
        k: torch.tensor(v, dtype=torch.float64) for k, v in case["schedule_net_state"].items()
    }
    trainer.scheduler.net.load_state_dict(
        mlrsnet.MLRSNet.from_original(net_state).double().state_dict()
    )
    for name, p in model.named_parameters():
        if case["momentum_buffers"]:
            trainer.optimizer.state[p]["momentum_buffer"] = torch.tensor(
                case["momentum_buffers"][name], dtype=torch.float64
            )
    batch = torch.tensor(case["x"], dtype=torch.float64), torch.tensor(case["y"])
    meta = torch.tensor(case["x_meta"], dtype=torch.float64), torch.tensor(case["y_meta"])
    return trainer, batch, meta


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"reference fixtures not found at {REFERENCE}")
@pytest.mark.parametrize("index", [0, 1, 2])
def test_meta_gradient_equals_the_authors(index):
    case = json.loads((REFERENCE / "meta_step.json").read_text())["cases"][index]
    trainer, (x, y), meta = load_case(case)
    loss = nn.functional.cross_entropy(trainer.model(x), y)
    trainer.optimizer.zero_grad()
    loss.backward()
    meta_loss, _, grads = trainer.meta_gradient(loss.detach(), meta)
    expected = case["expected"]
    assert loss.item() == pytest.approx(expected["train_loss"], abs=1e-12)
    assert meta_loss.item() == pytest.approx(expected["meta_loss"], abs=1e-12)
    ours = dict(zip([n for n, _ in trainer.scheduler.net.named_parameters()], grads, strict=True))
    for key, value in expected["schedule_net_grads"].items():
        name = key.replace("layer1.", "cells.0.").replace("layer3.", "head.")
        error = (ours[name] - torch.tensor(value, dtype=torch.float64)).abs().max().item()
        assert error <= 1e-8, f"{key}: {error}"
    # and the learning rate the step then uses is the authors' (before any meta update)
    assert trainer.scheduler.base_lrs[0] * trainer._meta_terms(loss.detach(), meta)[0].item() == (
        pytest.approx(expected["lr"], abs=1e-12)
    )


def test_meta_gradient_against_central_finite_differences():
    torch.manual_seed(0)
    trainer = build(TwoLayer())
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    xm, ym = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    for _ in range(3):  # build momentum buffers
        trainer.step((x, y), meta_batch=(xm, ym))
    model, optimizer, net = trainer.model, trainer.optimizer, trainer.scheduler.net
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    _, _, grads = trainer.meta_gradient(loss.detach(), (xm, ym))

    def meta_loss():
        with torch.no_grad():
            factor, _ = mlrsnet_forward(loss.detach(), trainer.scheduler.state, net.cell_params(),
                                        net.head.weight, net.head.bias)  # fmt: skip
            group = optimizer.param_groups[0]
            new = {}
            for name, p in model.named_parameters():
                d = sgd_direction(p, p.grad, optimizer.state[p].get("momentum_buffer"),
                                  momentum=group["momentum"], weight_decay=group["weight_decay"])  # fmt: skip
                new[name] = p - group["initial_lr"] * factor * d
            out = torch.func.functional_call(model, new, (xm,))
            return nn.functional.cross_entropy(out, ym).item()

    params = list(net.parameters())
    eps = 1e-6
    checked = 0
    for p, g in zip(params, grads, strict=True):
        flat, gflat = p.data.view(-1), g.view(-1)
        for i in torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(1))[:3]:
            old = flat[i].item()
            flat[i] = old + eps
            plus = meta_loss()
            flat[i] = old - eps
            minus = meta_loss()
            flat[i] = old
            assert gflat[i].item() == pytest.approx((plus - minus) / (2 * eps), abs=1e-7)
            checked += 1
    assert checked == 28  # three entries of each tensor, the one of head.bias


def _plain_copy(trainer):
    """A deep copy that trains with plain SGD at the trainer's learning rates."""
    model = copy.deepcopy(trainer.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    return model, optimizer


@pytest.mark.parametrize("kind", ["batchnorm", "lstm"])
def test_lookahead_leaves_buffers_and_optimizer_state_as_a_plain_step(kind):
    torch.manual_seed(0)
    if kind == "batchnorm":
        trainer = build(BNNet(), grad_clip=1.0)
        make = lambda: (torch.randn(8, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (8,)))  # noqa: E731
    else:
        trainer = build(LSTMNet(), loss_fn=lstm_loss, grad_clip=0.25)
        make = lambda: (  # noqa: E731
            (torch.randn(8, 4, 5, dtype=torch.float64), None),
            torch.randint(0, 3, (8,)),
        )
    model, optimizer = _plain_copy(trainer)
    for _ in range(4):
        batch, meta = make(), make()
        stats = trainer.step(batch, meta_batch=meta)
        assert "meta_loss" in stats
        # the same step, plain: forward, backward, clip, SGD at the lr the trainer used
        inputs, targets = batch
        out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        loss = trainer.loss_fn(out, targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = stats["lr"]
        optimizer.step()
        assert stats["loss"].item() == loss.item()
        for (n, a), b in zip(
            trainer.model.state_dict().items(), model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), n
        for p, q in zip(trainer.model.parameters(), model.parameters(), strict=True):
            assert torch.equal(
                trainer.optimizer.state[p]["momentum_buffer"], optimizer.state[q]["momentum_buffer"]
            )
    if kind == "batchnorm":
        assert trainer.model.bn.num_batches_tracked.item() == 4


def test_the_step_uses_the_updated_network():
    torch.manual_seed(0)
    trainer = build(TwoLayer(), meta_interval=2)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    before = [p.detach().clone() for p in trainer.scheduler.net.parameters()]
    trainer.step((x, y), meta_batch=(x, y))
    state = tuple(t.clone() for t in trainer.scheduler.state)
    loss = nn.functional.cross_entropy(trainer.model(x), y).detach()
    stats = trainer.step((x, y), meta_batch=(x, y))
    after = list(trainer.scheduler.net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    net = trainer.scheduler.net
    factor, _ = mlrsnet_forward(loss, state, net.cell_params(), net.head.weight, net.head.bias)
    assert stats["lr"] == pytest.approx(0.2 * factor.item(), rel=1e-12)
    assert trainer.num_meta_steps == 1


def _save_load(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_resumed_meta_training_matches_uninterrupted():
    torch.manual_seed(0)
    data = [(torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))) for _ in range(14)]
    meta = (torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,)))

    def fresh():
        torch.manual_seed(1)
        return build(BNNet(), meta_interval=3, dtype=torch.float32)

    full = fresh()
    lrs = [full.step(batch, meta_batch=lambda: meta)["lr"] for batch in data]
    part = fresh()
    got = [part.step(batch, meta_batch=lambda: meta)["lr"] for batch in data[:7]]
    state = _save_load(part.state_dict())
    torch.manual_seed(99)
    rest = build(
        BNNet(), meta_interval=3, dtype=torch.float32
    )  # other weights: all come from the state
    rest.load_state_dict(state)
    got += [rest.step(batch, meta_batch=lambda: meta)["lr"] for batch in data[7:]]
    assert got == lrs
    for a, b in zip(full.scheduler.net.parameters(), rest.scheduler.net.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(
        full.model.state_dict().values(), rest.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert full.num_meta_steps == rest.num_meta_steps == 4


def test_non_finite_meta_gradient_is_skipped_and_counted():
    torch.manual_seed(0)
    trainer = build(TwoLayer())
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    bad = torch.full_like(x, float("nan"))
    before = [p.detach().clone() for p in trainer.scheduler.net.parameters()]
    stats = trainer.step((x, y), meta_batch=(bad, y))
    assert stats["meta_skipped"] and trainer.num_skipped_meta_steps == 1
    assert all(
        torch.equal(a, b) for a, b in zip(before, trainer.scheduler.net.parameters(), strict=True)
    )
    assert torch.isfinite(torch.tensor(stats["lr"]))


def test_bad_input_is_named():
    model = TwoLayer()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    net = mlrsnet.MLRSNet()
    scheduler = mlrsnet.MLRSNetLR(sgd, net)
    adam_meta = torch.optim.Adam(net.parameters())
    ce = nn.functional.cross_entropy
    with pytest.raises(ValueError, match="meta_interval"):
        mlrsnet.MetaTrainer(model, sgd, scheduler, adam_meta, ce, meta_interval=-3)
    adam = torch.optim.Adam(model.parameters())
    with pytest.raises(TypeError, match="SGD"):
        mlrsnet.MetaTrainer(model, adam, mlrsnet.MLRSNetLR(adam, net), adam_meta, ce)
    empty = torch.optim.SGD(model.parameters(), lr=0.1)
    empty.param_groups.clear()
    with pytest.raises(ValueError, match="no param groups"):
        mlrsnet.MetaTrainer(model, empty, scheduler, adam_meta, ce)
    trainer = mlrsnet.MetaTrainer(model, sgd, scheduler, adam_meta, lambda o, t: ce(o, t, reduction="none"),
                                  meta_interval=2)  # fmt: skip
    with pytest.raises(ValueError, match="scalar"):
        trainer.step((torch.randn(4, 6), torch.randint(0, 3, (4,))))
    trainer = mlrsnet.MetaTrainer(model, sgd, scheduler, adam_meta, ce, meta_interval=1)
    with pytest.raises(ValueError, match="needs meta_batch"):
        trainer.step((torch.randn(4, 6), torch.randint(0, 3, (4,))))
    with pytest.raises(TypeError, match="pair"):
        trainer.step(torch.randn(4, 6))


def test_a_meta_batch_callable_that_runs_out_is_named():
    torch.manual_seed(0)
    trainer = build(TwoLayer(), meta_interval=2)
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    meta_batches = iter([(x, y)])  # one meta batch: enough for step 2, not for step 4
    for _ in range(3):
        trainer.step((x, y), meta_batch=lambda: next(meta_batches))
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(ValueError, match=r"ran out of batches at step 4 \(meta_interval=2\)"):
        trainer.step((x, y), meta_batch=lambda: next(meta_batches))
    assert trainer.num_steps == 3 and trainer.num_meta_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters(), strict=True))


def test_injected_non_finite_losses_and_gradients_never_reach_the_weights():
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(11)
    steps = 60
    bad_loss = set(torch.randperm(steps, generator=rng)[:8].tolist())
    bad_grad = set(torch.randperm(steps, generator=rng)[:8].tolist()) - bad_loss
    bad_meta = set(range(1, steps, 2)) & set(torch.randperm(steps, generator=rng)[:20].tolist())
    bad_meta -= bad_loss | bad_grad
    current = {"step": 0}

    def loss_fn(outputs, targets):
        loss = nn.functional.cross_entropy(outputs, targets)
        if current["step"] in bad_loss:
            return loss * float(["nan", "inf", "-inf"][current["step"] % 3])
        return loss

    trainer = build(TwoLayer(), loss_fn=loss_fn, meta_interval=2)
    model = trainer.model
    model.fc2.weight.register_hook(lambda g: g * float("nan") if current["step"] in bad_grad else g)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    skipped_meta = 0
    for step in range(steps):
        current["step"] = step
        meta_x = torch.full_like(x, float("nan")) if step in bad_meta else x
        stats = trainer.step((x, y), meta_batch=(meta_x, y))
        assert torch.isfinite(torch.tensor(stats["lr"]))
        assert stats.get("skipped", False) == (step in bad_loss or step in bad_grad)
        skipped_meta += bool(stats.get("meta_skipped"))
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert all(torch.isfinite(p).all() for p in trainer.scheduler.net.parameters())
    assert trainer.num_skipped_steps == len(bad_loss) + len(bad_grad)
    assert trainer.num_skipped_meta_steps == skipped_meta == len(bad_meta)
    assert trainer.num_meta_steps + trainer.num_skipped_meta_steps == sum(
        1 for s in range(1, steps, 2) if s not in bad_loss | bad_grad
    )
