"""MLRSNetLR: the torch protocol, paths, resume, stages, non-finite losses, bad input."""

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

import mlrsnet
from mlrsnet import MLRSNet, MLRSNetLR, paper_gamma


def make(lr=0.5, net=None, optimizer_cls=torch.optim.SGD, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    groups = [
        {"params": model[0].parameters(), "lr": lr},
        {"params": model[1].parameters(), "lr": lr / 10},
    ]
    optimizer = optimizer_cls(groups)
    if net is None and "stages" not in kwargs:
        net = mlrsnet.MLRSNet()
    return model, optimizer, mlrsnet.MLRSNetLR(optimizer, net, **kwargs)


def losses(n, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 4.0, n).tolist()


def reference_factors(net, values, dtype=torch.float64):
    net = copy.deepcopy(net).to(dtype)
    state, out = None, []
    with torch.no_grad():
        for v in values:
            factor, state = net(torch.tensor(v, dtype=dtype), state)
            out.append(factor.item())
    return out


def test_is_a_torch_lr_scheduler_and_sets_group_lr_from_the_loss():
    model, optimizer, scheduler = make()
    assert isinstance(scheduler, LRScheduler)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.05]  # untouched until a loss
    values = losses(20)
    expected = reference_factors(scheduler.net, values)
    for v, f in zip(values, expected, strict=True):
        scheduler.step(torch.tensor(v))
        lr0, lr1 = scheduler.get_last_lr()
        assert lr0 == pytest.approx(0.5 * f, rel=1e-6)
        assert lr1 == pytest.approx(0.05 * f, rel=1e-6)  # groups keep their ratio
        assert optimizer.param_groups[0]["lr"] == lr0
    assert scheduler.last_epoch == scheduler.num_steps == 20


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_fast_path_agrees_with_reference_path(layers, dtype, tol):
    torch.manual_seed(layers)
    net = mlrsnet.MLRSNet(num_layers=layers).to(dtype)
    _, _, fast = make(net=net)
    _, _, slow = make(net=net, fast=False)
    for v in losses(300, seed=layers):
        fast.step(v)
        slow.step(torch.tensor(v, dtype=dtype))
        assert fast.get_last_lr()[0] == pytest.approx(slow.get_last_lr()[0], abs=tol)
    torch.testing.assert_close(fast.state[0].to(dtype), slow.state[0], atol=tol * 10, rtol=0)


@pytest.mark.parametrize(
    "optimizer_cls",
    [
        torch.optim.SGD,
        lambda g: torch.optim.SGD(g, momentum=0.9, nesterov=True),
        torch.optim.AdamW,
        torch.optim.Adam,
        torch.optim.RMSprop,
        torch.optim.Adagrad,
    ],
)
def test_any_optimizer_trains(optimizer_cls):
    model, optimizer, scheduler = make(lr=0.05, optimizer_cls=optimizer_cls)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        scheduler.step(loss)
        optimizer.step()
    assert loss.item() < first
    assert all(math.isfinite(lr) for lr in scheduler.get_last_lr())


def test_tensor_lr_stays_a_tensor_updated_in_place():
    model = torch.nn.Linear(3, 1)
    lr = torch.tensor(0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)
    scheduler = mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())
    group_lr = optimizer.param_groups[0]["lr"]
    scheduler.step(torch.tensor(1.0))
    assert optimizer.param_groups[0]["lr"] is group_lr
    assert isinstance(scheduler.get_last_lr()[0], torch.Tensor)
    assert group_lr.item() == pytest.approx(0.1 * scheduler.factor.item(), rel=1e-6)


def test_step_never_backpropagates_into_the_loss():
    model, optimizer, scheduler = make()
    loss = model(torch.randn(4, 3)).pow(2).mean()
    scheduler.step(loss)
    loss.backward()  # the graph is intact
    assert all(p.grad is None for p in scheduler.net.parameters())


def test_paper_order_does_not_warn():
    model, optimizer, scheduler = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        scheduler.step(loss)
        optimizer.step()


