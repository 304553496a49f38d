"""Tests of the adaptive-step-size optimizers in :mod:`mlrsnet.lab.hypergradient`.

Each optimizer is checked against a small hand-written reference implementation of the
equations of its paper (SGD-HD: Baydin et al. 2018; RTHO: Franceschi et al. 2017; L4:
Rolinek & Martius 2018), run side by side with the fast path in ``float64``, plus the
documented guards (non-finite values, projection) and a ``state_dict`` round trip.
"""

from __future__ import annotations

import copy
import logging
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mlrsnet.lab.hypergradient import L4, RTHOSGD, SGDHD

DT = torch.float64
LOGGER = "mlrsnet.lab.hypergradient"


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: intra-op threads only add contention on shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- shared tiny problem
def _mlp(seed: int = 0) -> torch.nn.Sequential:
    """A 3-4-1 tanh network in float64: non-quadratic, so the Hessian changes every step."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).to(DT)


def _batches(seed: int, count: int, n: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` different regression mini-batches (a new loss every step)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([[1.0], [-2.0], [0.5]], dtype=DT)
    out = []
    for _ in range(count):
        x = torch.randn(n, 3, generator=g, dtype=DT)
        y = torch.tanh(x @ w) + 0.1 * torch.randn(n, 1, generator=g, dtype=DT)
        out.append((x, y))
    return out


BATCHES = _batches(0, 12)
XV, YV = _batches(1, 1, n=16)[0]


def _loss(model, t: int) -> torch.Tensor:
    x, y = BATCHES[t]
    return F.mse_loss(model(x), y)


def _functional_loss(model, weights: list[torch.Tensor], x, y) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    return F.mse_loss(functional_call(model, dict(zip(names, weights, strict=True)), (x,)), y)


def _grads_at(model, weights: list[torch.Tensor], t: int) -> tuple[float, list[torch.Tensor]]:
    """Loss value and gradient of mini-batch ``t`` at ``weights`` (for the references)."""
    w = [x.detach().clone().requires_grad_() for x in weights]
    loss = _functional_loss(model, w, *BATCHES[t])
    return float(loss.detach()), list(torch.autograd.grad(loss, w))


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return sum(float((x * y).sum()) for x, y in zip(a, b, strict=True))


def _two_groups(model, **per_group):
    """First layer and last layer as two parameter groups with the given per-group options."""
    first, last = list(model[0].parameters()), list(model[2].parameters())
    return [
        {"params": first, **{k: v[0] for k, v in per_group.items()}},
        {"params": last, **{k: v[1] for k, v in per_group.items()}},
    ]


def _assert_resumes_identically(make_opt, drive, before: int = 3, after: int = 4):
    """Save after ``before`` steps, load into a fresh optimizer on a copy of the model and
    check both continue bit-for-bit identically (same process, same op order)."""
    model = _mlp(5)
    opt = make_opt(model)
    drive(model, opt, range(before))
    saved = copy.deepcopy(opt.state_dict())
    model2 = copy.deepcopy(model)
    opt2 = make_opt(model2)
    opt2.load_state_dict(saved)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    drive(model, opt, range(before, before + after))
    drive(model2, opt2, range(before, before + after))
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
    for g1, g2 in zip(opt.param_groups, opt2.param_groups, strict=True):
        assert {k: v for k, v in g1.items() if k != "params"} == {
            k: v for k, v in g2.items() if k != "params"
        }
    return opt


# ---------------------------------------------------------------- SGD-HD
def _drive_sgdhd(model, opt, steps):
    for t in steps:
        opt.zero_grad()
        _loss(model, t).backward()
        opt.step()


def _reference_sgdhd(model, groups: list[dict], steps: int):
    """Baydin et al., Algorithm 1 written out: per group, with g_t the (L2-regularised)
    gradient and d_t the update direction (g, heavy-ball b, or Nesterov g + mu b),

        alpha_t = alpha_{t-1} + beta * g_t . d_{t-1}      (d_{-1} = 0)
        theta_t = theta_{t-1} - alpha_t d_t

    Returns the final weights, the lr of each group after every step and the last h_t."""
    theta = [p.detach().clone() for p in model.parameters()]
    owner = {}  # parameter index -> group index
    offset = 0
    for k, g in enumerate(groups):
        for i in range(offset, offset + g["n"]):
            owner[i] = k
        offset += g["n"]
    lr = [g["lr"] for g in groups]
    last_h = [0.0] * len(groups)
    buf: list[torch.Tensor | None] = [None] * len(theta)
    d_prev: list[torch.Tensor | None] = [None] * len(theta)
    history = []
    for t in range(steps):
        _, raw = _grads_at(model, theta, t)
        for k, grp in enumerate(groups):
            idx = [i for i in range(len(theta)) if owner[i] == k]
            mu, wd = grp["momentum"], grp["weight_decay"]
            g = {i: raw[i] + wd * theta[i] for i in idx}
            if d_prev[idx[0]] is not None:
                h = _dot([g[i] for i in idx], [d_prev[i] for i in idx])
                lr[k] = lr[k] + grp["hyper_lr"] * h
                last_h[k] = -h  # the paper's h_t = -g_t . d_{t-1}
            for i in idx:
                if mu:
                    buf[i] = g[i].clone() if buf[i] is None else mu * buf[i] + g[i]
                    d = g[i] + mu * buf[i] if grp["nesterov"] else buf[i]
                else:
                    d = g[i]
                theta[i] = theta[i] - lr[k] * d
                d_prev[i] = d
        history.append(list(lr))
    return theta, history, last_h


@pytest.mark.parametrize(
    "momentum,nesterov,wd",
    [
        (0.0, False, 0.0),
        (0.0, False, 1e-2),
        (0.9, False, 0.0),
        (0.9, False, 1e-2),
        (0.9, True, 1e-2),
    ],
)
def test_sgdhd_zero_hyper_lr_is_torch_sgd_bit_for_bit(momentum, nesterov, wd):
    # Exact equality is expected: on CPU torch.optim.SGD (foreach=False pins it) runs
    # grad.add(p, alpha=wd); buf.mul_(mu).add_(g); g.add(buf, alpha=mu); p.add_(d, alpha=-lr),
    # the same ops in the same order as SGDHD, and lr + 0.0 * h == lr for any finite h.
    a, b = _mlp(1), _mlp(1)
    kw = dict(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    hd = SGDHD(a.parameters(), hyper_lr=0.0, **kw)
    sgd = torch.optim.SGD(b.parameters(), foreach=False, **kw)
    for t in range(6):
        for model, opt in ((a, hd), (b, sgd)):
            opt.zero_grad()
            _loss(model, t).backward()
            opt.step()
        assert hd.param_groups[0]["lr"] == 0.1
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)
    if momentum:
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(hd.state[p]["momentum_buffer"], sgd.state[q]["momentum_buffer"])


@pytest.mark.parametrize(
    "momentum,nesterov,wd",
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.5, False, 1e-2), (0.9, True, 1e-2)],
)
def test_sgdhd_lr_and_weights_match_reference(momentum, nesterov, wd):
    model = _mlp(2)
    groups = [
        dict(n=2, lr=0.1, hyper_lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd),
        dict(n=2, lr=0.05, hyper_lr=0.02, momentum=momentum, nesterov=nesterov, weight_decay=wd),
    ]
    want_w, want_lrs, want_h = _reference_sgdhd(model, groups, steps=8)
    opt = SGDHD(
        _two_groups(model, lr=(0.1, 0.05), hyper_lr=(0.05, 0.02)),
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=wd,
    )
    got_lrs = []
    for t in range(8):
        opt.zero_grad()
        _loss(model, t).backward()
        opt.step()
        got_lrs.append([g["lr"] for g in opt.param_groups])
    assert got_lrs[0] == [0.1, 0.05]  # d_{-1} = 0: the first step uses alpha_0
    # Not bit-exact: the reference sums (g * d).sum() per tensor in Python, the optimizer
    # stacks torch.dot results, so the dot products differ in the last bits.
    torch.testing.assert_close(
        torch.tensor(got_lrs, dtype=DT), torch.tensor(want_lrs, dtype=DT), rtol=1e-12, atol=0
    )
    for k in range(2):
        assert opt.param_groups[k]["hypergradient"] == pytest.approx(want_h[k], rel=1e-10)
    # the rule did something, and the two groups adapted independently
    assert abs(got_lrs[-1][0] - 0.1) > 1e-3 and got_lrs[-1][0] / 0.1 != got_lrs[-1][1] / 0.05
    for p, w in zip(model.parameters(), want_w, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)


def test_sgdhd_lr_is_not_clipped_and_can_go_negative():
    # f = theta^2 / 2, theta0 = 1, alpha0 = 3 overshoots: theta1 = -2, g2 = -2, d1 = g1 = 1,
    # alpha2 = 3 + 2 * (-2 * 1) = -1 (the paper does not clip), theta2 = -2 - (-1)(-2) = -4.
    th = torch.nn.Parameter(torch.tensor([1.0], dtype=DT))
    opt = SGDHD([th], lr=3.0, hyper_lr=2.0)
    for _ in range(2):
        opt.zero_grad()
        (0.5 * th**2).sum().backward()
        opt.step()
    assert opt.param_groups[0]["lr"] == -1.0
    assert opt.param_groups[0]["hypergradient"] == 2.0
    assert th.item() == -4.0


@pytest.mark.parametrize("bad", ["nan_grad", "overflowing_lr"])
def test_sgdhd_non_finite_hypergradient_keeps_lr(bad, caplog):
    th = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=DT))
    opt = SGDHD([th], lr=0.1, hyper_lr=1e-3 if bad == "nan_grad" else 1e10)
    th.grad = torch.tensor([1.0, 1e150], dtype=DT)
    opt.step()
    lr, hg = opt.param_groups[0]["lr"], opt.param_groups[0]["hypergradient"]
    # nan: h is nan. overflow: h = 1e300 is finite but lr + 1e10 * h is inf.
    th.grad = torch.tensor([math.nan, 1.0] if bad == "nan_grad" else [0.0, 1e150], dtype=DT)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        opt.step()
    assert opt.param_groups[0]["lr"] == lr == 0.1
    assert opt.param_groups[0]["hypergradient"] == hg
    assert "SGDHD: non-finite hypergradient" in caplog.text


def test_sgdhd_parameter_skipped_last_step_contributes_no_hypergradient():
    a = torch.nn.Parameter(torch.tensor([1.0], dtype=DT))
    b = torch.nn.Parameter(torch.tensor([2.0], dtype=DT))
    opt = SGDHD([a, b], lr=0.1, hyper_lr=0.01)
    for loss in (lambda: a**2 + b**2, lambda: a**2):  # step 2: b has no grad, does not move
        opt.zero_grad()
        loss().sum().backward()
        opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.01 * (1.6 * 2.0))  # a only
    lr2 = opt.param_groups[0]["lr"]
    opt.zero_grad()
    (b**2).sum().backward()  # step 3: only b; u_2(b) = 0, so h_3 = 0
    opt.step()
    assert opt.param_groups[0]["lr"] == lr2  # actually lr2 + 0.01 * 3.2 * 4.0 (stale d_1)


def test_sgdhd_state_dict_round_trip_continues_identically():
    def make(model):
        return SGDHD(
            model.parameters(),
            lr=0.05,
            hyper_lr=0.02,
            momentum=0.9,
            nesterov=True,
            weight_decay=1e-2,
        )

    opt = _assert_resumes_identically(make, _drive_sgdhd)
    assert opt.param_groups[0]["lr"] != 0.05
    assert all("prev_direction" in s and "momentum_buffer" in s for s in opt.state.values())


def test_sgdhd_rejects_bad_arguments():
    w = [torch.nn.Parameter(torch.ones(2))]
    for kw in (
        {"lr": -0.1},
        {"hyper_lr": math.nan},
        {"momentum": 1.0},
        {"nesterov": True},
        {"weight_decay": -1.0},
    ):
        with pytest.raises(ValueError):
            SGDHD(w, **kw)


# ---------------------------------------------------------------- RTHO
def _val_grads(model) -> list[torch.Tensor]:
    return list(torch.autograd.grad(F.mse_loss(model(XV), YV), list(model.parameters())))


def _drive_rtho(model, opt, steps, hyper_every: int = 1):
    for t in steps:
        opt.step(hvps=opt.gradients_and_hvps(_loss(model, t)))
        if (t + 1) % hyper_every == 0:
            opt.update_lr(opt.hypergradient(_val_grads(model)))


def _unrolled_hypergradient(model, eta: float, momentum: float, wd: float, steps: int) -> float:
    """Reverse-mode reference: unroll heavy-ball SGD differentiably in eta and backpropagate
    the validation loss, d E(w_k(eta)) / d eta."""
    eta_t = torch.tensor(eta, dtype=DT, requires_grad=True)
    w = [p.detach().clone().requires_grad_() for p in model.parameters()]
    v = [torch.zeros_like(x) for x in w]
    for t in range(steps):
        g = torch.autograd.grad(_functional_loss(model, w, *BATCHES[t]), w, create_graph=True)
        g = [gi + wd * wi for gi, wi in zip(g, w, strict=True)]
        v = [momentum * vi + gi for vi, gi in zip(v, g, strict=True)]
        w = [wi - eta_t * vi for wi, vi in zip(w, v, strict=True)]
    (h,) = torch.autograd.grad(_functional_loss(model, w, XV, YV), [eta_t])
    return float(h)


def _rtho_after(eta: float, momentum: float, wd: float, steps: int):
    model = _mlp(3)
    opt = RTHOSGD(model.parameters(), lr=eta, momentum=momentum, weight_decay=wd, hyper_lr=0.0)
    _drive_rtho(model, opt, range(steps))
    assert opt.param_groups[0]["lr"] == eta  # hyper_lr = 0: never moves
    return model, opt


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_rtho_hypergradient_matches_unrolled_autograd_and_finite_difference(momentum, wd):
    eta, steps, delta = 0.2, 6, 1e-6
    model, opt = _rtho_after(eta, momentum, wd, steps)
    h = opt.hypergradient(_val_grads(model))
    assert abs(h) > 1e-3  # a non-trivial derivative

    # forward-mode tangent . grad E  ==  reverse mode through the unrolled steps
    assert h == pytest.approx(_unrolled_hypergradient(_mlp(3), eta, momentum, wd, steps), rel=1e-9)

    # ... == central finite difference of E(w_k(eta)) over the optimizer's own trajectory
    plus, _ = _rtho_after(eta + delta, momentum, wd, steps)
    minus, _ = _rtho_after(eta - delta, momentum, wd, steps)
    with torch.no_grad():
        e_plus, e_minus = F.mse_loss(plus(XV), YV), F.mse_loss(minus(XV), YV)
    assert h == pytest.approx(float(e_plus - e_minus) / (2 * delta), rel=1e-5)
    for z, p, m in zip(opt.tangents(), plus.parameters(), minus.parameters(), strict=True):
        torch.testing.assert_close(z, (p - m).detach() / (2 * delta), rtol=1e-5, atol=1e-8)


def _logistic(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logistic regression on a flat (a0, a1, b) vector, plus a quartic term."""
    return F.softplus(-y * (x @ w[:2] + w[2])).mean() + 0.05 * (w**4).sum()


