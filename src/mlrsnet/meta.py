"""``MetaTrainer``: train a model while meta-learning its schedule network.

Every ``meta_interval`` steps the schedule network ``θ`` takes one step of its own
optimizer on the meta loss of a one-step SGD lookahead (the paper's bilevel
problem, solved online):

    w' = w − γ · A(f_t; θ) · d_t            (d_t: the SGD direction of this step)
    θ ← θ − β ∇_θ ℓ_meta(w')

The lookahead is linear in the learning rate, so ``∇_θ ℓ_meta(w') =
−γ ⟨∇ℓ_meta(w'), d_t⟩ · ∇_θ A(f_t; θ)``: one forward and backward pass of the
model on the meta batch, reusing this step's training gradient, and no
second-order terms. The authors' code reaches the same gradient with a rebuilt
model, a second-order graph and a third pass; ``tests/test_meta.py`` checks the
two agree on their own recorded cases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_map

from mlrsnet.functional import lr_meta_gradient, mlrsnet_forward, sgd_direction
from mlrsnet.gradients import compute_gradients, finite_step
from mlrsnet.scheduler import MLRSNetLR

__all__ = ["MetaTrainer"]

logger = logging.getLogger(__name__)

Batch = tuple[Any, Tensor]
LossFn = Callable[[Any, Tensor], Tensor]


class MetaTrainer:
    """One training step at a time, with a meta update every ``meta_interval`` steps.

    Works on any ``nn.Module`` through ``torch.func.functional_call``: no layer
    rewriting, no model copies. The lookahead reproduces ``torch.optim.SGD``'s own
    update (weight decay, momentum buffers, dampening, nesterov, maximize) and the
    optional gradient-norm clipping; it runs on copies of the model's buffers, so
    BatchNorm running statistics and the optimizer state end exactly as a plain
    step leaves them.

    Each step: forward and backward on the training batch, clipping, the meta
    update when due (the schedule network sees this step's loss from the state
    the scheduler carries), then ``scheduler.step(loss)`` with the updated network
    and ``optimizer.step()``. The LSTM state advances once per training step (the
    authors' code advances it twice on meta steps; see ``docs/faithfulness.md``).

    Under ``torch.distributed`` (a process group of several ranks) the training
    loss fed to the schedule network is the mean over ranks (the scheduler does
    that), and the meta-gradient ``∂ℓ/∂lr`` is averaged over ranks before it
    reaches the network, so the network stays identical everywhere when each rank
    passes its own shard of the meta batch. Wrap the model in DDP as usual.

    Args:
        model: The model (an ``nn.Module``, possibly wrapped in DDP).
        optimizer: A ``torch.optim.SGD`` over the model's parameters.
        scheduler: The :class:`~mlrsnet.MLRSNetLR` driving ``optimizer``; its
            network is the one meta-trained.
        meta_optimizer: The optimizer of the schedule network's parameters
            (the paper: Adam, lr 1e-3, weight decay 1e-4).
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        meta_interval: Steps between meta updates (the paper: 300).
        grad_clip: Clip the training gradient's norm to this before the step and
            the lookahead (the paper's language models: 0.25).
        skip_nonfinite: Skip the whole step (no meta update, no schedule step, no
            optimizer step) when the training loss or the gradient norm is NaN or
            infinite, and count it in ``num_skipped_steps``. The check costs a
            gradient norm and one host sync per step on CUDA; pass ``False`` to
            avoid it.

    Example:
        >>> import torch, mlrsnet
        >>> model = torch.nn.Linear(4, 3)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
        >>> net = mlrsnet.MLRSNet()
        >>> scheduler = mlrsnet.MLRSNetLR(optimizer, net)
        >>> trainer = mlrsnet.MetaTrainer(model, optimizer, scheduler,
        ...     torch.optim.Adam(net.parameters(), lr=1e-3), torch.nn.functional.cross_entropy,
        ...     meta_interval=2)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> stats = [trainer.step((x, y), meta_batch=(x, y)) for _ in range(2)]
        >>> "meta_loss" in stats[1]
        True
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: MLRSNetLR,
        meta_optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        *,
        meta_interval: int = 300,
        grad_clip: float | None = None,
        skip_nonfinite: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"MetaTrainer: model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.SGD):
            raise TypeError(
                "MetaTrainer: the lookahead reproduces torch.optim.SGD's update, got "
                f"{type(optimizer).__name__}; meta-train with SGD, then transfer the network "
                "to any optimizer with MLRSNetLR"
            )
        if not optimizer.param_groups:
            raise ValueError("MetaTrainer: the optimizer has no param groups")
        if not isinstance(scheduler, MLRSNetLR) or scheduler.optimizer is not optimizer:
            raise TypeError("MetaTrainer: scheduler must be an MLRSNetLR built on `optimizer`")
        if not isinstance(meta_optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"MetaTrainer: meta_optimizer must be an Optimizer, got {type(meta_optimizer).__name__}"
            )
        if not callable(loss_fn):
            raise TypeError("MetaTrainer: loss_fn must be callable: loss_fn(outputs, targets)")
        if (
            isinstance(meta_interval, bool)
            or not isinstance(meta_interval, int)
            or meta_interval < 1
        ):
            raise ValueError(
                f"MetaTrainer: meta_interval must be a positive int, got {meta_interval!r}"
            )
        if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
            raise ValueError(
                f"MetaTrainer: grad_clip must be a positive number or None, got {grad_clip!r}"
            )
        for group in optimizer.param_groups:
            if group.get("foreach") is False and group.get("differentiable"):
                raise ValueError("MetaTrainer: differentiable SGD is not supported")
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.meta_optimizer = meta_optimizer
        self.loss_fn = loss_fn
        self.meta_interval = meta_interval
        self.grad_clip = grad_clip
        self.skip_nonfinite = skip_nonfinite
        self.num_skipped_steps = 0
        self.num_steps = 0
        self.num_meta_steps = 0
        self.num_skipped_meta_steps = 0
        module = (
            model.module
            if hasattr(model, "module") and isinstance(model.module, nn.Module)
            else model
        )
        self._functional_model = module
        self._names = {p: n for n, p in module.named_parameters()}

    # -- public -------------------------------------------------------------------

    def is_meta_step(self) -> bool:
        """Whether the next :meth:`step` includes a meta update."""
        return (self.num_steps + 1) % self.meta_interval == 0

    def step(
        self, batch: Batch, meta_batch: Batch | Callable[[], Batch] | None = None
    ) -> dict[str, Any]:
        """One training step; a meta update first when one is due.

        Args:
            batch: ``(inputs, targets)``; ``inputs`` is passed to the model, or
                unpacked into it when it is a tuple.
            meta_batch: ``(inputs, targets)`` of held-out meta data, or a
                callable returning one (called only on meta steps). Required on
                meta steps.

        Returns:
            ``{"loss": 0-d tensor, "lr": float of the first group, "outputs":
            detached model outputs}``, plus ``"meta_loss"`` (0-d tensor) on meta
            steps, ``"meta_skipped": True`` when a non-finite meta-gradient was
            skipped, and ``"skipped": True`` when a non-finite training loss
            skipped the whole step.
        """
        inputs, targets = _unpack(batch, "batch")
        self.model.train()
        outputs = self._call_model(inputs)
        stats = self.update(self.loss_fn(outputs, targets), meta_batch)
        stats["outputs"] = tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, outputs)
        return stats

    def update(
        self, loss: Tensor, meta_batch: Batch | Callable[[], Batch] | None = None
    ) -> dict[str, Any]:
        """The rest of a training step, once the caller has computed the loss.

        :meth:`step` is ``update(loss_fn(model(inputs), targets), meta_batch)`` with the
        model in training mode; call ``update`` directly where the loop does its own
        forward pass (the lab's run loop does).

        Args:
            loss: This step's scalar training loss, with its graph.
            meta_batch: As for :meth:`step`.

        Returns:
            As :meth:`step`, without ``"outputs"``.
        """
        _check_scalar_loss(loss)
        grad_norm = compute_gradients(loss, self.optimizer, grad_clip=self.grad_clip,
                                      total_norm=self.skip_nonfinite)  # fmt: skip
        if self.skip_nonfinite and not finite_step(loss, grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            return self._skip(loss)
        stats: dict[str, Any] = {}
        loss_value = loss.detach()
        if self.is_meta_step():
            if meta_batch is None:
                raise ValueError(
                    f"MetaTrainer.step: step {self.num_steps + 1} is a meta step "
                    f"(meta_interval={self.meta_interval}) and needs meta_batch"
                )
            if callable(meta_batch):
                try:
                    meta_batch = meta_batch()
                except StopIteration:
                    raise ValueError(
                        f"MetaTrainer: meta_batch() ran out of batches at step {self.num_steps + 1} "
                        f"(meta_interval={self.meta_interval}); give it an endless iterator, "
                        "e.g. itertools.cycle over the meta loader"
                    ) from None
            stats.update(self._meta_update(loss_value, meta_batch))
        self.scheduler.step(loss_value)
        self.optimizer.step()
        self.num_steps += 1
        stats["loss"] = loss_value
        stats["lr"] = self.scheduler.get_last_lr()[0]
        return stats

    def _skip(self, loss: Tensor) -> dict[str, Any]:
        """A non-finite loss or gradient: no update of anything, counted and logged."""
        self.num_steps += 1
        self.num_skipped_steps += 1
        logger.warning(
            "MetaTrainer: non-finite training loss or gradient at step %d; step skipped (%d so far)",
            self.num_steps, self.num_skipped_steps,
        )  # fmt: skip
        return {"loss": loss.detach(), "lr": self.scheduler.get_last_lr()[0], "skipped": True}

    def meta_gradient(self, loss: Tensor, meta_batch: Batch) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The meta loss and ``∂ meta_loss / ∂θ`` for the current gradients, changing nothing.

        The model's ``.grad`` must hold this step's (clipped) training gradient.

        Returns:
            ``(meta_loss, d_meta_loss_d_lr_factor, grads)``: grads matches
            ``scheduler.net.parameters()``.
        """
        factor, meta_loss, dfactor = self._meta_terms(loss, meta_batch)
        grads = torch.autograd.grad(
            factor, list(self.scheduler.net.parameters()), grad_outputs=dfactor
        )
        return meta_loss.detach(), dfactor, list(grads)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scheduler (with the network and LSTM state), meta-optimizer, counters."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "num_steps": self.num_steps,
            "num_meta_steps": self.num_meta_steps,
            "num_skipped_meta_steps": self.num_skipped_meta_steps,
            "num_skipped_steps": self.num_skipped_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything saved by :meth:`state_dict`."""
        missing = sorted(
            {"model", "optimizer", "scheduler", "meta_optimizer", "num_steps"} - state.keys()
        )
        if missing:
            raise ValueError(f"MetaTrainer.load_state_dict: missing keys {missing}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.num_steps = int(state["num_steps"])
        self.num_meta_steps = int(state.get("num_meta_steps", 0))
        self.num_skipped_meta_steps = int(state.get("num_skipped_meta_steps", 0))
        self.num_skipped_steps = int(state.get("num_skipped_steps", 0))

    # -- internals ----------------------------------------------------------------

    def _call_model(self, inputs: Any, fn: Callable[..., Any] | None = None) -> Any:
        fn = self.model if fn is None else fn
        return fn(*inputs) if isinstance(inputs, tuple) else fn(inputs)

    def _meta_terms(self, loss: Tensor, meta_batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """``(factor with graph to θ, meta loss, ∂ meta_loss/∂factor)``."""
        meta_inputs, meta_targets = _unpack(meta_batch, "meta_batch")
        net = self.scheduler.net
        weight = net.head.weight
        h, c = self.scheduler.state
        loss = self.scheduler.network_input(loss)  # as the scheduler reads it
        with torch.enable_grad():
            factor, _ = mlrsnet_forward(
                loss,
                (h.to(weight.device, weight.dtype), c.to(weight.device, weight.dtype)),
                net.cell_params(),
                net.head.weight,
                net.head.bias,
            )
        factor_value = factor.detach()
        overrides: dict[str, Tensor] = {}
        lookahead_params: list[Tensor] = []
        directions: list[Tensor] = []
        scales: list[Tensor | float] = []
        for group, base_lr in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, strict=True
        ):
            group_dirs, group_params = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                with torch.no_grad():
                    d = sgd_direction(
                        p, p.grad, buf,
                        momentum=group["momentum"], dampening=group["dampening"],
                        weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                        maximize=group.get("maximize", False),
                    )  # fmt: skip
                    lr = base_lr * factor_value.to(p.device, p.dtype)
                    w = (p - lr * d).requires_grad_(True)
                name = self._names.get(p)
                if name is None:
                    raise ValueError(
                        "MetaTrainer: the optimizer holds a parameter that is not in the model"
                    )
                overrides[name] = w
                group_params.append(w)
                group_dirs.append(d)
            lookahead_params.append(group_params)
            directions.append(group_dirs)
            scales.append(base_lr)
        buffers = {n: b.clone() for n, b in self._functional_model.named_buffers()}
        with torch.enable_grad():
            meta_outputs = self._call_model(
                meta_inputs,
                lambda *args: functional_call(self._functional_model, (overrides, buffers), args),
            )
            meta_loss = self.loss_fn(meta_outputs, meta_targets)
            _check_scalar_loss(meta_loss, "meta loss")
            flat = [w for ws in lookahead_params for w in ws]
            meta_grads = torch.autograd.grad(meta_loss, flat, allow_unused=True)
        # ∂ℓ/∂factor = Σ_groups γ_g · ∂ℓ/∂lr_g, with ∂ℓ/∂lr_g = −⟨∇ℓ(w'), d⟩ over the group
        dfactor = None
        k = 0
        for group_params, group_dirs, scale in zip(
            lookahead_params, directions, scales, strict=True
        ):
            n = len(group_params)
            grads = [
                torch.zeros_like(w) if g is None else g
                for w, g in zip(group_params, meta_grads[k : k + n], strict=True)
            ]
            k += n
            if not grads:
                continue
            term = lr_meta_gradient(grads, group_dirs).to(factor.device, factor.dtype) * scale
            dfactor = term if dfactor is None else dfactor + term
        if dfactor is None:
            raise ValueError("MetaTrainer: no parameter of the optimizer has a gradient")
        if self.scheduler.reads_mean_over_ranks():
            torch.distributed.all_reduce(dfactor, op=torch.distributed.ReduceOp.SUM)
            dfactor = dfactor / torch.distributed.get_world_size()
            meta_loss = meta_loss.detach().clone()
            torch.distributed.all_reduce(meta_loss, op=torch.distributed.ReduceOp.SUM)
            meta_loss = meta_loss / torch.distributed.get_world_size()
        return factor, meta_loss.detach(), dfactor.detach()

    def _meta_update(self, loss: Tensor, meta_batch: Batch) -> dict[str, Any]:
        factor, meta_loss, dfactor = self._meta_terms(loss, meta_batch)
        self.meta_optimizer.zero_grad(set_to_none=True)
        factor.backward(dfactor)
        net_params = list(self.scheduler.net.parameters())
        finite = torch.stack(
            [dfactor.reshape(()).isfinite()]
            + [p.grad.isfinite().all() for p in net_params if p.grad is not None]
        ).all()
        if not bool(finite):  # one host sync per meta step
            self.meta_optimizer.zero_grad(set_to_none=True)
            self.num_skipped_meta_steps += 1
            logger.warning(
                "MetaTrainer: non-finite meta-gradient at step %d; meta update skipped (%d so far)",
                self.num_steps + 1,
                self.num_skipped_meta_steps,
            )
            return {"meta_loss": meta_loss, "meta_skipped": True}
        self.meta_optimizer.step()
        self.num_meta_steps += 1
        return {"meta_loss": meta_loss}


def _unpack(batch: Any, what: str) -> Batch:
    if not (isinstance(batch, Sequence) and len(batch) == 2):
        raise TypeError(
            f"MetaTrainer: {what} must be a pair (inputs, targets), got {type(batch).__name__}"
        )
    if isinstance(batch[1], Tensor) and batch[1].numel() == 0:
        raise ValueError(f"MetaTrainer: {what} is empty (targets of shape {tuple(batch[1].shape)})")
    return batch[0], batch[1]


def _check_scalar_loss(loss: Any, what: str = "loss") -> None:
    if not isinstance(loss, Tensor):
        raise TypeError(
            f"MetaTrainer: loss_fn must return a tensor, got {type(loss).__name__} for the {what}"
        )
    if loss.numel() != 1:
        raise ValueError(f"MetaTrainer: the {what} must be a scalar, got shape {tuple(loss.shape)}")