def _save_load(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("fast", [True, False])
def test_resume_gives_bit_identical_learning_rates(fast):
    values = losses(60, seed=3)
    _, _, full = make(fast=fast)
    uninterrupted = []
    for v in values:
        full.step(v)
        uninterrupted.append(full.get_last_lr())
    _, _, first = make(fast=fast)
    resumed = []
    for v in values[:25]:
        first.step(v)
        resumed.append(first.get_last_lr())
    state = _save_load(first.state_dict())
    assert all(isinstance(v, (torch.Tensor, int, float, list)) for v in state.values())
    torch.manual_seed(123)  # a differently initialised network: the weights come from the state
    _, _, second = make(net=mlrsnet.MLRSNet(), fast=fast)
    second.load_state_dict(state)
    for v in values[25:]:
        second.step(v)
        resumed.append(second.get_last_lr())
    assert resumed == uninterrupted


def test_stages_switch_networks_and_call_the_hook():
    torch.manual_seed(0)
    nets = [mlrsnet.MLRSNet() for _ in range(3)]
    calls = []

    def on_stage_start(index, scheduler):
        calls.append((index, scheduler.num_steps))
        return 1.0 * index

    _, optimizer, scheduler = make(
        lr=0.3,
        stages=[(0.0, nets[0]), (1 / 3, nets[1]), (2 / 3, nets[2])],
        total_steps=30,
        on_stage_start=on_stage_start,
    )
    values = losses(30)
    for i, v in enumerate(values):
        scheduler.step(v)
        expected_stage = 0 if i < 10 else 1 if i < 20 else 2
        assert scheduler.stage_index == expected_stage
        assert scheduler.net is nets[expected_stage]
    assert calls == [(1, 10), (2, 20)]
    assert scheduler.base_lrs == [2.0, 2.0]
    # the state carries across stages, as in the authors' transfer code
    state = None
    with torch.no_grad():
        for i, v in enumerate(values):
            factor, state = nets[0 if i < 10 else 1 if i < 20 else 2](torch.tensor(v), state)
    assert scheduler.get_last_lr()[0] == pytest.approx(2.0 * factor.item(), rel=1e-6)


def test_stages_resume_exactly():
    torch.manual_seed(0)
    nets = [mlrsnet.MLRSNet() for _ in range(2)]

    def build():
        return make(stages=[(0.0, copy.deepcopy(nets[0])), (0.5, copy.deepcopy(nets[1]))],
                    total_steps=20, on_stage_start=lambda i, s: 0.7)[2]  # fmt: skip

    values = losses(20)
    full = build()
    expected = []
    for v in values:
        full.step(v)
        expected.append(full.get_last_lr())
    part = build()
    got = []
    for v in values[:13]:
        part.step(v)
        got.append(part.get_last_lr())
    rest = build()
    rest.load_state_dict(_save_load(part.state_dict()))
    for v in values[13:]:
        rest.step(v)
        got.append(rest.get_last_lr())
    assert got == expected


@pytest.mark.parametrize("fast", [True, False])
def test_non_finite_losses_never_reach_the_optimizer(fast):
    _, optimizer, scheduler = make(fast=fast)
    rng = np.random.default_rng(7)
    values = losses(200, seed=7)
    bad = sorted(rng.choice(np.arange(1, 200), 25, replace=False).tolist())
    for i in bad:
        values[i] = [float("nan"), float("inf"), -float("inf"), 1e300][i % 4]
    clean = [v for v in values if math.isfinite(v) and abs(v) < 1e200]
    expected = reference_factors(scheduler.net, clean)
    with pytest.warns(RuntimeWarning, match="non-finite") as record:
        k, previous = 0, None
        for i, v in enumerate(values):
            scheduler.step(torch.tensor(v, dtype=torch.float64) if i % 2 else v)
            lr = optimizer.param_groups[0]["lr"]
            assert math.isfinite(lr)
            if i in bad:
                assert lr == previous
            else:
                assert lr == pytest.approx(0.5 * expected[k], rel=1e-5)
                k += 1
            previous = lr
    assert len([w for w in record if "non-finite" in str(w.message)]) == 1
    assert scheduler.num_nonfinite == 25  # 1e300 overflows the float32 network too


def test_bad_input_is_named():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(TypeError, match="Optimizer"):
        mlrsnet.MLRSNetLR("sgd", mlrsnet.MLRSNet())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups.clear()
    with pytest.raises(ValueError, match="no param groups"):
        mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())
    _, _, scheduler = make()
    with pytest.raises(TypeError, match="training loss"):
        scheduler.step()
    with pytest.raises(ValueError, match="scalar"):
        scheduler.step(torch.ones(2))
    with pytest.raises(TypeError, match="float or a tensor"):
        scheduler.step("1.0")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="exactly one"):
        mlrsnet.MLRSNetLR(optimizer)
    with pytest.raises(ValueError, match="total_steps"):
        mlrsnet.MLRSNetLR(optimizer, stages=[(0.0, mlrsnet.MLRSNet()), (0.5, mlrsnet.MLRSNet())])
    with pytest.raises(ValueError, match="start at 0"):
        mlrsnet.MLRSNetLR(optimizer, stages=[(0.1, mlrsnet.MLRSNet())])
    with pytest.raises(ValueError, match="increase"):
        mlrsnet.MLRSNetLR(optimizer, stages=[(0.0, mlrsnet.MLRSNet()), (1.0, mlrsnet.MLRSNet())],
                          total_steps=10)  # fmt: skip
    with pytest.raises(ValueError, match="positive finite"):
        scheduler.set_scale(float("nan"))