def _flat_grad(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w = w.detach().requires_grad_()
    return torch.autograd.grad(_logistic(w, x, y), w)[0]


def _logistic_data(seed: int, count: int, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        x = torch.randn(n, 2, generator=g, dtype=DT)
        y = torch.sign(x[:, 0] - 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=g, dtype=DT))
        out.append((x, y))
    return out


def _reference_rtho(w0, train, val, eta, momentum, wd, beta, hyper_every):
    """Franceschi et al., RTHO for the learning rate with explicit Hessian matrices:

        v_t = mu v_{t-1} + g_t,                w_t = w_{t-1} - eta v_t
        Z^v_t = mu Z^v_{t-1} + H_t Z^w_{t-1},  Z^w_t = Z^w_{t-1} - eta Z^v_t - v_t
        every `hyper_every` steps: eta <- max(eta - beta grad E(w_t) . Z^w_t, 0)

    with g_t = grad L_t(w_{t-1}) + wd w_{t-1} and H_t = hess L_t(w_{t-1}) + wd I."""
    w, v = w0.clone(), torch.zeros_like(w0)
    zw, zv = torch.zeros_like(w0), torch.zeros_like(w0)
    eye = torch.eye(w0.numel(), dtype=DT)
    lrs = []
    for t, (x, y) in enumerate(train):
        g = _flat_grad(w, x, y) + wd * w
        hess = torch.autograd.functional.hessian(partial(_logistic, x=x, y=y), w) + wd * eye
        zv = momentum * zv + hess @ zw
        v = momentum * v + g
        w = w - eta * v
        zw = zw - eta * zv - v
        if (t + 1) % hyper_every == 0:
            eta = max(eta - beta * float(_flat_grad(w, *val) @ zw), 0.0)
        lrs.append(eta)
    return w, zw, lrs


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.05)])
def test_rtho_real_time_lr_matches_reference(momentum, wd):
    train, val = _logistic_data(0, 10), _logistic_data(1, 1, n=16)[0]
    w0 = torch.tensor([0.3, -0.2, 0.1], dtype=DT)
    eta, beta, every = 0.3, 0.5, 2
    want_w, want_z, want_lrs = _reference_rtho(w0, train, val, eta, momentum, wd, beta, every)

    # the fast path, with the weights split over two groups sharing one lr
    a = torch.nn.Parameter(w0[:2].clone())
    b = torch.nn.Parameter(w0[2:].clone())
    opt = RTHOSGD(
        [{"params": [a]}, {"params": [b]}],
        lr=eta,
        momentum=momentum,
        weight_decay=wd,
        hyper_lr=beta,
    )
    lrs = []
    for t, (x, y) in enumerate(train):
        opt.step(hvps=opt.gradients_and_hvps(_logistic(torch.cat([a, b]), x, y)))
        if (t + 1) % every == 0:
            val_grads = torch.autograd.grad(_logistic(torch.cat([a, b]), *val), [a, b])
            assert opt.update_lr(opt.hypergradient(val_grads))
        assert opt.param_groups[0]["lr"] == opt.param_groups[1]["lr"]
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == eta and lrs[1] != eta  # updated only every second step
    assert min(want_lrs) > 0.0 and abs(want_lrs[-1] - eta) > 1e-3  # lr moved, no projection
    torch.testing.assert_close(
        torch.tensor(lrs, dtype=DT), torch.tensor(want_lrs, dtype=DT), rtol=1e-10, atol=0
    )
    torch.testing.assert_close(torch.cat([a, b]).detach(), want_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat(opt.tangents()), want_z, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_rtho_zero_hyper_lr_is_torch_sgd_bit_for_bit(momentum, wd):
    # Exact: gradients_and_hvps' create_graph gradients equal backward()'s here, and
    # p.sub_(buf, alpha=lr) is add with -lr, the op torch.optim.SGD (foreach=False) runs.
    a, b = _mlp(4), _mlp(4)
    rtho = RTHOSGD(a.parameters(), lr=0.1, momentum=momentum, weight_decay=wd, hyper_lr=0.0)
    sgd = torch.optim.SGD(b.parameters(), lr=0.1, momentum=momentum, weight_decay=wd, foreach=False)
    for t in range(6):
        _drive_rtho(a, rtho, [t])
        sgd.zero_grad()
        _loss(b, t).backward()
        sgd.step()
        assert rtho.param_groups[0]["lr"] == 0.1
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)


