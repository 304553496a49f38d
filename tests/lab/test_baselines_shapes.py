"""The shape schedules of :mod:`mlrsnet.lab.baselines` (cosine with warmup, linear, wsd) and
their ``optimizer`` / ``warmup`` options."""

import copy

import pytest
import torch
import torch.nn.functional as F

from mlrsnet import MLRSNet, shapes
from mlrsnet.lab import baselines

torch.set_num_threads(1)

X = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(1))


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


def build(name, total_steps, *, lr=0.2, model=None, **options):
    model = tiny_model() if model is None else model
    schedule = baselines.build(
        name,
        model.parameters(),
        lr=lr,
        total_steps=total_steps,
        steps_per_epoch=max(total_steps // 2, 1),
        **options,
    )
    return model, schedule


def drive(model, schedule, steps):
    """The lr of each of ``steps`` training steps, as :meth:`Schedule.step` reports it."""
    return [schedule.step(F.cross_entropy(model(X), Y)).lr for _ in range(steps)]


SHAPE_CASES = [
    ("linear", {}, shapes.linear_decay, {}),
    ("linear", {"warmup": 0.1}, shapes.linear_decay, {"warmup": 0.1}),
    ("linear", {"warmup": 0.3, "optimizer": "adamw"}, shapes.linear_decay, {"warmup": 0.3}),
    ("wsd", {}, shapes.warmup_stable_decay, {}),
    ("wsd", {"warmup": 0.05, "cooldown": 0.3}, shapes.warmup_stable_decay,
     {"warmup": 0.05, "cooldown": 0.3}),
    ("wsd", {"cooldown": 1.0, "optimizer": "adamw"}, shapes.warmup_stable_decay,
     {"cooldown": 1.0}),
    ("cosine", {"warmup": 0.1}, shapes.cosine_decay, {"warmup": 0.1}),
    ("cosine", {"warmup": 0.25, "optimizer": "adamw"}, shapes.cosine_decay, {"warmup": 0.25}),
]  # fmt: skip


@pytest.mark.parametrize("total_steps", [1, 7, 40])
@pytest.mark.parametrize("name,options,shape,shape_kw", SHAPE_CASES)
def test_lr_sequence_is_the_shape(name, options, shape, shape_kw, total_steps):
    base_lr = 0.2 if options.get("optimizer", "sgd") == "sgd" else 3e-3
    expected = [base_lr * shape(t, total_steps, **shape_kw) for t in range(total_steps)]
    model, schedule = build(name, total_steps, lr=base_lr, **options)
    # LambdaLR multiplies the base lr by the shape: the same product, so 1e-12 absolute
    assert drive(model, schedule, total_steps) == pytest.approx(expected, rel=0, abs=1e-12)


def test_cosine_warmup_with_eta_min_anneals_to_the_floor():
    total, lr, eta_min = 20, 0.2, 0.02
    model, schedule = build("cosine", total, lr=lr, warmup=0.2, eta_min=eta_min)
    lrs = drive(model, schedule, total)
    # warmup ramps lr * (t + 1) / 4, then eta_min + (lr - eta_min) * cosine over 16 steps
    assert lrs[:4] == pytest.approx([lr * (t + 1) / 4 for t in range(4)], rel=1e-12)
    expected = [eta_min + (lr - eta_min) * shapes.cosine_decay(t, total, warmup=0.2)
                for t in range(4, total)]  # fmt: skip
    assert lrs[4:] == pytest.approx(expected, rel=1e-12)
    assert min(lrs[4:]) > eta_min


def test_cosine_without_warmup_is_still_torch_cosine_annealing():
    model, schedule = build("cosine", 12)
    assert isinstance(schedule.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert type(schedule.optimizer) is torch.optim.SGD
    assert schedule.scheduler.T_max == 12
    assert drive(model, schedule, 12) == pytest.approx(
        [0.2 * shapes.cosine_decay(t, 12) for t in range(12)], rel=0, abs=1e-12
    )
    _, warm = build("cosine", 12, warmup=0.1)
    assert isinstance(warm.scheduler, torch.optim.lr_scheduler.LambdaLR)


@pytest.mark.parametrize("name", ["cosine", "linear", "wsd", "onecycle"])
def test_adamw_option_builds_adamw(name):
    model = tiny_model()
    schedule = baselines.build(
        name,
        model.parameters(),
        lr=2e-3,
        momentum=0.85,
        weight_decay=0.05,
        total_steps=10,
        steps_per_epoch=5,
        optimizer="adamw",
    )
    assert type(schedule.optimizer) is torch.optim.AdamW
    group = schedule.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.05
    assert group["betas"][1] == 0.999
    if name == "onecycle":  # the peak; it starts at lr / div_factor
        assert group["max_lr"] == 2e-3
        assert group["lr"] == pytest.approx(2e-3 / 25)
    else:
        assert group["lr"] == group["initial_lr"] == 2e-3
        assert group["betas"][0] == 0.85  # momentum is beta1
    drive(model, schedule, 3)
    assert schedule.optimizer.state[model.weight]["exp_avg"].shape == model.weight.shape


@pytest.mark.parametrize("name", ["cosine", "linear", "wsd", "onecycle"])
def test_sgd_is_the_default_optimizer(name):
    _, schedule = build(name, 10)
    assert type(schedule.optimizer) is torch.optim.SGD


@pytest.mark.parametrize("name", ["cosine", "linear", "wsd", "onecycle", "mlrsnet"])
@pytest.mark.parametrize("optimizer", ["adam", "SGD", "", None])
def test_unknown_optimizer_raises_naming_the_option(name, optimizer):
    extra = {"network": MLRSNet()} if name == "mlrsnet" else {}
    with pytest.raises(ValueError, match="optimizer"):
        build(name, 10, optimizer=optimizer, **extra)


@pytest.mark.parametrize("name", ["cosine", "linear", "wsd"])
@pytest.mark.parametrize("warmup", [1.0, -0.1, "0.1"])
def test_bad_warmup_raises(name, warmup):
    with pytest.raises(ValueError, match="warmup"):
        build(name, 10, warmup=warmup)


def test_wsd_warmup_plus_cooldown_beyond_the_run_raises():
    with pytest.raises(ValueError):
        build("wsd", 10, warmup=0.5, cooldown=0.6)
    with pytest.raises(ValueError, match="cooldown"):
        build("wsd", 10, cooldown=1.5)


def test_mlrsnet_with_adamw():
    torch.manual_seed(0)
    model, schedule = build("mlrsnet", 10, lr=1e-3, network=MLRSNet(), optimizer="adamw")
    assert type(schedule.optimizer) is torch.optim.AdamW
    assert schedule.optimizer.param_groups[0]["weight_decay"] == 5e-4


@pytest.mark.parametrize("stage_scale", ["paper", "fixed", "paper-guarded"])
def test_mlrsnet_stage_scale_rule_is_sgd_only(stage_scale):
    with pytest.raises(ValueError, match="stage_scale"):
        build(
            "mlrsnet", 10, network="fmnist-resnet", stage_scale=stage_scale, optimizer="adamw",
            num_classes=10,
        )  # fmt: skip
    # with SGD the same settings build
    _, schedule = build("mlrsnet", 10, network="fmnist-resnet", stage_scale=stage_scale,
                        num_classes=10, momentum=0.0)  # fmt: skip
    assert type(schedule.optimizer) is torch.optim.SGD


@pytest.mark.parametrize(
    "name,options",
    [
        ("linear", {"warmup": 0.2}),
        ("wsd", {"warmup": 0.1, "cooldown": 0.4}),
        ("wsd", {"optimizer": "adamw"}),
        ("cosine", {"warmup": 0.2}),
    ],
)
@pytest.mark.parametrize("k", [1, 6, 15])
def test_resume_from_state_dict_gives_the_same_lrs(name, options, k):
    total = 20
    model_a, a = build(name, total, **options)
    first = drive(model_a, a, k)
    model_b, b = build(name, total, model=tiny_model(seed=5), **options)
    model_b.load_state_dict(model_a.state_dict())
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert b.step_count == k and b.lr == a.lr
    rest_a, rest_b = drive(model_a, a, total - k), drive(model_b, b, total - k)
    assert rest_a == rest_b
    assert len(set(first + rest_a)) > 2  # the lr really changes over the run
    assert torch.equal(model_a.weight, model_b.weight)


@pytest.mark.parametrize("name", ["schedulefree-sgd", "schedulefree-adamw"])
@pytest.mark.parametrize("warmup,total", [(0.1, 100), (0.05, 30), (0.25, 7), (0.0, 50)])
def test_schedulefree_warmup_fraction_sets_warmup_steps(name, warmup, total):
    _, schedule = build(name, total, warmup=warmup)
    assert schedule.optimizer.param_groups[0]["warmup_steps"] == round(warmup * total)


@pytest.mark.parametrize("name", ["schedulefree-sgd", "schedulefree-adamw"])
def test_schedulefree_warmup_fraction_ramps_the_lr(name):
    # 4 warmup steps of 20: the package scales lr by (k + 1) / 4 while k < 4 (k from 0)
    model, schedule = build(name, 20, lr=0.5, warmup=0.2)
    lrs = drive(model, schedule, 6)
    assert lrs == pytest.approx([0.5 * (k + 1) / 4 for k in range(4)] + [0.5, 0.5], rel=1e-12)


@pytest.mark.parametrize("name", ["schedulefree-sgd", "schedulefree-adamw"])
def test_schedulefree_warmup_steps_still_work_and_both_raise(name):
    _, schedule = build(name, 100, warmup_steps=7)
    assert schedule.optimizer.param_groups[0]["warmup_steps"] == 7
    with pytest.raises(ValueError, match="warmup"):
        build(name, 100, warmup_steps=7, warmup=0.1)
    with pytest.raises(ValueError, match="warmup"):
        build(name, 100, warmup=1.0)