def test_load_state_dict_names_what_differs():
    _, _, small = make(net=mlrsnet.MLRSNet(hidden_size=20))
    _, _, big = make()
    with pytest.raises(ValueError, match="shape"):
        big.load_state_dict(small.state_dict())
    with pytest.raises(ValueError, match="missing keys"):
        big.load_state_dict({"num_steps": 3})


@pytest.mark.parametrize("fast", [True, False])
def test_loss_scale_divides_what_the_network_reads(fast):
    torch.manual_seed(0)
    net = mlrsnet.MLRSNet()
    _, _, scaled = make(net=net, fast=fast, loss_scale=9.21)
    _, _, plain = make(net=net, fast=fast)
    for v in losses(20):
        scaled.step(v)
        plain.step(v / 9.21)
        assert scaled.get_last_lr()[0] == pytest.approx(plain.get_last_lr()[0], rel=1e-12)
    with pytest.raises(ValueError, match="loss_scale"):
        make(loss_scale=0.0)


# -- named stage scale policies ------------------------------------------------------


def _staged(optimizer, policy, num_classes=10, **kw):
    torch.manual_seed(0)
    nets = [MLRSNet() for _ in range(3)]
    return MLRSNetLR(optimizer, stages=[(0.0, nets[0]), (1 / 3, nets[1]), (2 / 3, nets[2])],
                     total_steps=9, stage_scale=policy, num_classes=num_classes, **kw)  # fmt: skip


def _reference_average(losses, decay=0.98):
    total = weight = 0.0
    for x in losses:
        if math.isfinite(x):
            total, weight = decay * total + x, decay * weight + 1.0
    return total / weight


@pytest.mark.parametrize("fast", [True, False])
def test_paper_stage_scale_applies_the_rule_to_the_tracked_loss(fast):
    w = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([{"params": [w], "lr": 0.5}, {"params": [], "lr": 1.0}])
    optimizer.param_groups[1]["params"] = [torch.nn.Parameter(torch.zeros(1))]
    scheduler = _staged(optimizer, "paper", fast=fast)
    losses = [2.3, 2.2, float("nan"), 2.0, 1.9, 1.8]
    with pytest.warns(RuntimeWarning, match="non-finite loss"):  # the NaN is not tracked
        for loss in losses[:3]:
            scheduler.step(torch.tensor(loss, dtype=torch.float64))
    assert scheduler.base_lrs == [0.5, 1.0]  # stage 1 starts at the next step
    scheduler.step(torch.tensor(losses[3], dtype=torch.float64))
    expected = paper_gamma(_reference_average(losses[:3]), 10)
    assert scheduler.base_lrs[0] == pytest.approx(expected, rel=1e-12)
    assert scheduler.base_lrs[1] == pytest.approx(2 * expected, rel=1e-12)  # ratio kept
    assert scheduler.tracked_loss == pytest.approx(_reference_average(losses[:4]), rel=1e-12)


