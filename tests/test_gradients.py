"""mlrsnet.gradients: zero, backward, clip — as torch's own utilities do it, in one place."""

import torch

from mlrsnet.gradients import compute_gradients, parameters_with_grad


def _model_and_loss(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    unused = torch.nn.Parameter(torch.ones(2))  # no gradient reaches it
    optimizer = torch.optim.SGD([*model.parameters(), unused], lr=0.1)
    x, y = torch.randn(11, 5), torch.randint(0, 3, (11,))
    return model, optimizer, unused, lambda: torch.nn.functional.cross_entropy(model(x), y) * 30


def test_equals_zero_grad_backward_clip_grad_norm():
    model, optimizer, unused, loss = _model_and_loss()
    for p in model.parameters():
        p.grad = torch.full_like(p, 5.0)  # stale gradients must be dropped, not accumulated
    norm = compute_gradients(loss(), optimizer, grad_clip=0.5)
    ours = [p.grad.clone() for p in model.parameters()]
    assert unused.grad is None and parameters_with_grad(optimizer) == list(model.parameters())

    reference, ref_optimizer, _, ref_loss = _model_and_loss()
    ref_optimizer.zero_grad(set_to_none=True)
    ref_loss().backward()
    ref_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    assert torch.equal(norm, ref_norm) and float(norm) > 0.5  # the norm before clipping
    for a, b in zip(ours, reference.parameters(), strict=True):
        assert torch.equal(a, b.grad)


def test_no_clip_returns_the_norm_only_when_asked():
    model, optimizer, _, loss = _model_and_loss()
    assert compute_gradients(loss(), optimizer) is None
    grads = [p.grad.clone() for p in model.parameters()]
    norm = compute_gradients(loss(), optimizer, total_norm=True)
    assert torch.equal(norm, torch.nn.utils.get_total_norm(grads))
    for a, p in zip(grads, model.parameters(), strict=True):
        assert torch.equal(a, p.grad)  # not clipped, not accumulated
