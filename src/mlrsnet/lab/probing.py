"""The library's probe (:func:`mlrsnet.probe.lr_range_test`) applied to a lab task.

One place for how the lab finds a base learning rate with zero tuning: the range swept per
optimizer (:func:`probe_range`), the batches the probe trains on (:func:`training_batches`)
and the probe of a task's model (:func:`probe_task`). The benchmark's *probe* tier, MLR-SNet+
meta-training and ``mlrsnet train --lr probe`` (:mod:`mlrsnet.lab.runner`) all use it, so
they find the same rate for the same model, optimizer settings and seed.

Example:
    >>> from mlrsnet.lab import tasks
    >>> task = tasks.get("digits-mlp")
    >>> model = task.build_model(seed=0)
    >>> result = probe_task(task, model, "sgd", seed=0)
    >>> 0.0 < result.lr < 100.0, result.steps <= 100
    (True, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["probe_range", "probe_task", "training_batches"]


def probe_range(optimizer: str) -> dict[str, float]:
    """The range the probe sweeps for an optimizer (7 decades for SGD, 6 for AdamW).

    Args:
        optimizer: ``"sgd"`` or ``"adamw"`` (anything else is taken as SGD).

    Returns:
        ``{"lr_min", "lr_max"}``, the keyword arguments of
        :func:`~mlrsnet.probe.lr_range_test`.

    Example:
        >>> probe_range("adamw")
        {'lr_min': 1e-06, 'lr_max': 1.0}
    """
    if optimizer == "adamw":
        return {"lr_min": 1e-6, "lr_max": 1.0}
    return {"lr_min": 1e-5, "lr_max": 100.0}


def training_batches(
    task: Any,
    seed: int,
    *,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    augment: bool | None = None,
) -> Iterator[tuple[int, Any, Any]]:
    """Endless ``(epoch, inputs, targets)`` of a task's training loader, epoch after epoch.

    Args:
        task: A lab task (:func:`mlrsnet.lab.tasks.get`).
        seed: The loader's seed (data order and augmentation).
        batch_size: Batch size (default: the task's).
        device: Where the batches live.
        augment: Whether the batches are augmented (``None``: the task's default).

    Yields:
        ``(epoch, inputs, targets)``, the epoch counted from 0.
    """
    batch_size = batch_size or task.batch_size
    extra = {} if augment is None else {"augment": augment}
    epoch = 0
    while True:
        for inputs, targets in task.train_loader(batch_size, epoch=epoch, seed=seed, device=device,
                                                 **extra):  # fmt: skip
            yield epoch, inputs, targets
        epoch += 1


def probe_task(
    task: Any,
    model: torch.nn.Module,
    optimizer: str,
    seed: int,
    *,
    batch_size: int | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    nesterov: bool = False,
    augment: bool | None = None,
) -> Any:
    """The library's probe (:func:`mlrsnet.probe.lr_range_test`) on a task's model.

    The probe trains ``model`` with the optimizer (SGD with momentum and coupled weight decay,
    or AdamW with decoupled weight decay) over the range of :func:`probe_range`, on the first
    training batches of ``seed`` (a language model's state carried within an epoch, the
    batches on the model's device), with the task's gradient clipping. The model and the
    random number generators are left as they were. The settings default to the task's, so
    a run that overrides them probes the optimizer it trains with.

    Args:
        task: A lab task (:func:`mlrsnet.lab.tasks.get`).
        model: The task's model, on the device it trains on.
        optimizer: ``"sgd"`` or ``"adamw"`` (anything else is taken as SGD).
        seed: The training loader's seed.
        batch_size: Batch size (default: the task's).
        momentum: SGD momentum, or AdamW's β1 as training reads it
            (:func:`mlrsnet.lab.baselines.adam_beta1`; default: the task's).
        weight_decay: Weight decay (default: the task's).
        nesterov: Nesterov momentum for SGD (as the run's ``nesterov`` option).
        augment: Whether its batches are augmented (``None``: the task's default), as the run's.

    Returns:
        The :class:`~mlrsnet.probe.ProbeResult`: ``lr`` is the suggested base rate, ``steps``
        the probe's cost in steps of training.
    """
    from mlrsnet.lab.baselines import adam_beta1
    from mlrsnet.lab.tasks.types import call_model
    from mlrsnet.probe import lr_range_test

    momentum = task.momentum if momentum is None else momentum
    weight_decay = task.weight_decay if weight_decay is None else weight_decay
    if optimizer == "adamw":  # with the β1 the run trains with
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=1.0, betas=(adam_beta1(momentum), 0.999),
            weight_decay=weight_decay,
        )  # fmt: skip
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=momentum,
                              weight_decay=weight_decay, nesterov=nesterov)  # fmt: skip
    device = next(model.parameters()).device
    batches = training_batches(task, seed, batch_size=batch_size, device=device, augment=augment)
    state: dict[str, Any] = {"epoch": 0, "carry": None}

    def next_loss() -> torch.Tensor:
        epoch, inputs, targets = next(batches)
        if epoch != state["epoch"]:
            state["epoch"], state["carry"] = epoch, None
        outputs = call_model(model, task.model_inputs(inputs, state["carry"]))
        state["carry"] = task.next_carry(outputs)
        return task.loss_fn(outputs, targets)

    return lr_range_test(model, opt, next_loss, grad_clip=task.grad_clip,
                         **probe_range(optimizer))  # fmt: skip
