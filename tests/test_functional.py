"""The pure functions: SGD direction against torch.optim.SGD, the scale rule."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrsnet.functional import lookahead, lr_meta_gradient, paper_gamma, sgd_direction


@settings(max_examples=40, deadline=None)
@given(
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    dampening=st.sampled_from([0.0, 0.1]),
    weight_decay=st.sampled_from([0.0, 5e-4, 0.1]),
    nesterov=st.booleans(),
    maximize=st.booleans(),
    steps=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_sgd_direction_reproduces_torch_sgd(
    momentum, dampening, weight_decay, nesterov, maximize, steps, seed
):
    if nesterov and (momentum == 0 or dampening != 0):
        return
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)  # fmt: skip
    for _ in range(steps):
        p.grad = torch.randn(5, generator=g, dtype=torch.float64)
        buf = opt.state.get(p, {}).get("momentum_buffer")
        d = sgd_direction(p.detach(), p.grad, buf, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)  # fmt: skip
        expected = lookahead([p.detach()], [d], 0.1)[0]
        opt.step()
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_lr_meta_gradient_against_finite_differences():
    torch.manual_seed(0)
    w, d, target = torch.randn(4).double(), torch.randn(4).double(), torch.randn(4).double()
    meta = lambda lr: ((w - lr * d - target) ** 2).sum()  # noqa: E731
    lr = 0.3
    w1 = (w - lr * d).requires_grad_()
    (grad,) = torch.autograd.grad(((w1 - target) ** 2).sum(), w1)
    eps = 1e-6
    fd = (meta(lr + eps) - meta(lr - eps)) / (2 * eps)
    assert lr_meta_gradient([grad], [d]).item() == pytest.approx(fd.item(), abs=1e-8)


def test_paper_gamma_formula():
    loss, classes = 2.302585, 10
    expected = math.sqrt(loss) * math.log(loss * classes) / classes**0.25 / 4
    assert paper_gamma(loss, classes) == pytest.approx(expected, rel=1e-12)
    assert paper_gamma(9.21, 10_000) == pytest.approx(
        math.sqrt(9.21) * math.log(92_100) / 10.0 / 4, rel=1e-12
    )


def test_paper_gamma_hazards():
    with pytest.warns(RuntimeWarning, match="absolute value"):
        assert paper_gamma(0.05, 10) > 0
    with pytest.raises(ValueError, match="set the scale yourself"):
        paper_gamma(0.1, 10)  # loss * classes == 1: the rule gives zero
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="initial_loss"):
            paper_gamma(bad, 10)
    with pytest.raises(ValueError, match="num_classes"):
        paper_gamma(2.3, 1)
    with pytest.raises(TypeError, match="num_classes"):
        paper_gamma(2.3, 10.0)


def test_paper_gamma_for_language_models_uses_the_perplexity():
    loss, vocab = 9.2103, 10_000
    ppl = math.exp(loss)
    expected = math.sqrt(ppl) * math.log(ppl * vocab) / vocab**0.25 / 4
    assert paper_gamma(loss, vocab, language_model=True) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="too large"):
        paper_gamma(1000.0, vocab, language_model=True)
