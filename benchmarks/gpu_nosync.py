"""On a GPU: the loss-driven schedulers without a host synchronisation per step.

    python benchmarks/gpu_nosync.py                 # needs CUDA; prints a table, writes --out
    python benchmarks/gpu_nosync.py --steps 400 --repeats 5 --out gpu_nosync.json

One training loop (an MLP on random data, SGD with a float learning rate, as users write it)
runs with each scheduler, side by side in one process, in a random order per repeat:

- ``torch-cosine``: ``torch.optim.lr_scheduler.CosineAnnealingLR``, the reference cost;
- ``mlrsnet-lag1`` / ``plus-lag1``: ``MLRSNetLR`` / ``MLRSNetPlusLR`` with ``loss_lag=1``,
  whose loss is copied to the host without blocking and read one step later;
- ``mlrsnet-lag0`` / ``plus-lag0``: the same without the lag, which read the loss with a host
  synchronisation per step (timed with the sync check off, for the cost of that sync).

The lagged loops and the torch loop run under ``torch.cuda.set_sync_debug_mode("error")``: a
synchronising call raises, so a finished run is the proof that none happened. Steps per
second are medians over repeats; the ratio to ``torch-cosine`` is what the page reports.
The project never depends on this script: it runs where a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path


def build(kind: str, model, optimizer, steps: int):
    import torch

    import mlrsnet
    from mlrsnet.plus import MLRSNetPlusLR
    from mlrsnet.plus import pretrained as plus_pretrained

    if kind == "torch-cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    lag = 1 if kind.endswith("lag1") else 0
    if kind.startswith("mlrsnet"):
        net = mlrsnet.pretrained("fmnist-resnet-every100").nets[0]
        return mlrsnet.MLRSNetLR(optimizer, net, loss_lag=lag)
    return MLRSNetPlusLR(optimizer, plus_pretrained("v6")[0], total_steps=steps, loss_lag=lag)


def loop(kind: str, steps: int, width: int, batch: int, seed: int, device: str = "cuda") -> dict:
    """Train ``steps`` steps with scheduler ``kind``; return its timing and checks (on a CPU
    ``device`` the same loop without the sync check: the script's own test)."""
    import torch

    torch.manual_seed(seed)
    device = torch.device(device)
    cuda = device.type == "cuda"
    model = torch.nn.Sequential(
        torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
        torch.nn.ReLU(), torch.nn.Linear(width, 10),
    ).to(device)  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = build(kind, model, optimizer, steps)
    inputs = torch.randn(steps, batch, width, device=device)
    targets = torch.randint(0, 10, (steps, batch), device=device)
    loss_driven = kind != "torch-cosine"

    def one(step: int) -> None:
        loss = torch.nn.functional.cross_entropy(model(inputs[step]), targets[step])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if loss_driven:
            scheduler.step(loss)
        optimizer.step()
        if not loss_driven:
            scheduler.step()

    for step in range(5):  # warm-up: kernels, the allocator, cuBLAS handles
        one(step)
    checked = cuda and not kind.endswith("lag0")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if checked else "default")
    started = time.perf_counter()
    try:
        for step in range(5, steps):
            one(step)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "kind": kind, "steps_per_second": (steps - 5) / seconds, "sync_checked": checked,
        "lr_final": optimizer.param_groups[0]["lr"],
        "lag_waits": getattr(scheduler, "num_lag_waits", 0),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_nosync.py needs a CUDA device; none is available here", file=sys.stderr)
        return 2
    kinds = ["torch-cosine", "mlrsnet-lag1", "plus-lag1", "mlrsnet-lag0", "plus-lag0"]
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for repeat in range(args.repeats):
        order = random.Random(repeat).sample(kinds, len(kinds))
        for kind in order:
            runs[kind].append(loop(kind, args.steps, args.width, args.batch, seed=repeat))
    base = statistics.median(r["steps_per_second"] for r in runs["torch-cosine"])
    rows = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.steps} steps, "
          f"MLP width {args.width}, batch {args.batch}, {args.repeats} repeats")  # fmt: skip
    print(f"{'scheduler':14} {'steps/s':>9} {'ratio':>7} {'sync check':>11} {'lag waits':>10}")
    for kind in kinds:
        speeds = [r["steps_per_second"] for r in runs[kind]]
        median = statistics.median(speeds)
        row = {"kind": kind, "steps_per_second": median, "min": min(speeds), "max": max(speeds),
               "ratio": median / base, "sync_checked": runs[kind][0]["sync_checked"],
               "lag_waits": sum(r["lag_waits"] for r in runs[kind])}  # fmt: skip
        rows.append(row)
        print(f"{kind:14} {median:9.1f} {median / base:7.3f} "
              f"{'error mode' if row['sync_checked'] else 'off':>11} {row['lag_waits']:10d}")  # fmt: skip
    if args.out is not None:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                "steps": args.steps, "repeats": args.repeats, "width": args.width,
                "batch": args.batch}  # fmt: skip
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
