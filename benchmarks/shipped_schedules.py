"""The learning rates each shipped network gives over a run: one snapshot alone, and all in stages.

Feeds every shipped network a typical training-loss curve (``L(t) = 0.2 + 2.1·exp(-t/200)``
over 1,000 steps, the shape of a classifier's loss) through :class:`mlrsnet.MLRSNetLR` with
``γ = 1``, so the curves are the factor ``A`` itself: once with the first snapshot alone for
the whole run (what ``MLRSNetLR(optimizer, pretrained(NAME).nets[0])`` does), once with the
three snapshots as stages at 0, 1/3 and 2/3 (the paper's protocol, ``stage_scale="fixed"``).

    python benchmarks/shipped_schedules.py --out docs/shipped_schedules.png
"""

from __future__ import annotations

import argparse
import math

import torch

import mlrsnet

STEPS = 1000


def loss_curve(steps: int = STEPS) -> list[float]:
    """A classifier's typical training loss: fast progress, then a slow tail."""
    return [0.2 + 2.1 * math.exp(-t / 200) for t in range(steps)]


def factors(name: str, staged: bool, losses: list[float]) -> list[float]:
    """The learning rate per step at ``γ = 1``: the factor ``A`` the network outputs."""
    bundle = mlrsnet.pretrained(name)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if staged:
        scheduler = mlrsnet.MLRSNetLR(optimizer, stages=bundle.stages(), total_steps=len(losses),
                                      stage_scale="fixed")  # fmt: skip
    else:
        scheduler = mlrsnet.MLRSNetLR(optimizer, bundle.nets[0])
    out = []
    for loss in losses:
        scheduler.step(loss)
        out.append(scheduler.get_last_lr()[0])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = loss_curve()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, staged in zip(axes, (False, True), strict=True):
        for name in mlrsnet.pretrained_names():
            values = factors(name, staged, losses)
            ax.plot(values, label=name)
            print(f"{name:24s} {'stages' if staged else 'alone '}: A = {values[0]:.3f} at step 1, "
                  f"{values[len(values) // 2]:.3f} at the middle, {values[-1]:.3f} at the end")  # fmt: skip
        ax.set_title("three snapshots as stages" if staged else "first snapshot alone")
        ax.set_xlabel("step (of 1,000)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("learning rate / γ  (the factor A)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