def test_rtho_first_step_tangent_and_unused_parameter():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=DT))
    unused = torch.nn.Parameter(torch.tensor([3.0], dtype=DT))
    opt = RTHOSGD([w, unused], lr=0.1, momentum=0.9, weight_decay=0.5, hyper_lr=0.0)
    assert all(torch.equal(z, torch.zeros_like(z)) for z in opt.tangents())
    hvps = opt.gradients_and_hvps((w**3).sum())
    assert all(torch.equal(h, torch.zeros_like(h)) for h in hvps)  # Z_0 = 0
    assert unused.grad is None
    opt.step(hvps=hvps)
    z_w, z_unused = opt.tangents()
    # Z_1 = -v_1 = -(3 w0^2 + 0.5 w0) = -(3.5, 11); the unused parameter never moves
    torch.testing.assert_close(z_w, torch.tensor([-3.5, -11.0], dtype=DT))
    assert torch.equal(z_unused, torch.zeros(1, dtype=DT)) and unused.item() == 3.0
    # second step: H Z_1 from the double backward, = diag(6 w1) Z_1
    w1 = w.detach().clone()
    hvps = opt.gradients_and_hvps((w**3).sum())
    torch.testing.assert_close(hvps[0], 6 * w1 * z_w)
    assert opt.hypergradient([torch.ones(2, dtype=DT), None]) == pytest.approx(-14.5)


