"""What training several small models in one process would save the convergence suite.

Issue 25 asks whether the suite's budget can be cut honestly by training several models at
once (``torch.func`` stacking) where the per-step overhead dominates. The runs a stack could
share are those with one learning rate at every step: a hand schedule at one base rate over
the five seeds (each seed its own initialisation and its own batches). Stacked, the models'
parameters are tensors with a leading dimension of ``K``; one ``vmap`` forward gives ``K``
losses whose sum has each model's own gradient, and a torch optimizer with elementwise
updates (SGD-momentum, AdamW) then steps each model exactly as it would alone.

This measures, side by side in one run on one thread (as the suite's Ray workers train):

(a) that a stacked step is the sequential steps (the largest parameter difference after a
    few steps, which is float rounding only);
(b) the time of one training step of ``K`` models one after another over one stacked step,
    for the suite's Fashion-MNIST MLP 784-512-256-10 and two-conv CNN at batch 128, with
    SGD-momentum; the variants interleave and the medians are reported, so machine load
    affects them alike.

    python benchmarks/stacking.py                   # the documented run (K = 5, 60 steps)
    python benchmarks/stacking.py --steps 10        # a quick look
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from mlrsnet.lab.tasks.models import mlp, two_conv_cnn

BATCH = 128
MODELS: dict[str, Callable[[], nn.Module]] = {
    "MLP 784-512-256-10": lambda: mlp(784, 10, hidden=(512, 256)),
    "two-conv CNN": lambda: two_conv_cnn(10, 1),
}


def _batches(count: int, steps: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """One batch per model and step (each model sees its own data, as each seed does)."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(count, BATCH, 1, 28, 28, generator=gen),
             torch.randint(0, 10, (count, BATCH), generator=gen)) for _ in range(steps)]  # fmt: skip


class Sequential:
    """``K`` models, each with its own SGD-momentum, stepped one after another."""

    def __init__(self, models: list[nn.Module], lr: float) -> None:
        self.models = models
        self.optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9) for m in models]

    def step(self, inputs: Tensor, targets: Tensor) -> None:
        for i, (model, optimizer) in enumerate(zip(self.models, self.optimizers, strict=True)):
            loss = nn.functional.cross_entropy(model(inputs[i]), targets[i])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def parameters(self) -> list[dict[str, Tensor]]:
        return [dict(m.named_parameters()) for m in self.models]


class Stacked:
    """The same ``K`` models as stacked tensors: one ``vmap`` forward, one backward, one
    optimizer step (SGD-momentum is elementwise, so each model steps as it would alone)."""

    def __init__(self, models: list[nn.Module], lr: float) -> None:
        params, buffers = stack_module_state(models)
        self.params, self.buffers = params, buffers
        self.base = copy.deepcopy(models[0]).to("meta")
        self.optimizer = torch.optim.SGD(params.values(), lr=lr, momentum=0.9)

        def loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return nn.functional.cross_entropy(functional_call(self.base, (p, b), (x,)), y)

        self.losses = vmap(loss)

    def step(self, inputs: Tensor, targets: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.losses(self.params, self.buffers, inputs, targets).sum().backward()
        self.optimizer.step()

    def parameters(self) -> list[dict[str, Tensor]]:
        count = next(iter(self.params.values())).shape[0]
        return [{k: v[i] for k, v in self.params.items()} for i in range(count)]


def _models(make: Callable[[], nn.Module], count: int) -> list[nn.Module]:
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(make())
    return models


def agreement(make: Callable[[], nn.Module], count: int, steps: int = 5) -> float:
    """The largest parameter difference between stacked and sequential after ``steps``."""
    sequential = Sequential(_models(make, count), lr=0.05)
    stacked = Stacked(_models(make, count), lr=0.05)
    for inputs, targets in _batches(count, steps, seed=1):
        sequential.step(inputs, targets)
        stacked.step(inputs, targets)
    return max(float((a[k] - b[k]).detach().abs().max())
               for a, b in zip(sequential.parameters(), stacked.parameters(), strict=True)
               for k in a)  # fmt: skip


def timing(make: Callable[[], nn.Module], count: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each variant, interleaved step by step."""
    variants = {"sequential": Sequential(_models(make, count), lr=0.05),
                "stacked": Stacked(_models(make, count), lr=0.05)}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i, (inputs, targets) in enumerate(_batches(count, steps + 3)):
        for name, variant in variants.items():
            start = time.perf_counter()
            variant.step(inputs, targets)
            if i >= 3:  # warm-up steps are not counted
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5, help="models in a stack (K)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"K = {args.count}, batch {BATCH}, SGD-momentum")  # fmt: skip
    print(
        "| model | max parameter difference | sequential ms/step | stacked ms/step | "
        "sequential / stacked |"
    )
    print("|---|---|---|---|---|")
    for name, make in MODELS.items():
        difference = agreement(make, args.count)
        t = timing(make, args.count, args.steps)
        print(
            f"| {name} | {difference:.1e} | {1e3 * t['sequential']:.1f} | "
            f"{1e3 * t['stacked']:.1f} | {t['sequential'] / t['stacked']:.2f} |"
        )


if __name__ == "__main__":
    main()
