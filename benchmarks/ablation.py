"""Ablations: what closes the shipped network's gap on the transfer targets?

Each variant runs MLR-SNet on the transfer targets where every method ran (digits-cnn,
digits-mlp, fmnist-mlp; 3 seeds, the same settings as ``transfer.py``) and is compared
with the shipped network and the best tuned baseline there:

``gamma-fixed``
    the shipped ``fmnist-resnet`` network with ``γ`` held at 0.67 — the paper's rule on
    the untrained model's loss — instead of recomputed at each snapshot switch;
``interval-100``
    a network meta-trained exactly as the shipped one but with a meta update every 100
    steps instead of 20 (55 updates instead of 276): does chasing the one-step lookahead
    less often slow the short-horizon decay?
``authors``
    the authors' released CIFAR-10 / ResNet-18 networks (their epochs 1, 100, 200 of
    200), read from ``../shared/reference/official-checkpoints`` — a 200-epoch
    meta-training under the same scale rule;
``self-meta``
    a network meta-trained on the target task itself, for the target's length, with as
    many meta updates as the shipped one (about 276), then used on that task: no transfer.

    python benchmarks/ablation.py                      # every variant (about 1 h on 2 cores)
    python benchmarks/ablation.py --only authors self-meta  # some
    python benchmarks/ablation.py --report             # the table

Results are appended to ``OUT/results.jsonl`` (the records of ``transfer.py``, with the
variant); meta-trained sources live in ``OUT/sources``; everything resumes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transfer  # noqa: E402  (the sibling script: targets, execute, summaries)

from mlrsnet import hub, jsonio  # noqa: E402
from mlrsnet.lab.runner import RunConfig, run  # noqa: E402
from mlrsnet.net import MLRSNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = ROOT.parent / "shared" / "reference" / "official-checkpoints"
TARGETS = ("digits-cnn", "digits-mlp", "fmnist-mlp")
SHIPPED_UPDATES = 276  # meta updates of the shipped fmnist-resnet network (its manifest)
VARIANTS = ("gamma-fixed", "interval-100", "authors", "self-meta")


def source_interval_100(out: Path) -> str:
    """The shipped network's meta-training, with a meta update every 100 steps."""
    config = RunConfig(task="fmnist-resnet", out=str(out / "sources" / "interval-100"), epochs=12,
                       save_epochs=[1, 6, 12], meta_interval=100, seed=0)  # fmt: skip
    return _meta_train(config)


def _meta_train(config: RunConfig) -> str:
    """Meta-train ``config`` unless its schedule is there already; the schedule's path."""
    path = Path(config.out) / "schedule.safetensors"
    if not path.is_file():
        run(config, kind="meta-train")
    return str(path)


def source_authors(out: Path) -> str:
    """The authors' three released networks as one schedule (switched in at 0, 1/3, 2/3)."""
    path = out / "sources" / "authors" / "schedule.safetensors"
    if not path.is_file():
        names = ("mlr_snet_1", "mlr_snet_100", "mlr_snet_200")
        missing = [n for n in names if not (AUTHORS / f"{n}.pth").is_file()]
        if missing:
            raise SystemExit(f"the authors' checkpoints {missing} are not in {AUTHORS}")
        nets = {n: MLRSNet.from_original(AUTHORS / f"{n}.pth") for n in names}
        manifest = {"name": "authors", "source_task": "CIFAR-10, ResNet-18 (the authors')",
                    "epochs": 200, "snapshots": list(names)}  # fmt: skip
        hub.save_schedule(path, nets, manifest)
    return str(path)


def source_self(target: transfer.Target, seed: int, out: Path) -> str:
    """A network meta-trained on ``target`` itself, with about as many meta updates as ours."""
    from mlrsnet.lab import tasks

    task = tasks.get(target.task, seed=seed)
    steps = math.ceil(len(task.train_indices) / task.batch_size) * target.epochs
    config = RunConfig(task=target.task, out=str(out / "sources" / f"self-{target.name}-s{seed}"),
                       epochs=target.epochs, seed=seed,
                       meta_interval=max(1, round(steps / SHIPPED_UPDATES)),
                       save_epochs=sorted({1, max(1, target.epochs // 2), target.epochs}))  # fmt: skip
    return _meta_train(config)


def spec_for(variant: str, target: transfer.Target, seed: int) -> transfer.RunSpec:
    lr = 0.67 if variant == "gamma-fixed" else None
    return transfer.RunSpec(target, f"mlrsnet:{variant}", lr, None, seed)


def report(records: list[dict[str, Any]], baseline_records: list[dict[str, Any]]) -> str:
    """One row per target: the shipped network, each variant and the best tuned baseline."""
    table = transfer.summarize(baseline_records)
    lines = [
        "| target | fmnist-resnet (shipped, every 20) | "
        + " | ".join(VARIANTS)
        + " | best tuned baseline |",
        "|---|---:|" + "---:|" * len(VARIANTS) + "---|",
    ]
    for name in TARGETS:
        cols = table.get(name, {})
        shipped = cols.get("mlrsnet:fmnist-resnet")
        tuned = [(k, s) for k, s in cols.items() if "(tuned" in k]
        best = max(tuned, key=lambda kv: kv[1]["mean"]) if tuned else None
        cells = [_cell(shipped)]
        for variant in VARIANTS:
            mine = [
                r for r in records if r["target"] == name and r["method"] == f"mlrsnet:{variant}"
            ]
            cells.append(_cell(transfer._stats(mine)) if mine else "–")
        cells.append(f"{_cell(best[1])} ({best[0]})" if best else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(stats: dict[str, float] | None) -> str:
    if not stats:
        return "–"
    return f"{stats['mean']:.2f} ± {stats['std']:.2f} ({stats['n']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results/ablation", help="results folder")
    parser.add_argument("--transfer", default="benchmarks/results/transfer",
                        help="transfer results to compare with")  # fmt: skip
    parser.add_argument("--only", nargs="*", choices=VARIANTS, help="run only these variants")
    parser.add_argument("--targets", nargs="*", choices=TARGETS, help="run only these targets")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--report", action="store_true", help="print the table so far")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results_path = out / "results.jsonl"
    done = transfer.read_results(results_path)
    baselines = list(transfer.read_results(Path(args.transfer) / "results.jsonl").values())
    if args.report:
        print(report(list(done.values()), baselines))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    by_name = {t.name: t for t in transfer.targets("cpu")}
    for variant in args.only or VARIANTS:
        for name in args.targets or TARGETS:
            target = by_name[name]
            for seed in range(args.seeds):
                spec = spec_for(variant, target, seed)
                if spec.run_id in done:
                    continue
                start = time.perf_counter()
                if variant == "interval-100":
                    network = source_interval_100(out)
                elif variant == "authors":
                    network = source_authors(out)
                elif variant == "self-meta":
                    network = source_self(target, seed, out)
                else:
                    network = "fmnist-resnet"
                record = transfer.execute(spec, out, None, {variant: network})
                record["variant"] = variant
                with open(results_path, "a") as f:
                    f.write(jsonio.dumps(record) + "\n")
                done[spec.run_id] = record
                print(f"{spec.run_id}: {record['final_test_metric']:.2f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    print(report(list(done.values()), baselines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