def test_rtho_clip_norm_scales_grad_and_hvp_by_the_same_coefficient():
    model, opt = _rtho_after(0.1, 0.9, 0.0, 3)  # non-zero tangent
    hv = opt.gradients_and_hvps(_loss(model, 5))
    grads = [p.grad.clone() for p in model.parameters()]
    norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
    clip = 0.25 * norm
    hv_clipped = opt.gradients_and_hvps(_loss(model, 5), clip_norm=clip)
    coef = clip / (norm + 1e-6)
    for p, g, h, hc in zip(model.parameters(), grads, hv, hv_clipped, strict=True):
        torch.testing.assert_close(p.grad, coef * g, rtol=1e-12, atol=0)
        torch.testing.assert_close(hc, coef * h, rtol=1e-12, atol=0)
    # a clip that does not bite changes nothing
    hv_loose = opt.gradients_and_hvps(_loss(model, 5), clip_norm=10 * norm)
    for p, g, h, hl in zip(model.parameters(), grads, hv, hv_loose, strict=True):
        assert torch.equal(p.grad, g) and torch.equal(hl, h)


def test_rtho_lr_is_projected_at_zero():
    m = _mlp()
    opt = RTHOSGD(_two_groups(m), lr=0.1, hyper_lr=0.01)
    assert opt.update_lr(20.0)  # 0.1 - 0.01 * 20 = -0.1 -> projected to 0
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]
    assert [g["hypergradient"] for g in opt.param_groups] == [20.0, 20.0]
    assert opt.update_lr(-5.0)  # and it can grow again from 0
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05]


