"""What an MLR-SNet+ network does with the loss: its rate over a run for made-up traces.

Prints, for a shipped network or a file, the rate (as a multiple of the base rate) at every
tenth of a run of ``--steps`` steps under several training-loss traces (falling, flat, a
spike) and validation traces (falling; rising from 30 % of the run, as a model memorising
noisy labels shows), with SGD and with AdamW, beside the same network with its loss inputs
held at 0 (``progress_only``) and its prior, if it has one. Rows that match the
``progress_only`` row say the network does not use that input.

    python benchmarks/plus_outputs.py benchmarks/results/plus-v7/plus.safetensors
    python benchmarks/plus_outputs.py v6 --steps 2000
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from mlrsnet import plus

Trace = Callable[[float], float]  # progress in [0, 1) -> loss
LOSSES: dict[str, Trace] = {
    "falling": lambda p: 2.3 * math.exp(-5 * p) + 0.1,
    "flat": lambda p: 1.0,
    "spike at 50 %": lambda p: 2.3 * math.exp(-5 * p) + 0.1 + (3.0 if 0.5 <= p < 0.52 else 0.0),
}
VALIDATION: dict[str, Trace | None] = {
    "none": None,
    "falling": lambda p: 0.5 * math.exp(-3 * p) + 0.3,
    "rising from 30 %": lambda p: 0.5 + max(0.0, p - 0.3) * 2.0,
}


def rates(net: plus.PlusNet, steps: int, loss: Trace, validation: Trace | None,
          optimizer: str = "sgd", progress_only: bool = False, every: int = 50) -> list[float]:  # fmt: skip
    """The rate at every step (base rate 1), the validation loss given every ``every`` steps."""
    params = [torch.zeros(1, requires_grad=True)]
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW)(params, lr=1.0)
    scheduler = plus.MLRSNetPlusLR(opt, net, total_steps=steps, progress_only=progress_only)
    out = []
    for step in range(steps):
        if validation is not None and step and step % every == 0 and net.reads_validation:
            scheduler.observe_validation(validation(step / steps))
        scheduler.step(loss(step / steps))
        out.append(opt.param_groups[0]["lr"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", help="a shipped MLR-SNet+ name or a file")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    net, _ = plus.resolve(args.network)
    at = [round(i * args.steps / 10) for i in range(10)] + [args.steps - 1]
    print("| optimizer | training loss | validation loss | " +
          " | ".join(f"{i / 10:.1f}" for i in range(10)) + " | end |")  # fmt: skip
    print("|---|---|---|" + "---:|" * len(at))
    for optimizer in ("sgd", "adamw"):
        rows = [("(loss inputs at 0)", "—", rates(net, args.steps, LOSSES["falling"], None,
                                                  optimizer, progress_only=True))]  # fmt: skip
        rows += [(name, vname, rates(net, args.steps, trace, vtrace, optimizer))
                 for name, trace in LOSSES.items() for vname, vtrace in VALIDATION.items()
                 if vtrace is None or net.reads_validation]  # fmt: skip
        for name, vname, values in rows:
            print(f"| {optimizer} | {name} | {vname} | "
                  + " | ".join(f"{values[i]:.3f}" for i in at) + " |")  # fmt: skip
    if net.prior is not None:
        prior = [net.prior.value(i, args.steps) for i in at]
        print("| — | (the prior) | — | " + " | ".join(f"{v:.3f}" for v in prior) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
