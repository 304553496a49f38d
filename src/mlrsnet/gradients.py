"""The first half of every training step: zero the gradients, back-propagate, clip.

:class:`~mlrsnet.MetaTrainer` and every method of the lab's training-step protocol
(:mod:`mlrsnet.lab.protocol`) compute their gradients here, so clipping and the gradient
norm mean the same thing everywhere.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> loss = model(torch.ones(4, 3)).pow(2).mean() + 100.0
    >>> norm = compute_gradients(loss, optimizer, grad_clip=0.25)
    >>> bool(norm > 0.25), round(float(torch.nn.utils.get_total_norm(
    ...     [p.grad for p in model.parameters()])), 4)
    (True, 0.25)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compute_gradients", "finite_step", "parameters_with_grad"]


def parameters_with_grad(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The optimizer's parameters that hold a gradient, in ``param_groups`` order."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def compute_gradients(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip: float | None = None,
    total_norm: bool = False,
) -> Tensor | None:
    """Zero the optimizer's gradients, back-propagate ``loss`` and clip the global norm.

    Args:
        loss: The scalar training loss with its graph.
        optimizer: The optimizer whose parameters receive the gradients.
        grad_clip: Clip the global gradient norm to this (``None``: no clipping).
        total_norm: Also return the norm when not clipping (costs one norm computation).

    Returns:
        The global gradient norm before clipping (a 0-d tensor) when clipping or
        ``total_norm``; else ``None``.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        return torch.nn.utils.clip_grad_norm_(parameters_with_grad(optimizer), grad_clip)
    if total_norm:
        return torch.nn.utils.get_total_norm([p.grad for p in parameters_with_grad(optimizer)])
    return None


def finite_step(loss: Tensor, grad_norm: Tensor | float | None = None) -> bool:
    """Whether a step may be applied: its loss and gradient norm are finite (one host sync).

    The rule :class:`~mlrsnet.MetaTrainer` and every method of the lab's training-step
    protocol apply before they change anything.

    Args:
        loss: The step's scalar loss.
        grad_norm: The global norm of its gradient (before clipping), or ``None``.

    Example:
        >>> finite_step(torch.tensor(2.0), torch.tensor(float("inf")))
        False
        >>> finite_step(torch.tensor(2.0))
        True
    """
    finite = torch.isfinite(loss.detach())
    if grad_norm is not None:
        finite = finite & torch.isfinite(torch.as_tensor(grad_norm, device=finite.device))
    return bool(finite)