@pytest.mark.parametrize("h", [math.nan, math.inf, -math.inf])
def test_rtho_non_finite_hypergradient_keeps_lr(h, caplog):
    opt = RTHOSGD(_mlp().parameters(), lr=0.1, hyper_lr=0.01)
    assert opt.update_lr(1.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert opt.update_lr(h) is False
    assert opt.param_groups[0]["lr"] == pytest.approx(0.09, rel=1e-15)
    assert opt.param_groups[0]["hypergradient"] == 1.0
    assert "RTHOSGD: non-finite hypergradient" in caplog.text


def test_rtho_non_finite_tangent_is_reset_to_zero(caplog):
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=DT))
    opt = RTHOSGD([w], lr=0.1, momentum=0.9, hyper_lr=0.01)
    opt.step(hvps=opt.gradients_and_hvps((w**2).sum()))
    opt.gradients_and_hvps((w**2).sum())  # sets w.grad = 2 w1
    w1, buf = w.detach().clone(), opt.state[w]["momentum_buffer"].clone()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        opt.step(hvps=[torch.tensor([math.inf, 0.0], dtype=DT)])
    assert "non-finite tangent" in caplog.text
    assert torch.equal(opt.state[w]["z_w"], torch.zeros(2, dtype=DT))
    assert torch.equal(opt.state[w]["z_v"], torch.zeros(2, dtype=DT))
    # the weights still took the ordinary heavy-ball step
    torch.testing.assert_close(w.detach(), w1 - 0.1 * (0.9 * buf + 2 * w1))
    assert math.isfinite(opt.hypergradient([torch.ones(2, dtype=DT)]))


