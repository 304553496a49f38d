"""Tests for mlrsnet.lab.baselines and the hypergradient optimizers it builds."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrsnet import MLRSNet
from mlrsnet.lab import baselines
from mlrsnet.lab.hypergradient import L4, RTHOSGD, SGDHD, hessian_vector_product
from mlrsnet.plus import PlusNet

ALL = [
    "fixed",
    "multistep",
    "exponential",
    "cosine",
    "linear",
    "wsd",
    "sgdr",
    "onecycle",
    "plateau",
    "adam",
    "adamw",
    "hd",
    "rtho",
    "l4",
    "schedulefree-sgd",
    "schedulefree-adamw",
    "prodigy",
    "dadaptation-sgd",
    "dadaptation-adam",
    "dog",
    "mechanic",
    "mlrsnet",
    "mlrsnet-plus",
]
torch.manual_seed(0)
_SCHEDULE_NET = MLRSNet()
_PLUS_NET = PlusNet()
SGD_FAMILY = [
    "fixed",
    "multistep",
    "exponential",
    "cosine",
    "sgdr",
    "onecycle",
    "plateau",
    "hd",
    "rtho",
    "l4",
    "schedulefree-sgd",
]


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: intra-op threads only add contention on shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(seed: int = 0, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.randn(4, 3, generator=g)
    return x, (x @ w).argmax(1)


X, Y = _data(0)
XV, YV = _data(1, 16)


def _model(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


def _run(model, sched, steps, *, start=0, spe=None, batches=None):
    """Drive the protocol; returns the lr used at every step."""
    spe = spe or sched.steps_per_epoch
    lrs = []
    for t in range(start, start + steps):
        sched.train()
        x, y = batches[t] if batches is not None else (X, Y)
        loss = F.cross_entropy(model(x), y)
        sched.step(loss, meta_loss=lambda: F.cross_entropy(model(XV), YV))
        lrs.append(sched.lr)
        if (t + 1) % spe == 0:
            sched.eval()
            with torch.no_grad():
                val = F.cross_entropy(model(XV), YV).item()
            sched.epoch_end(val_loss=val)
    return lrs


def _build(name, params, **kw):
    if name == "mlrsnet":
        kw.setdefault("network", copy.deepcopy(_SCHEDULE_NET))
    if name == "mlrsnet-plus":
        kw.setdefault("network", _PLUS_NET)
    kw.setdefault("total_steps", 20)
    kw.setdefault("steps_per_epoch", 5)
    return baselines.build(name, params, **kw)


# ---------------------------------------------------------------- registry / protocol
def test_names_lists_every_method():
    assert baselines.names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_every_name_runs_five_steps(name):
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    sched = _build(name, model.parameters())
    assert isinstance(sched.optimizer, torch.optim.Optimizer)
    lrs = _run(model, sched, 5)
    assert all(math.isfinite(lr) for lr in lrs)
    assert math.isfinite(sched.lr)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert sched.step_count == 5 and sched.epoch_count == 1
    assert name in repr(sched)


@pytest.mark.parametrize("name", SGD_FAMILY)
def test_sgd_family_decreases_loss(name):
    model = _model()
    sched = _build(name, model.parameters(), total_steps=30, steps_per_epoch=10)
    with torch.no_grad():
        first = F.cross_entropy(model(X), Y).item()
    _run(model, sched, 30)
    sched.eval()
    with torch.no_grad():
        last = F.cross_entropy(model(X), Y).item()
    assert last < 0.8 * first


@pytest.mark.parametrize("name", ALL)
def test_default_lr_used_when_none(name):
    sched = _build(name, _model().parameters(), weight_decay=0.0)
    if name in ("l4",):
        assert sched.optimizer.param_groups[0]["alpha"] == baselines.default_lr(name)
    elif name == "prodigy":
        assert sched.optimizer.param_groups[0]["lr"] == 1.0
    elif name == "onecycle":
        assert sched.optimizer.param_groups[0]["max_lr"] == baselines.default_lr(name)
    elif name == "mlrsnet-plus":  # the base rate; the network scales it from the first step
        assert sched.scheduler.base_lrs == [baselines.default_lr(name)]
    else:
        assert sched.optimizer.param_groups[0]["lr"] == baselines.default_lr(name)


def test_library_never_prints(capsys):
    for name in ALL:
        _run(_model(), _build(name, _model().parameters(), weight_decay=1e-2), 2)
    assert capsys.readouterr().out == ""


def test_grad_clip_bounds_first_step():
    w = torch.nn.Parameter(torch.tensor([30.0, 40.0]))
    sched = baselines.build(
        "fixed", [w], lr=0.1, weight_decay=0.0, total_steps=5, steps_per_epoch=5, grad_clip=1.0
    )
    sched.step(0.5 * (w**2).sum())
    # clipped gradient (0.6, 0.8); first momentum step moves by lr * g_clipped
    torch.testing.assert_close(w.detach(), torch.tensor([30.0 - 0.06, 40.0 - 0.08]))


# ---------------------------------------------------------------- closed-form schedules
def test_cosine_matches_formula():
    lr0, eta_min, T = 0.2, 0.01, 17
    sched = baselines.build(
        "cosine", _model().parameters(), lr=lr0, total_steps=T, steps_per_epoch=T, eta_min=eta_min
    )
    lrs = _run(_model(), sched, T)
    want = [eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * k / T)) / 2 for k in range(T)]
    assert lrs == pytest.approx(want, rel=1e-9, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 40), st.floats(0.01, 1.0))
def test_cosine_formula_property(T, lr0):
    w = torch.nn.Parameter(torch.zeros(2))
    sched = baselines.build("cosine", [w], lr=lr0, total_steps=T, steps_per_epoch=1)
    for k in range(T):
        sched.step((w - 1).pow(2).sum())
        assert sched.lr == pytest.approx(lr0 * (1 + math.cos(math.pi * k / T)) / 2, abs=1e-12)


def test_onecycle_endpoints():
    T, lr0 = 100, 0.4
    sched = baselines.build(
        "onecycle", _model().parameters(), lr=lr0, total_steps=T, steps_per_epoch=10
    )
    lrs = _run(_model(), sched, T)
    assert lrs[0] == pytest.approx(lr0 / 25)
    assert lrs[29] == pytest.approx(lr0)  # end of warm-up phase: pct_start * T - 1
    assert max(lrs) == pytest.approx(lr0)
    assert lrs[-1] == pytest.approx(lr0 / 25 / 1e4)


def test_multistep_per_epoch_matches_formula():
    spe, epochs = 5, 10
    sched = baselines.build(
        "multistep", _model().parameters(), lr=0.1, total_steps=spe * epochs, steps_per_epoch=spe
    )
    assert sorted(sched.scheduler.milestones) == [3, 6, 8]
    lrs = _run(_model(), sched, spe * epochs)
    for t, lr in enumerate(lrs):
        e = t // spe
        assert lr == pytest.approx(0.1 * 0.1 ** sum(m <= e for m in (3, 6, 8)))


@settings(max_examples=10, deadline=None)
@given(st.integers(10, 60), st.floats(0.05, 0.9))
def test_multistep_per_step_property(T, gamma):
    w = torch.nn.Parameter(torch.zeros(2))
    sched = baselines.build(
        "multistep", [w], lr=1.0, total_steps=T, steps_per_epoch=3, per_step=True, gamma=gamma
    )
    ms = [max(1, round(f * T)) for f in (0.3, 0.6, 0.8)]
    for k in range(T):
        sched.step((w - 1).pow(2).sum())
        assert sched.lr == pytest.approx(gamma ** sum(m <= k for m in ms), rel=1e-9)


def test_exponential_per_epoch():
    spe = 4
    sched = baselines.build(
        "exponential", _model().parameters(), lr=0.1, total_steps=20, steps_per_epoch=spe
    )
    lrs = _run(_model(), sched, 20)
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(0.1 * 0.95 ** (t // spe))


def test_exponential_final_factor():
    sched = baselines.build(
        "exponential",
        _model().parameters(),
        lr=0.1,
        total_steps=40,
        steps_per_epoch=4,
        final_factor=1e-2,
    )
    assert sched.scheduler.gamma == pytest.approx(1e-2 ** (1 / 10))
    _run(_model(), sched, 40)
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_sgdr_restart_points():
    spe, lr0 = 5, 0.1
    sched = baselines.build(
        "sgdr", _model().parameters(), lr=lr0, total_steps=70, steps_per_epoch=spe, T_0=2
    )
    lrs = _run(_model(), sched, 70)
    # periods of 10, 20, 40 steps: restarts at steps 0, 10, 30
    starts, periods = [0, 10, 30], [10, 20, 40]
    for s, p in zip(starts, periods, strict=True):
        assert lrs[s] == pytest.approx(lr0)
        for k in range(p):
            if s + k < 70:
                want = lr0 * (1 + math.cos(math.pi * k / p)) / 2
                assert lrs[s + k] == pytest.approx(want, abs=1e-10)
    assert lrs[9] < 0.01 and lrs[29] < 0.01


def test_plateau_divides_by_four_on_stall():
    w = torch.nn.Parameter(torch.zeros(2))
    sched = baselines.build("plateau", [w], lr=1.0, total_steps=10, steps_per_epoch=1)
    for val, want in [(1.0, 1.0), (0.5, 1.0), (0.6, 0.25), (0.4, 0.25), (0.4, 0.0625)]:
        sched.step((w - 1).pow(2).sum())
        sched.epoch_end(val_loss=val)
        assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(want)
    with pytest.raises(ValueError, match="val_loss"):
        sched.epoch_end()


def test_prodigy_reports_effective_lr():
    model = _model()
    sched = _build("prodigy", model.parameters())
    g = sched.optimizer.param_groups[0]
    d_before = g["d"]
    sched.step(F.cross_entropy(model(X), Y))
    assert sched.lr == pytest.approx(d_before * 1.0)
    sched2 = _build("prodigy", _model().parameters(), cosine=True)
    assert isinstance(sched2.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)


# ---------------------------------------------------------------- SGD-HD
def _quad(theta):
    return 0.5 * (theta[0] ** 2 + 3.0 * theta[1] ** 2)  # A = diag(1, 3)


def test_hd_two_steps_by_hand():
    th = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    sched = baselines.build(
        "hd", [th], lr=0.1, momentum=0.0, weight_decay=0.0, total_steps=5, steps_per_epoch=5,
        hyper_lr=1e-3,
    )  # fmt: skip
    sched.step(_quad(th))  # g1 = (1, 6), h1 = 0
    assert sched.lr == 0.1
    torch.testing.assert_close(th.detach(), torch.tensor([0.9, 1.4], dtype=torch.float64))
    sched.step(_quad(th))  # g2 = (0.9, 4.2), alpha2 = 0.1 + 1e-3 * (0.9 + 25.2)
    assert sched.lr == pytest.approx(0.1261, rel=1e-12)
    want = torch.tensor([0.9 - 0.1261 * 0.9, 1.4 - 0.1261 * 4.2], dtype=torch.float64)
    torch.testing.assert_close(th.detach(), want)


def test_hd_momentum_uses_update_direction():
    th = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = SGDHD([th], lr=0.1, hyper_lr=1e-3, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        _quad(th).backward()
        opt.step()
    # step 2: d1 = g1 = (1, 6); alpha2 = 0.1261; b2 = 0.9*(1,6) + (0.9,4.2) = (1.8, 9.6)
    # theta2 = (0.9, 1.4) - 0.1261 * (1.8, 9.6) = (0.67302, 0.18944)
    # step 3: g3 = (0.67302, 0.56832); alpha3 = 0.1261 + 1e-3 * g3 . b2
    alpha3 = 0.1261 + 1e-3 * (0.67302 * 1.8 + 0.56832 * 9.6)
    assert opt.param_groups[0]["lr"] == pytest.approx(alpha3, rel=1e-12)
    b3 = (0.9 * 1.8 + 0.67302, 0.9 * 9.6 + 0.56832)
    want = torch.tensor([0.67302 - alpha3 * b3[0], 0.18944 - alpha3 * b3[1]], dtype=torch.float64)
    torch.testing.assert_close(th.detach(), want)


def test_hd_zero_hyper_lr_is_sgd():
    a, b = _model(3), _model(3)
    hd = SGDHD(a.parameters(), lr=0.05, hyper_lr=0.0, momentum=0.9, weight_decay=1e-3)
    sgd = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(4):
        for m, o in ((a, hd), (b, sgd)):
            o.zero_grad()
            F.cross_entropy(m(X), Y).backward()
            o.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


# ---------------------------------------------------------------- L4
def test_l4mom_one_step_by_hand():
    th = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    sched = baselines.build("l4", [th], weight_decay=0.0, total_steps=5, steps_per_epoch=5)
    sched.step(0.5 * th.pow(2).sum())
    # L0 = 2, g = 2, g_hat = v = 2, L_min = 0.75 * 2 = 1.5
    eta = 0.15 * (2.0 - 0.9 * 1.5) / (4.0 + 1e-12)
    assert sched.lr == pytest.approx(eta, rel=1e-12) and eta == pytest.approx(0.024375)
    torch.testing.assert_close(th.detach(), torch.tensor([2.0 - eta * 2.0], dtype=torch.float64))
    assert sched.optimizer.param_groups[0]["min_loss"] == pytest.approx(1.5 * 1.001)
    # second step: L1 = 0.5 * 1.95125^2, m2 = 0.9 * 0.2 + 0.1 * 1.95125, g_hat = m2 / 0.19
    sched.step(0.5 * th.pow(2).sum())
    L1 = 0.5 * 1.95125**2
    g_hat = (0.9 * 0.2 + 0.1 * 1.95125) / (1 - 0.9**2)
    eta2 = 0.15 * (L1 - 0.9 * 1.5015) / (g_hat**2 + 1e-12)
    assert sched.lr == pytest.approx(eta2, rel=1e-10)
    torch.testing.assert_close(
        th.detach(), torch.tensor([1.95125 - eta2 * g_hat], dtype=torch.float64)
    )


def test_l4adam_one_step_by_hand():
    th = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    sched = baselines.build(
        "l4", [th], weight_decay=0.0, total_steps=5, steps_per_epoch=5, direction="adam"
    )
    sched.step(0.5 * th.pow(2).sum())
    v = 2.0 / (2.0 + 1e-4)  # g_hat / (sqrt(s_hat) + eps_a)
    eta = 0.15 * 0.65 / (2.0 * v + 1e-12)
    assert sched.lr == pytest.approx(eta, rel=1e-12)
    torch.testing.assert_close(th.detach(), torch.tensor([2.0 - eta * v], dtype=torch.float64))


def test_l4_requires_loss():
    w = torch.nn.Parameter(torch.ones(2))
    opt = L4([w])
    w.sum().backward()
    with pytest.raises(ValueError, match="loss"):
        opt.step()


# ---------------------------------------------------------------- RTHO
def test_hvp_matches_finite_differences():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = model.double()
    params = list(model.parameters())
    x, y = X.double(), Y

    names = [n for n, _ in model.named_parameters()]

    def functional(ps):
        return dict(zip(names, ps, strict=True))

    def loss_at(ps):
        return F.cross_entropy(torch.func.functional_call(model, functional(ps), (x,)), y)

    vecs = [torch.randn_like(p) for p in params]
    g = torch.autograd.grad(loss_at(params), params, create_graph=True)
    hv = hessian_vector_product(g, params, vecs)
    eps = 1e-5
    plus = [(p + eps * v).detach().requires_grad_() for p, v in zip(params, vecs, strict=True)]
    minus = [(p - eps * v).detach().requires_grad_() for p, v in zip(params, vecs, strict=True)]
    gp = torch.autograd.grad(loss_at(plus), plus)
    gm = torch.autograd.grad(loss_at(minus), minus)
    for h, a, b in zip(hv, gp, gm, strict=True):
        torch.testing.assert_close(h, (a - b) / (2 * eps), rtol=1e-6, atol=1e-8)


A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def _quadratic(w, quartic):
    loss = 0.5 * w @ A @ w - B @ w
    return loss + 0.05 * (w**4).sum() if quartic else loss


def _rtho_final(eta, momentum, wd, quartic, steps=8):
    w = torch.nn.Parameter(torch.tensor([0.5, 1.0, -1.5], dtype=torch.float64))
    sched = baselines.build(
        "rtho", [w], lr=eta, momentum=momentum, weight_decay=wd, total_steps=steps,
        steps_per_epoch=steps, hyper_lr=0.0,
    )  # fmt: skip
    for _ in range(steps):
        sched.step(_quadratic(w, quartic))
    return w.detach().clone(), sched.optimizer.tangents()[0]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("quartic", [False, True])
def test_rtho_tangent_matches_finite_difference(momentum, wd, quartic):
    eta, d = 0.1, 1e-6
    _, z = _rtho_final(eta, momentum, wd, quartic)
    wp, _ = _rtho_final(eta + d, momentum, wd, quartic)
    wm, _ = _rtho_final(eta - d, momentum, wd, quartic)
    torch.testing.assert_close(z, (wp - wm) / (2 * d), rtol=1e-6, atol=1e-8)


def test_rtho_hyper_step_by_hand():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    sched = baselines.build(
        "rtho", [w], lr=0.1, momentum=0.0, weight_decay=0.0, total_steps=5, steps_per_epoch=5,
        hyper_lr=0.01,
    )  # fmt: skip
    sched.step((w**2).sum(), meta_loss=lambda: ((w - 1) ** 2).sum())
    # w1 = (0.8, -0.8), Z1 = -g1 = (-2, 2), grad E(w1) = (-0.4, -3.6), h = 0.8 - 7.2
    assert sched.lr == 0.1
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 + 0.01 * 6.4)
    assert sched.optimizer.param_groups[0]["hypergradient"] == pytest.approx(-6.4)


def test_rtho_lr_projected_nonnegative():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    sched = baselines.build(
        "rtho", [w], lr=0.1, momentum=0.0, weight_decay=0.0, total_steps=5, steps_per_epoch=5,
        hyper_lr=10.0,
    )  # fmt: skip
    start = torch.tensor([1.0, -1.0], dtype=torch.float64)
    # validation optimum at the start: h = grad E(w1) . Z1 = (-0.4, 0.4) . (-2, 2) = 1.6 > 0
    sched.step((w**2).sum(), meta_loss=lambda: ((w - start) ** 2).sum())
    assert sched.optimizer.param_groups[0]["lr"] == 0.0


def test_rtho_needs_meta_loss():
    model = _model()
    sched = _build("rtho", model.parameters())
    assert sched.requires_meta_loss
    with pytest.raises(ValueError, match="meta_loss"):
        sched.step(F.cross_entropy(model(X), Y))


def test_rtho_meta_loss_needs_graph():
    model = _model()
    sched = _build("rtho", model.parameters())
    with pytest.raises(ValueError, match="graph"):
        sched.step(
            F.cross_entropy(model(X), Y), meta_loss=lambda: F.cross_entropy(model(XV), YV).detach()
        )


def test_rtho_rejects_unequal_group_lrs():
    m = _model()
    with pytest.raises(ValueError, match="shared"):
        RTHOSGD([{"params": [m.weight], "lr": 0.1}, {"params": [m.bias], "lr": 0.2}])


# ---------------------------------------------------------------- schedule-free
@pytest.mark.parametrize("name,beta", [("schedulefree-sgd", 0.9), ("schedulefree-adamw", 0.9)])
def test_schedulefree_eval_moves_to_x(name, beta):
    model = _model()
    sched = _build(name, model.parameters())
    sched.eval()  # no z yet: no-op
    sched.train()
    for _ in range(3):
        sched.step(F.cross_entropy(model(X), Y))
    y = [p.detach().clone() for p in model.parameters()]
    z = [sched.optimizer.state[p]["z"].clone() for p in model.parameters()]
    sched.eval()  # y = (1 - beta) z + beta x  =>  x = (y - (1 - beta) z) / beta
    for p, yy, zz in zip(model.parameters(), y, z, strict=True):
        torch.testing.assert_close(p.detach(), (yy - (1 - beta) * zz) / beta)
        assert not torch.allclose(p.detach(), yy)
    with pytest.raises(RuntimeError, match="train"):
        sched.step(F.cross_entropy(model(X), Y))
    sched.train()
    for p, yy in zip(model.parameters(), y, strict=True):
        torch.testing.assert_close(p.detach(), yy)


def test_schedulefree_warmup_lr():
    model = _model()
    sched = _build("schedulefree-sgd", model.parameters(), lr=1.0, warmup_steps=4)
    lrs = _run(model, sched, 6)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_eval_train_noop_elsewhere():
    model = _model()
    sched = _build("cosine", model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    sched.eval()
    sched.train()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ---------------------------------------------------------------- checkpoint / resume
RESUME_CASES = [(n, {}) for n in ALL] + [
    ("multistep", {"per_step": True}),
    ("hd", {"nesterov": True}),
    ("l4", {"direction": "adam"}),
    ("schedulefree-sgd", {"warmup_steps": 10}),
    ("prodigy", {"cosine": True}),
    ("mechanic", {"optimizer": "adamw"}),
    ("fixed", {"optimizer": "adamw"}),
]


@pytest.mark.parametrize(
    "name,opts", RESUME_CASES, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in RESUME_CASES]
)
def test_state_dict_resumes_bit_identically(name, opts):
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(15):
        x = torch.randn(8, 4, generator=g)
        batches.append((x, torch.randint(0, 3, (8,), generator=g)))
    kw = dict(total_steps=15, steps_per_epoch=3, grad_clip=1.0, **opts)
    model = _model(0)
    sched = _build(name, model.parameters(), **kw)
    _run(model, sched, 7, batches=batches)
    saved_model = copy.deepcopy(model.state_dict())
    saved = copy.deepcopy(sched.state_dict())
    lrs_a = _run(model, sched, 8, start=7, batches=batches)
    params_a = [p.detach().clone() for p in model.parameters()]

    model_b = _model(123)
    model_b.load_state_dict(saved_model)
    sched_b = _build(name, model_b.parameters(), **kw)
    sched_b.load_state_dict(saved)
    assert sched_b.step_count == 7 and sched_b.epoch_count == 2
    lrs_b = _run(model_b, sched_b, 8, start=7, batches=batches)
    assert lrs_a == lrs_b
    assert sched.lr == sched_b.lr
    for a, b in zip(params_a, model_b.parameters(), strict=True):
        assert torch.equal(a, b.detach())


def test_load_state_dict_rejects_other_schedule():
    m = _model()
    a, b = _build("cosine", m.parameters()), _build("fixed", m.parameters())
    with pytest.raises(ValueError, match="cosine"):
        b.load_state_dict(a.state_dict())


# ---------------------------------------------------------------- non-finite safety
def test_hd_keeps_last_finite_lr_on_nan_loss():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sched = baselines.build("hd", [w], total_steps=5, steps_per_epoch=5, hyper_lr=1e-2)
    sched.step(_quad(w))
    sched.step(_quad(w))
    lr = sched.optimizer.param_groups[0]["lr"]
    sched.step(_quad(w) * float("nan"))
    assert sched.optimizer.param_groups[0]["lr"] == lr and math.isfinite(sched.lr)
    sched.step(_quad(w) * float("inf"))
    assert sched.optimizer.param_groups[0]["lr"] == lr


def test_l4_keeps_last_finite_lr_on_nonfinite_loss():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sched = baselines.build("l4", [w], total_steps=5, steps_per_epoch=5)
    sched.step(_quad(w))
    lr = sched.lr
    assert lr > 0
    for bad in (float("nan"), float("inf")):
        sched.step(_quad(w) * bad)
        assert sched.lr == lr
        assert sched.optimizer.param_groups[0]["lr"] == lr


def test_l4_first_loss_nonfinite_gives_zero_lr():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sched = baselines.build("l4", [w], total_steps=5, steps_per_epoch=5)
    sched.step(_quad(w) * float("nan"))
    assert sched.lr == 0.0 and sched.optimizer.param_groups[0]["min_loss"] is None


def test_rtho_keeps_last_finite_lr():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    sched = baselines.build("rtho", [w], total_steps=5, steps_per_epoch=5, hyper_lr=0.01)
    sched.step((w**2).sum(), meta_loss=lambda: ((w - 1) ** 2).sum())
    lr = sched.optimizer.param_groups[0]["lr"]
    sched.step((w**2).sum(), meta_loss=lambda: ((w - 1) ** 2).sum() * float("nan"))
    assert sched.optimizer.param_groups[0]["lr"] == lr
    sched.step((w**2).sum() * float("inf"), meta_loss=lambda: ((w - 1) ** 2).sum())
    assert sched.optimizer.param_groups[0]["lr"] == lr and math.isfinite(sched.lr)


# ---------------------------------------------------------------- bad inputs
def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="known: fixed, multistep"):
        _build("cosin", _model().parameters())


@pytest.mark.parametrize("lr", [-0.1, 0.0, float("nan"), float("inf")])
def test_bad_lr(lr):
    with pytest.raises(ValueError, match="lr"):
        _build("fixed", _model().parameters(), lr=lr)


def test_unknown_option_named():
    with pytest.raises(TypeError, match="'T_max'"):
        _build("cosine", _model().parameters(), T_max=5)
    with pytest.raises(TypeError, match="'hyper_lr'"):
        _build("fixed", _model().parameters(), hyper_lr=1e-3)


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("multistep", {"milestones": (0.6, 0.3)}, "milestones"),
        ("multistep", {"milestones": (0.5, 1.5)}, "milestones"),
        ("multistep", {"gamma": 2.0}, "gamma"),
        ("exponential", {"gamma": 0.9, "final_factor": 0.1}, "final_factor"),
        ("sgdr", {"T_0": 0}, "T_0"),
        ("onecycle", {"pct_start": 1.5}, "pct_start"),
        ("plateau", {"factor": 1.0}, "factor"),
        ("hd", {"hyper_lr": -1.0}, "hyper_lr"),
        ("rtho", {"hyper_interval": 0}, "hyper_interval"),
        ("l4", {"direction": "sgd"}, "direction"),
        ("prodigy", {"cosine": "yes"}, "cosine"),
        ("fixed", {"momentum": 1.0}, "momentum"),
        ("fixed", {"weight_decay": -1.0}, "weight_decay"),
        ("fixed", {"total_steps": 0}, "total_steps"),
        ("fixed", {"steps_per_epoch": 2.5}, "steps_per_epoch"),
        ("fixed", {"grad_clip": 0.0}, "grad_clip"),
    ],
)
def test_bad_values(name, kw, match):
    with pytest.raises(ValueError, match=match):
        _build(name, _model().parameters(), **kw)


def test_empty_params_and_bad_loss():
    with pytest.raises(ValueError, match="empty"):
        _build("fixed", [])
    model = _model()
    sched = _build("fixed", model.parameters())
    with pytest.raises(ValueError, match="graph"):
        sched.step(F.cross_entropy(model(X), Y).detach())
    with pytest.raises(TypeError):
        sched.step(1.0)


def test_scheduler_frozen_after_total_steps():
    w = torch.nn.Parameter(torch.zeros(2))
    sched = baselines.build("onecycle", [w], total_steps=5, steps_per_epoch=5)
    for _ in range(7):  # torch's OneCycleLR would raise past total_steps
        sched.step((w - 1).pow(2).sum())
    assert math.isfinite(sched.lr)


def test_docs_cover_every_name():
    doc = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"
    text = doc.read_text()
    for name in ALL:
        assert f"`{name}`" in text


@pytest.mark.parametrize(
    "name", ["adam", "adamw", "prodigy", "schedulefree-sgd", "schedulefree-adamw"]
)
@pytest.mark.parametrize(("momentum", "beta1"), [(0.0, 0.9), (0.5, 0.5)])
def test_beta1_comes_from_the_momentum_unless_it_is_zero(name, momentum, beta1):
    # language-model recipes use momentum 0: no valid beta1 for Schedule-Free, and
    # RMSprop rather than Adam for the Adam family; the libraries' 0.9 is used there
    th = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sched = baselines.build(name, [th], momentum=momentum, total_steps=5, steps_per_epoch=5)
    group = sched.optimizer.param_groups[0]
    assert (group["betas"][0] if "betas" in group else group["momentum"]) == beta1
    sched.step(_quad(th))
    assert torch.isfinite(th).all()


def test_mlrsnet_plus_takes_a_shipped_name_or_a_path(tmp_path, monkeypatch):
    from mlrsnet import plus

    folder = tmp_path / "plus"
    folder.mkdir()
    path = plus.save(folder / "v1.safetensors", _PLUS_NET, {"command": "test"})
    monkeypatch.setattr(plus, "_pretrained_dir", lambda: folder)
    runs = []
    for network in ("v1", str(path), path, _PLUS_NET):
        model = _model()
        sched = _build("mlrsnet-plus", model.parameters(), network=network, lr=0.1)
        runs.append(_run(model, sched, 20))
    assert runs[0] == runs[1] == runs[2] == runs[3]
    with pytest.raises(ValueError, match=r"shipped MLR-SNet\+ network \(v1\)"):
        _build("mlrsnet-plus", _model().parameters(), network="v2", lr=0.1)


def test_mlrsnet_plus_peak_option_makes_the_rate_the_peak():
    # v6 (shipped) peaks above the rate it is given; peak=1.0 holds it at or below that rate
    model = _model()
    free = _run(model, _build("mlrsnet-plus", model.parameters(), network="v6", lr=0.1), 20)
    model = _model()
    capped = _run(model, _build("mlrsnet-plus", model.parameters(), network="v6", lr=0.1,
                                peak=1.0), 20)  # fmt: skip
    assert max(free) > 0.1 and max(capped) <= 0.1
    assert capped[0] == min(free[0], 0.1)
    model = _model()
    lifted = _run(model, _build("mlrsnet-plus", model.parameters(), network="v6", lr=0.1,
                                peak=math.inf), 20)  # fmt: skip
    assert lifted == free  # v6 declares no bound: Infinity is its own
    with pytest.raises(ValueError, match="peak"):
        _build("mlrsnet-plus", _model().parameters(), network="v6", lr=0.1, peak=-1.0)


def test_mlrsnet_plus_gives_a_validation_network_each_epochs_validation_loss():
    from mlrsnet import plus

    torch.manual_seed(3)
    net = PlusNet(hidden=8, validation=True)
    model = _model()
    sched = _build("mlrsnet-plus", model.parameters(), network=net, lr=0.1)
    assert sched.needs_val_loss
    _run(model, sched, 20)  # 4 epochs of 5 steps, each ended with the validation loss
    state = sched.scheduler.validation_state
    assert state.count == 4 and math.isfinite(state.minimum)
    with pytest.raises(ValueError, match="reads a validation loss"):
        sched.epoch_end()
    ablation = _build("mlrsnet-plus", _model().parameters(), network=net, lr=0.1,
                      progress_only=True)  # fmt: skip
    plain = _build("mlrsnet-plus", _model().parameters(), network=PlusNet(), lr=0.1)
    assert not ablation.needs_val_loss and not plain.needs_val_loss
    assert plain.epoch_end() == {}
    assert isinstance(sched.scheduler, plus.MLRSNetPlusLR)


def test_base_rate_optimizer_names_what_a_probe_can_give():
    """The optimizer whose base rate ``lr`` is (what ``--lr probe`` probes), or None."""
    got = {name: baselines.base_rate_optimizer(name) for name in baselines.names()}
    not_a_base_rate = {"adam", "l4", "schedulefree-sgd", "schedulefree-adamw", "prodigy", "mlrsnet",
                       "dadaptation-sgd", "dadaptation-adam", "dog"}  # fmt: skip
    assert {name for name, optimizer in got.items() if optimizer is None} == not_a_base_rate
    assert got["adamw"] == "adamw" and got["sgdr"] == "sgd" and got["cosine"] == "sgd"
    for name in ("cosine", "linear", "wsd", "onecycle", "fixed", "mechanic", "mlrsnet-plus"):
        assert baselines.base_rate_optimizer(name, {"optimizer": "adamw"}) == "adamw"
    assert baselines.base_rate_optimizer("sgdr", {"optimizer": "adamw"}) == "sgd"  # no option
