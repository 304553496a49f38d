"""The learning-rate-free anchors of the benchmark at convergence: D-Adaptation (SGD, Adam),
DoG and Mechanic, from their maintained packages, with the step size each reports."""

from __future__ import annotations

import math

import dadaptation
import dog
import pytest
import torch
import torch.nn.functional as F

from mlrsnet.lab import baselines

X = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(1))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(name: str, steps: int = 60, **options):
    model = _model()
    schedule = baselines.build(name, model.parameters(), total_steps=steps, steps_per_epoch=20,
                               weight_decay=0.0, **options)  # fmt: skip
    lrs, losses = [], []
    for _ in range(steps):
        loss = F.cross_entropy(model(X), Y)
        losses.append(loss.item())
        lrs.append(schedule.step(loss).lr)
    return schedule, lrs, losses


@pytest.mark.parametrize(
    "name,options,cls",
    [
        ("dadaptation-sgd", {}, dadaptation.DAdaptSGD),
        ("dadaptation-adam", {}, dadaptation.DAdaptAdam),
        ("dog", {}, dog.DoG),
    ],
)
def test_the_package_optimizer_is_used_at_its_default(name, options, cls):
    schedule = baselines.build(name, _model().parameters(), total_steps=5, steps_per_epoch=5)
    assert type(schedule.optimizer) is cls
    assert schedule.optimizer.param_groups[0]["lr"] == 1.0 == baselines.default_lr(name)
    assert baselines.base_rate_optimizer(name) is None  # no rate to probe: they estimate it


def test_dadaptation_sgd_reports_the_step_size_it_took():
    model = _model()
    schedule = baselines.build("dadaptation-sgd", model.parameters(), total_steps=5,
                               steps_per_epoch=5, momentum=0.0, weight_decay=0.0)  # fmt: skip
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        loss = F.cross_entropy(model(X), Y)
        grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
        lr = schedule.step(loss).lr
        for p, p0, g in zip(model.parameters(), before, grads, strict=True):
            torch.testing.assert_close(p.detach(), p0 - lr * g)  # without momentum: SGD at lr
    group = schedule.optimizer.param_groups[0]
    assert schedule._current_lr() == float(group["d"] * group["lr"] / group["g0_norm"])


def test_dadaptation_adam_reports_d_times_lr_before_its_step():
    schedule, lrs, _ = _train("dadaptation-adam", steps=3)
    assert lrs[0] == pytest.approx(1e-6)  # d0
    assert schedule.lr == lrs[-1]


def test_dadaptation_adam_decouples_weight_decay_by_default():
    schedule = baselines.build("dadaptation-adam", _model().parameters(), total_steps=5,
                               steps_per_epoch=5)  # fmt: skip
    assert schedule.optimizer.param_groups[0]["decouple"] is True


def test_dog_reports_the_step_size_its_step_used():
    model = _model()
    schedule = baselines.build("dog", model.parameters(), total_steps=5, steps_per_epoch=5,
                               weight_decay=0.0)  # fmt: skip
    assert schedule.lr == 0.0  # nothing estimated before the first step
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(X), Y)
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    eta = schedule.step(loss).lr
    for p, p0, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - eta * g)  # plain SGD at step size eta
    # the first step size: reps_rel * (1 + |x0|) over the gradient norm (the DoG paper's)
    norm_x0 = torch.cat([p.flatten() for p in before]).norm()
    norm_g = torch.cat([g.flatten() for g in grads]).norm()
    assert eta == pytest.approx(1e-6 * (1 + norm_x0.item()) / norm_g.item(), rel=1e-4)


@pytest.mark.parametrize("optimizer,cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_mechanic_tunes_the_task_optimizer_scale(optimizer, cls):
    schedule, lrs, losses = _train("mechanic", steps=60, lr=0.1, optimizer=optimizer)
    assert isinstance(schedule.optimizer, cls)
    scale = float(torch.sum(schedule.optimizer.state["_mechanic"]["s"]))
    assert lrs[-1] == pytest.approx(0.1 * scale)
    assert lrs[-1] > 100 * lrs[0]  # the scale grows from s_init
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["dadaptation-sgd", "dadaptation-adam", "dog"])
def test_the_estimated_step_size_grows_and_the_loss_falls(name):
    _, lrs, losses = _train(name, steps=150)
    assert all(math.isfinite(v) and v > 0 for v in lrs)
    assert lrs[-1] > 10 * lrs[0]
    # progress, not a monotone fall: D-Adaptation SGD overshoots this full-batch toy once d
    # has grown (its loss ends above its best)
    assert min(losses) < 0.9 * losses[0]


def test_bad_options_name_the_problem():
    with pytest.raises(ValueError, match="optimizer"):
        baselines.build("mechanic", _model().parameters(), total_steps=5, steps_per_epoch=5,
                        optimizer="rmsprop")  # fmt: skip
    with pytest.raises(TypeError, match="momentum_dampening"):
        baselines.build("dog", _model().parameters(), total_steps=5, steps_per_epoch=5,
                        momentum_dampening=0.1)  # fmt: skip


def test_dadaptation_skips_a_zero_first_gradient_instead_of_dividing_by_it():
    model = _model()
    schedule = baselines.build("dadaptation-sgd", model.parameters(), total_steps=5,
                               steps_per_epoch=5)  # fmt: skip
    before = [p.detach().clone() for p in model.parameters()]
    loss = 0.0 * model(X).sum()  # a zero gradient
    schedule.step(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert schedule.optimizer.param_groups[0]["k"] == 0  # the next step is the first