def test_guarded_stage_scale_keeps_gamma_near_the_rules_zero_and_never_raises():
    results = {}
    for policy in ("paper", "paper-guarded", "fixed"):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.6)
        scheduler = _staged(optimizer, policy)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for loss in [0.08, 0.08, 0.08, 0.0, 0.0, 0.0, 0.0, 0.0]:  # L·C = 0.8, then 0
                scheduler.step(loss)
        results[policy] = scheduler.base_lrs[0]
        notes = [w for w in caught if "gamma kept" in str(w.message)]
        assert len(notes) == (0 if policy in ("fixed", "paper") else 1)  # warned once
    assert results["fixed"] == results["paper-guarded"] == 0.6
    assert results["paper"] != 0.6  # the rule near L·C = 1 (the second switch keeps it: L ≈ 0)


def test_paper_stage_scale_is_refused_for_other_optimizers_and_warns_with_momentum():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="paper's scale rule for SGD; AdamW"):
        _staged(torch.optim.AdamW(params, lr=1e-3), "paper")
    _staged(torch.optim.AdamW(params, lr=1e-3), "fixed")  # fixed works with any optimizer
    with pytest.warns(RuntimeWarning, match="without momentum; with momentum 0.9 each step"):
        _staged(torch.optim.SGD(params, lr=0.1, momentum=0.9), "paper")
    with pytest.raises(ValueError, match="needs num_classes"):
        _staged(torch.optim.SGD(params, lr=0.1), "paper", num_classes=None)
    with pytest.raises(ValueError, match="stage_scale must be one of"):
        _staged(torch.optim.SGD(params, lr=0.1), "rule")


def test_stage_scale_state_resumes_exactly():
    def make():
        return _staged(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5), "paper")

    losses = [2.3, 2.1, 1.7, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7]
    full = make()
    trace = []
    for loss in losses:
        full.step(loss)
        trace.append(full.get_last_lr()[0])
    half = make()
    for loss in losses[:2]:
        half.step(loss)
    saved = copy.deepcopy(half.state_dict())
    resumed = make()
    resumed.load_state_dict(saved)
    rest = []
    for loss in losses[2:]:
        resumed.step(loss)
        rest.append(resumed.get_last_lr()[0])
    assert rest == trace[2:]


# -- torch's order: observe(loss) before optimizer.step(), step() after it ----------------------


def _lag_pair(fast, staged):
    """Two identical schedulers (two param groups), plain or in three stages with the paper's
    scale rule, which switch networks and rescale mid-run."""

    def build():
        if not staged:
            return make(fast=fast)[1:]
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
        optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.5},
                                     {"params": model[1].parameters(), "lr": 0.05}])  # fmt: skip
        nets = [MLRSNet() for _ in range(3)]
        scheduler = MLRSNetLR(optimizer, stages=[(0.0, nets[0]), (0.3, nets[1]), (0.6, nets[2])],
                              total_steps=40, stage_scale="paper", num_classes=10, fast=fast)  # fmt: skip
        return optimizer, scheduler

    return build(), build()