def test_rtho_state_dict_round_trip_continues_identically():
    def make(model):
        return RTHOSGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2, hyper_lr=0.05)

    opt = _assert_resumes_identically(make, _drive_rtho)
    assert opt.param_groups[0]["lr"] != 0.1
    assert all({"z_w", "z_v", "momentum_buffer"} <= set(s) for s in opt.state.values())


def test_rtho_rejects_bad_arguments():
    m = _mlp()
    for kw in ({"lr": -1.0}, {"hyper_lr": -1.0}, {"momentum": 1.0}, {"weight_decay": math.inf}):
        with pytest.raises(ValueError):
            RTHOSGD(m.parameters(), **kw)
    with pytest.raises(ValueError, match="shared"):
        RTHOSGD(_two_groups(m, lr=(0.1, 0.2)))


# ---------------------------------------------------------------- L4
L4_KW = dict(alpha=0.2, gamma=0.9, gamma0=0.5, tau=4.0, beta1=0.9, beta2=0.999)


def _drive_l4(model, opt, steps):
    for t in steps:
        opt.zero_grad()
        loss = _loss(model, t)
        loss.backward()
        opt.step(loss=loss)


def _reference_l4(
    model, direction, wds, steps, alpha, gamma, gamma0, tau, beta1, beta2, adam_eps=1e-4, eps=1e-12
):
    """Rolinek & Martius, eq. 5-7, as in the authors' TensorFlow code (martius-lab/l4-optimizer):

        g_hat = EMA_beta1(g) / (1 - beta1^t);   v = g_hat  or  g_hat / (sqrt(s_hat) + eps_a)
        L_min = gamma0 L_0 at t = 1, else min(L_min, L_t)
        eta_t = alpha (L_t - gamma L_min) / (g_hat . v + eps);   theta -= eta_t v
        L_min *= 1 + 1/tau

    ``wds`` is the L2 coefficient of each parameter (added to the gradient and, as
    wd/2 |theta|^2, to the loss). Returns weights, eta_t per step, L_min, branches taken."""
    theta = [p.detach().clone() for p in model.parameters()]
    m = [torch.zeros_like(x) for x in theta]
    s = [torch.zeros_like(x) for x in theta]
    min_loss, lrs, branches = None, [], set()
    for t in range(1, steps + 1):
        loss, grads = _grads_at(model, theta, t - 1)
        loss += sum(0.5 * wd * float((x**2).sum()) for wd, x in zip(wds, theta, strict=True))
        g = [gi + wd * x for gi, wd, x in zip(grads, wds, theta, strict=True)]
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g, strict=True)]
        s = [beta2 * si + (1 - beta2) * gi**2 for si, gi in zip(s, g, strict=True)]
        g_hat = [mi / (1 - beta1**t) for mi in m]
        if direction == "adam":
            v = [
                gh / ((si / (1 - beta2**t)).sqrt() + adam_eps)
                for gh, si in zip(g_hat, s, strict=True)
            ]
        else:
            v = g_hat
        if min_loss is None:
            min_loss = gamma0 * loss
        else:
            branches.add("new minimum" if loss < min_loss else "kept minimum")
            min_loss = min(min_loss, loss)
        eta = alpha * (loss - gamma * min_loss) / (_dot(g_hat, v) + eps)
        theta = [x - eta * vi for x, vi in zip(theta, v, strict=True)]
        min_loss *= 1 + 1 / tau
        lrs.append(eta)
    return theta, lrs, min_loss, branches


