"""What meta-training and the scheduler cost, as ratios taken side by side in one run.

Measures, on a CIFAR-shaped ResNet-18 at batch 64 (CPU, and CUDA when present):

(a) a training step that includes a meta update / a plain training step, for
    ``mlrsnet.MetaTrainer`` and for the authors' procedure (rebuilt model copy,
    second-order gradient graph, a separate real step), re-created here with
    ``torch.func``;
(b) ``MLRSNetLR.step(loss)`` wall time per call, and the authors' per-step
    network call (a no-grad forward plus ``float()``, a host sync on CUDA);
(c) the whole-run overhead of meta-training at ``meta_interval`` versus plain
    training: ``(interval − 1) plain steps + 1 meta step`` with the scheduler on
    every step, over ``interval`` plain steps with a fixed learning rate — from
    the step times of (a) and (b), or measured end to end with ``--whole-run``.

Timings interleave the variants (plain, ours, authors, plain, ...) and report
medians, so machine load affects them alike.

    python benchmarks/overhead.py                  # the documented run
    python benchmarks/overhead.py --model small    # a quick look (small ResNet)
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time

import torch
from torch import nn
from torch.func import functional_call

import mlrsnet
from mlrsnet import jsonio
from mlrsnet.lab.tasks.models import resnet, resnet18
from mlrsnet.plus import MLRSNetPlusLR, PlusNet, pretrained, pretrained_names

ce = nn.functional.cross_entropy


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_model(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = resnet18() if name == "resnet18" else resnet(blocks=(1, 1, 1, 1), width=16)
    return model.to(device)


def make_trainer(model: nn.Module, gamma: float, meta_interval: int) -> mlrsnet.MetaTrainer:
    """SGD (momentum 0.9, weight decay 5e-4) driven and meta-trained by a fresh MLRSNet."""
    optimizer = torch.optim.SGD(model.parameters(), lr=gamma, momentum=0.9, weight_decay=5e-4)
    net = mlrsnet.MLRSNet()
    scheduler = mlrsnet.MLRSNetLR(optimizer, net)
    meta_optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    return mlrsnet.MetaTrainer(
        model, optimizer, scheduler, meta_optimizer, ce, meta_interval=meta_interval
    )


def plain_step(model, optimizer, x, y):
    loss = ce(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def authors_meta_step(model, optimizer, net, meta_optimizer, gamma, x, y, xm, ym):
    """The authors' meta-training iteration at a meta step (meta_train.py), with torch.func.

    A fresh copy of the model; gradients with ``create_graph=True``; the schedule
    network fed the loss with its graph; a lookahead through the real optimizer's
    momentum buffers; the meta loss back-propagated through all of it; then the
    real step: forward again, the network again, a host read of the lr, backward,
    SGD step.
    """
    meta_model = copy.deepcopy(model)
    meta_model.train()
    params = dict(meta_model.named_parameters())
    loss = ce(meta_model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    factor, _ = net(loss)  # the loss keeps its graph, as in the authors' code
    group = optimizer.param_groups[0]
    new = {}
    for (name, p), g, q in zip(params.items(), grads, model.parameters(), strict=True):
        d = g.detach() + group["weight_decay"] * p  # their MetaSGD uses g.data
        buf = optimizer.state.get(q, {}).get("momentum_buffer")
        if group["momentum"] and buf is not None:
            d = buf * group["momentum"] + d
        new[name] = p - factor * gamma * d
    meta_loss = ce(functional_call(meta_model, new, (xm,)), ym)
    meta_optimizer.zero_grad(set_to_none=True)
    meta_loss.backward()
    meta_optimizer.step()
    # the real step
    loss = ce(model(x), y)
    with torch.no_grad():
        lr = float(net(loss)[0]) * gamma
    for g in optimizer.param_groups:
        g["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_calls(fn, n: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - start) / n


def measure_steps(args, device):
    model = make_model(args.model, device)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    xm = torch.randn(args.batch_size, 3, 32, 32, device=device)
    ym = torch.randint(0, 10, (args.batch_size,), device=device)
    gamma = 0.1

    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=gamma, momentum=0.9, weight_decay=5e-4)

    plain_model = copy.deepcopy(model)
    plain_opt = sgd(plain_model)

    trainer = make_trainer(copy.deepcopy(model), gamma, meta_interval=1)

    auth_model = copy.deepcopy(model)
    auth_opt = sgd(auth_model)
    auth_net = mlrsnet.MLRSNet().to(device)
    auth_meta_opt = torch.optim.Adam(auth_net.parameters(), lr=1e-3)

    def run_plain():
        plain_step(plain_model, plain_opt, x, y)

    def run_ours():
        trainer.step((x, y), meta_batch=(xm, ym))

    def run_authors():
        authors_meta_step(auth_model, auth_opt, auth_net, auth_meta_opt, gamma, x, y, xm, ym)

    for fn in (run_plain, run_ours, run_authors):  # warm-up (and momentum buffers)
        fn()
    times = {"plain": [], "ours": [], "authors": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", run_plain), ("ours", run_ours), ("authors", run_authors)):
            times[name].append(time_calls(fn, 1, device))
    return {k: statistics.median(v) for k, v in times.items()}


def measure_scheduler(args, device):
    model = nn.Linear(4, 1).to(device)
    if device.type == "cuda":
        optimizer = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1, device=device))
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    net = mlrsnet.MLRSNet()
    scheduler = mlrsnet.MLRSNetLR(optimizer, net)
    loss = torch.tensor(2.3, device=device)
    authors_net = copy.deepcopy(net).to(device)
    plus_model = nn.Linear(4, 1).to(device)
    plus_optimizer = torch.optim.SGD(plus_model.parameters(), lr=0.1)
    names = pretrained_names()  # the shipped network, or one of the default size
    network = pretrained(names[0])[0] if names else PlusNet()
    plus_scheduler = MLRSNetPlusLR(plus_optimizer, network, total_steps=10**9)

    def ours():
        scheduler.step(loss)

    def plus():
        plus_scheduler.step(loss)

    def authors():
        with torch.no_grad():
            float(authors_net(loss.reshape(1))[0]) * 0.1

    for fn in (ours, authors, plus):
        time_calls(fn, 200, device)
    times = {"ours": [], "authors": [], "plus": []}
    for _ in range(5):
        for name, fn in (("ours", ours), ("authors", authors), ("plus", plus)):
            times[name].append(time_calls(fn, args.scheduler_calls, device))
    return {k: min(v) for k, v in times.items()}


def measure_whole_run(args, device):
    """Both loops end to end for ``meta_interval`` steps (slow on a CPU)."""
    base = make_model(args.model, device)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    model = copy.deepcopy(base)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    plain = time_calls(lambda: plain_step(model, optimizer, x, y), args.meta_interval, device)
    trainer = make_trainer(copy.deepcopy(base), 0.1, meta_interval=args.meta_interval)
    meta = time_calls(lambda: trainer.step((x, y), meta_batch=(x, y)), args.meta_interval, device)
    return meta / plain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["resnet18", "small"], default="resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved timings of each step kind"
    )
    parser.add_argument("--scheduler-calls", type=int, default=5000)
    parser.add_argument("--meta-interval", type=int, default=300)
    parser.add_argument("--whole-run", action="store_true", help="also time (c) end to end")
    parser.add_argument(
        "--device", action="append", help="cpu, cuda (default: cpu and cuda if present)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = {
        "command": " ".join(
            ["python", "benchmarks/overhead.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "devices": {},
    }
    for name in devices:
        device = torch.device(name)
        steps = measure_steps(args, device)
        sched = measure_scheduler(args, device)
        k = args.meta_interval
        plain_run = k * steps["plain"]
        meta_run = (k - 1) * (steps["plain"] + sched["ours"]) + steps["ours"]
        out = {
            "plain_step_s": steps["plain"],
            "meta_step_s": steps["ours"],
            "authors_meta_step_s": steps["authors"],
            "a_meta_step_ratio": steps["ours"] / steps["plain"],
            "a_authors_meta_step_ratio": steps["authors"] / steps["plain"],
            "b_scheduler_step_us": sched["ours"] * 1e6,
            "b_authors_network_call_us": sched["authors"] * 1e6,
            "b_plus_scheduler_step_us": sched["plus"] * 1e6,
            "c_whole_run_ratio": meta_run / plain_run,
        }
        if args.whole_run:
            out["c_whole_run_ratio_measured"] = measure_whole_run(args, device)
        results["devices"][name] = out
        print(
            f"[{name}] {args.model}, batch {args.batch_size}, {args.repeats} interleaved repeats (medians)"
        )
        print(f"  plain step                               {steps['plain'] * 1e3:9.1f} ms")
        print(
            f"  (a) meta step / plain step, mlrsnet      {out['a_meta_step_ratio']:9.2f}   (goal <= 2.1)"
        )
        print(f"  (a) meta step / plain step, authors'     {out['a_authors_meta_step_ratio']:9.2f}")
        print(
            f"  (b) scheduler.step(loss)                 {out['b_scheduler_step_us']:9.1f} us (goal <= 10 on CPU)"
        )
        print(
            f"  (b) authors' network call + host read    {out['b_authors_network_call_us']:9.1f} us"
        )
        print(
            f"  (b) MLR-SNet+ scheduler.step(loss)       {out['b_plus_scheduler_step_us']:9.1f} us (goal <= 10 on CPU)"
        )
        print(
            f"  (c) whole run at meta_interval={k:<4d}      {out['c_whole_run_ratio']:9.4f}   (goal <= 1.01)"
        )
        if args.whole_run:
            print(
                f"  (c) measured end to end                  {out['c_whole_run_ratio_measured']:9.4f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            f.write(jsonio.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