@pytest.mark.parametrize("staged", [False, True])
@pytest.mark.parametrize("fast", [True, False])
def test_torch_order_differs_from_the_paper_order_only_by_a_one_step_lag(fast, staged):
    values = losses(40, seed=11)
    values[7], values[23] = float("nan"), float("inf")  # non-finite losses lag the same way
    (paper_opt, paper), (torch_opt, torch_sched) = _lag_pair(fast, staged)
    initial = [g["lr"] for g in torch_opt.param_groups]
    paper_lrs, torch_lrs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the non-finite losses' warning
        for i, v in enumerate(values):
            loss = torch.tensor(v) if i % 2 else v
            paper.step(loss)  # the paper's order: this step's lr from this step's loss
            paper_lrs.append([g["lr"] for g in paper_opt.param_groups])
            torch_lrs.append([g["lr"] for g in torch_opt.param_groups])  # what step i runs at
            torch_sched.observe(loss)  # torch's order: observe, optimizer.step(), step()
            torch_sched.step()
    assert torch_lrs[0] == initial  # step 0 runs at γ: no loss has been read yet
    assert torch_lrs[1:] == paper_lrs[:-1]  # step t + 1 in torch's order == step t in the paper's
    assert torch_sched.get_last_lr() == paper.get_last_lr() == paper_lrs[-1]
    assert torch_sched.num_steps == paper.num_steps == 40
    assert torch_sched.num_nonfinite == paper.num_nonfinite == 2
    assert torch_sched.stage_index == paper.stage_index == (2 if staged else 0)
    for a, b in zip(torch_sched.state, paper.state, strict=True):
        assert torch.equal(a, b)
    assert len(set(map(tuple, paper_lrs))) > 30  # the schedule moved


@pytest.mark.parametrize("fast", [True, False])
def test_observed_losses_are_averaged_until_the_step_reads_them(fast):
    _, opt_a, a = make(fast=fast)
    _, opt_b, b = make(fast=fast)
    for micro in ([1.5, 2.5], [torch.tensor(0.75), 1.25, torch.tensor(1.0, dtype=torch.float64)]):
        for v in micro:
            a.observe(v)
        assert a.observed_count == len(micro)
        a.step()
        assert a.observed_count == 0
        b.observe(sum(float(v) for v in micro) / len(micro))
        b.step()
        assert a.get_last_lr() == b.get_last_lr()
        assert [g["lr"] for g in opt_a.param_groups] == [g["lr"] for g in opt_b.param_groups]


def test_step_without_an_observed_loss_holds_and_mixing_the_orders_is_refused():
    _, optimizer, scheduler = make()
    with pytest.raises(TypeError, match=r"observe\(loss\)"):
        scheduler.step()  # nothing was ever observed: the loss is missing
    scheduler.observe(2.0)
    with pytest.raises(RuntimeError, match="one order"):
        scheduler.step(2.0)
    scheduler.step()
    lrs, state = scheduler.get_last_lr(), [t.clone() for t in scheduler.state]
    scheduler.step()  # nothing observed since the last step: lr and state kept, no step counted
    scheduler.step()
    assert scheduler.get_last_lr() == lrs and [g["lr"] for g in optimizer.param_groups] == lrs
    assert all(torch.equal(a, b) for a, b in zip(scheduler.state, state, strict=True))
    assert scheduler.num_steps == scheduler.last_epoch == 1
    with pytest.raises(ValueError, match="scalar"):
        scheduler.observe(torch.ones(3))
    with pytest.raises(TypeError, match="float or a tensor"):
        scheduler.observe("0.5")


@pytest.mark.parametrize("fast", [True, False])
def test_a_non_finite_observed_loss_never_gives_a_non_finite_lr(fast):
    _, optimizer, scheduler = make(fast=fast)
    scheduler.observe(1.0)
    scheduler.step()
    lrs = scheduler.get_last_lr()
    for bad in ([float("nan")], [float("inf")], [1.0, -float("inf")], [torch.tensor(float("nan"))]):
        for v in bad:
            scheduler.observe(v)
        with pytest.warns(RuntimeWarning, match="non-finite") if scheduler.num_nonfinite == 0 \
                else warnings.catch_warnings():  # fmt: skip
            scheduler.step()
        assert [g["lr"] for g in optimizer.param_groups] == lrs
        assert all(math.isfinite(lr) for lr in lrs)
    assert scheduler.num_nonfinite == 4