@pytest.mark.parametrize("direction", ["momentum", "adam"])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_l4_step_size_matches_reference(direction, wd):
    model = _mlp(6)
    want_w, want_lrs, want_min, branches = _reference_l4(
        model, direction, [wd, wd, 0.0, 0.0], 10, **L4_KW
    )
    assert branches == {"new minimum", "kept minimum"}  # both L_min updates are exercised
    # weight decay only on the first layer's group; eta_t is global and written to both groups
    opt = L4(_two_groups(model, weight_decay=(wd, 0.0)), direction=direction, **L4_KW)
    lrs = []
    for t in range(10):
        opt.zero_grad()
        loss = _loss(model, t)
        loss.backward()
        assert opt.step(loss=loss) is loss
        assert opt.param_groups[0]["lr"] == opt.param_groups[1]["lr"]
        lrs.append(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["l4_step"] == 10
    # Not bit-exact: the reference sums per-tensor dots in Python (different rounding).
    torch.testing.assert_close(
        torch.tensor(lrs, dtype=DT), torch.tensor(want_lrs, dtype=DT), rtol=1e-11, atol=0
    )
    assert opt.param_groups[0]["min_loss"] == pytest.approx(want_min, rel=1e-12)
    for p, w in zip(model.parameters(), want_w, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-11, atol=1e-13)


def test_l4_first_two_steps_by_hand_with_custom_gamma0_tau():
    # f = 2 w^2 at w0 = 1: L0 = 2, g = 4, g_hat = v = 4, L_min = gamma0 L0 = 1.2
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=DT))
    opt = L4([w], alpha=0.5, gamma=0.5, gamma0=0.6, tau=10.0)
    loss = (2 * w**2).sum()
    loss.backward()
    opt.step(loss=loss.item())
    eta1 = 0.5 * (2.0 - 0.5 * 1.2) / (16.0 + 1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(eta1, rel=1e-14)
    assert opt.param_groups[0]["min_loss"] == pytest.approx(1.2 * 1.1, rel=1e-14)
    w1 = 1.0 - eta1 * 4.0
    assert w.item() == pytest.approx(w1, rel=1e-14)
    # step 2 via a closure: L1 = 2 w1^2 = 1.36125 > 1.32, so L_min stays 1.32
    m2 = 0.9 * 0.4 + 0.1 * 4 * w1
    g_hat = m2 / (1 - 0.81)

    def closure():
        opt.zero_grad()
        out = (2 * w**2).sum()
        out.backward()
        return out

    assert isinstance(opt.step(closure), torch.Tensor)
    l1 = 2 * w1**2
    assert l1 == pytest.approx(1.36125, rel=1e-14)
    eta2 = 0.5 * (l1 - 0.5 * 1.32) / (g_hat**2 + 1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(eta2, rel=1e-12)
    assert opt.param_groups[0]["min_loss"] == pytest.approx(1.32 * 1.1, rel=1e-12)
    assert w.item() == pytest.approx(w1 - eta2 * g_hat, rel=1e-12)


def test_l4_non_finite_loss_keeps_lr_and_min_loss(caplog):
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=DT))
    opt = L4([w])
    w.grad = torch.tensor([1.0, -1.0], dtype=DT)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        opt.step(loss=math.nan)  # no finite lr yet: 0, nothing moves, L_min not initialised
    assert "L4: non-finite loss" in caplog.text
    assert opt.param_groups[0]["lr"] == 0.0 and opt.param_groups[0]["min_loss"] is None
    assert w.tolist() == [1.0, -1.0]
    opt.step(loss=1.0)  # L_min is initialised by the first finite loss
    lr = opt.param_groups[0]["lr"]
    assert lr > 0.0 and opt.param_groups[0]["min_loss"] == pytest.approx(0.75 * 1.001)
    before = w.detach().clone()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        opt.step(loss=torch.tensor(math.inf, dtype=DT))
    assert "L4: non-finite loss" in caplog.text
    assert opt.param_groups[0]["lr"] == lr  # the last finite step size is reused
    assert opt.param_groups[0]["min_loss"] == pytest.approx(0.75 * 1.001**2)  # only forgetting
    v = opt.state[w]["exp_avg"] / (1 - 0.9**3)
    torch.testing.assert_close(w.detach(), before - lr * v)


def test_l4_non_finite_step_size_keeps_lr(caplog):
    w = torch.nn.Parameter(torch.tensor([1e-3], dtype=DT))
    opt = L4([w])
    w.grad = torch.tensor([1e-3], dtype=DT)
    opt.step(loss=1e-6)
    lr = opt.param_groups[0]["lr"]
    assert math.isfinite(lr)
    # 0.15 * (1.7e308 - ...) / (g_hat . v ~ 1e-6) overflows
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        opt.step(loss=1.7e308)
    assert "L4: non-finite step size" in caplog.text
    assert opt.param_groups[0]["lr"] == lr
    assert torch.isfinite(w).all()


def test_l4_requires_a_loss_and_checks_arguments():
    w = torch.nn.Parameter(torch.ones(2))
    opt = L4([w])
    w.grad = torch.ones(2)
    with pytest.raises(ValueError, match="loss"):
        opt.step()
    for kw in (
        {"alpha": 0.0},
        {"direction": "sgd"},
        {"beta1": 1.0},
        {"beta2": -0.1},
        {"tau": 0.0},
        {"eps": 0.0},
        {"adam_eps": 0.0},
        {"gamma": -1.0},
        {"weight_decay": math.nan},
    ):
        with pytest.raises(ValueError):
            L4([w], **kw)


@pytest.mark.parametrize("direction", ["momentum", "adam"])
def test_l4_state_dict_round_trip_continues_identically(direction):
    def make(model):
        return L4(model.parameters(), direction=direction, weight_decay=1e-3, **L4_KW)

    opt = _assert_resumes_identically(make, _drive_l4)
    assert opt.param_groups[0]["l4_step"] == 7 and opt.param_groups[0]["min_loss"] is not None
    assert all("exp_avg" in s for s in opt.state.values())
    if direction == "adam":
        assert all("exp_avg_sq" in s for s in opt.state.values())