@pytest.mark.parametrize("stop", [12, 13])  # a float pending, a float32 tensor pending
@pytest.mark.parametrize("pending", [1, 2])
@pytest.mark.parametrize("fast", [True, False])
def test_torch_order_resumes_exactly_with_observed_losses_pending(fast, pending, stop):
    values = losses(30, seed=5)

    def run(scheduler, vs, start, stop=None):
        out = []
        for i, v in enumerate(vs, start):
            for k in range(pending):  # several micro-batches: the mean is read
                scheduler.observe(torch.tensor(v * (1 + 0.1 * k)) if i % 2 else v * (1 + 0.1 * k))
            if i == stop:  # saved between observe and step
                return out
            scheduler.step()
            out.append(scheduler.get_last_lr())
        return out

    _, _, full = make(fast=fast)
    expected = run(full, values, 0)
    _, _, first = make(fast=fast)
    got = run(first, values[: stop + 1], 0, stop=stop)
    assert first.observed_count == pending
    state = _save_load(first.state_dict())
    assert all(isinstance(v, (torch.Tensor, int, float, list)) for v in state.values())
    torch.manual_seed(99)
    _, _, second = make(net=mlrsnet.MLRSNet(), fast=fast)
    second.load_state_dict(state)
    assert second.observed_count == pending
    second.step()
    got.append(second.get_last_lr())
    got += run(second, values[stop + 1 :], stop + 1)
    assert got == expected
    assert len(got) == 30


# -- issue 15, finding 4: no non-finite learning rate through a loaded state or the numpy path


def _hostile(state, key, value):
    state = dict(state)
    state[key] = value
    return state


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "key,value,match",
    [
        ("factor", torch.tensor(float("nan")), "factor"),
        ("factor", torch.tensor(1.5), "factor"),
        ("base_lrs", [float("inf"), 0.05], "base_lrs"),
        ("base_lrs", [0.5, -0.1], "base_lrs"),
        ("base_lrs", [0.5, True], "base_lrs"),
        ("h", torch.full((1, 50), float("nan")), "LSTM state h"),
        ("c", torch.full((1, 50), float("inf")), "LSTM state c"),
        ("c", torch.zeros(1, 50, dtype=torch.int64), "LSTM state c"),
        ("loss_scale", float("nan"), "loss_scale"),
        ("loss_average", torch.tensor([float("nan"), 1.0]), "loss_average"),
        ("num_steps", -3, "num_steps"),
        ("num_nonfinite", 2.5, "num_nonfinite"),
        ("stage_index", 4, "stage_index"),
        ("nets.0.head.bias", torch.tensor([float("nan")]), "non-finite"),
        ("nets.0.head.bias", torch.tensor([0], dtype=torch.int64), "dtype"),
    ],
)
def test_load_state_dict_refuses_every_bad_number_and_changes_nothing(fast, key, value, match):
    _, _, source = make(fast=fast)
    for v in losses(5):
        source.step(v)
    _, optimizer, target = make(fast=fast)
    target.step(1.0)
    before = (_save_load(target.state_dict()), [g["lr"] for g in optimizer.param_groups])
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(_hostile(source.state_dict(), key, value))
    after = (_save_load(target.state_dict()), [g["lr"] for g in optimizer.param_groups])
    assert after[1] == before[1]
    for k in before[0]:
        assert torch.equal(torch.as_tensor(after[0][k]), torch.as_tensor(before[0][k])), k


def test_the_numpy_path_checks_its_output_like_the_torch_path():
    # a state that went non-finite (on main a loaded NaN state did this): the factor is not
    # used, the step is counted, the learning rate stays the last finite one
    _, optimizer, scheduler = make(fast=True)
    scheduler.step(1.0)
    kept = optimizer.param_groups[0]["lr"]
    scheduler._c_np[:] = float("nan")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        scheduler.step(1.0)
    assert optimizer.param_groups[0]["lr"] == kept
    assert scheduler.num_nonfinite == 1


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300])
def test_a_non_finite_first_loss_gives_learning_rate_zero_until_a_finite_one(fast, bad):
    _, optimizer, scheduler = make(fast=fast)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        scheduler.step(bad)
        scheduler.step(bad)
    assert [g["lr"] for g in optimizer.param_groups] == [0.0, 0.0]
    assert scheduler.num_nonfinite == 2
    scheduler.step(2.0)  # the first finite loss: the network's factor from the initial state
    expected = reference_factors(scheduler.net, [2.0])[0]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * expected, rel=1e-5)
    scheduler.step(bad)  # from now on the last finite rate is kept
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * expected, rel=1e-5)
