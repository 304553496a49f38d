"""The transfer benchmark: shipped schedule networks, zero tuning, against every baseline.

For each target task, train with a shipped MLR-SNet (the paper's scale rule sets γ, no
tuning) and with every baseline on a small learning-rate grid (the default × 1/3, 1, 3);
baselines are reported at their best grid point ("tuned") and at their default
("untuned"). Targets cover the paper's axes: training length, architecture, dataset,
dataset size, label noise, data modality.

The tuning protocol: the grid runs on the tuning seed (seed 0); every other seed runs each
baseline at its default and at the grid point that was best on seed 0 (``--full-grid``
runs the grid on every seed). Seed 0's grid has to be complete before the other seeds'
tuned runs start; a process that reaches them earlier waits while another process runs
that grid, and otherwise skips them and says so.

    python benchmarks/transfer.py --plan             # list the runs and their estimated cost
    python benchmarks/transfer.py                    # the CPU suite (every axis; ~2-4 h on 2 cores)
    python benchmarks/transfer.py --suite full       # the issue's targets at full size (~325 h)
    python benchmarks/transfer.py --quick            # the CI-sized suite (~1-2 minutes)
    python benchmarks/transfer.py --only fmnist-cnn  # one chunk; rerun to resume
    python benchmarks/transfer.py --report           # BENCHMARKS-style tables from the results
    python benchmarks/transfer.py --report --markdown BENCHMARKS.md  # ... written into the page

Results are appended to ``OUT/results.jsonl`` (one record per finished run); runs live in
``OUT/runs/RUN_ID`` and resume from their checkpoints, so the suite can be stopped and
continued at any time, in chunks. Several processes started with the same command share
the plan (each takes the next run no other holds, through ``OUT/runs/RUN_ID.lock``):
``--threads 1`` in as many processes as there are cores uses a small CPU best.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mlrsnet import hub, jsonio
from mlrsnet.lab import baselines
from mlrsnet.lab import tasks as task_registry
from mlrsnet.lab.metrics import higher_is_better
from mlrsnet.lab.runner import RunConfig, run

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

GRID = (1 / 3, 1.0, 3.0)
TUNING_SEED = 0  # the grid runs on this seed; the others run the default and the best point
MARKDOWN_BEGIN = "<!-- transfer-results:begin (benchmarks/transfer.py --report --markdown) -->"
MARKDOWN_END = "<!-- transfer-results:end -->"
BASELINES = [
    "fixed", "multistep", "exponential", "cosine", "sgdr", "onecycle", "adam", "adamw",
    "hd", "rtho", "l4", "schedulefree-sgd", "schedulefree-adamw", "prodigy",
]  # fmt: skip
TEXT_BASELINES = [*BASELINES, "plateau"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One target task of the suite."""

    name: str
    axis: str
    task: str
    epochs: int
    networks: tuple[str, ...]
    goal: float  # the test metric of time-to-target (accuracy % or perplexity)
    train_fraction: float = 1.0
    noise: str | None = None
    noise_rate: float = 0.0
    batch_size: int | None = None
    self_meta: bool = False  # also meta-train a network on the target itself (noisy labels)
    self_meta_interval: int = 20  # as the shipped image network: ~276 meta updates in 12 epochs


@dataclasses.dataclass(frozen=True)
class RunSpec:
    target: Target
    method: str  # a baseline name, or mlrsnet:NAME
    lr: float | None
    grid_factor: float | None
    seed: int

    @property
    def run_id(self) -> str:
        method = self.method.replace(":", "-").replace("/", "_")
        grid = "" if self.grid_factor is None else f"-x{self.grid_factor:.3g}"
        return f"{self.target.name}--{method}{grid}--s{self.seed}"


SUITES = ("cpu", "full", "quick")


def _suite_name(suite: str | bool) -> str:
    name = {True: "quick", False: "full"}.get(suite, suite)  # type: ignore[call-overload]
    if name not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    return name


def targets(suite: str | bool = "cpu") -> list[Target]:
    """The targets of a suite (``True`` is ``"quick"``, ``False`` is ``"full"``).

    ``full`` is the issue's target list at the sizes of the shipped sources (Fashion-MNIST
    ResNet/MobileNet/ShuffleNet for 6-24 epochs, PTB and Tiny Shakespeare LSTMs for whole
    epochs): about 325 hours of this 2-core machine. ``cpu`` covers the same axes at a size
    this machine finishes in hours: the scikit-learn digits CNN at half and twice its
    length, on a quarter of its data and under 40 % uniform / 20 % pair-flip label noise
    (with a network meta-trained on the noisy task itself too), the digits MLP and the
    Fashion-MNIST MLP, and 10 % of Tiny Shakespeare for two epochs with either network.
    ``quick`` is a digits-only suite for CI, with its own quickly meta-trained network.
    """
    suite = _suite_name(suite)
    image, text = ("fmnist-resnet", "fmnist-resnet-every100"), ("ptb-lstm",)
    both = image + text
    # in both suites, with the same settings (their results serve both)
    fmnist_mlp = Target("fmnist-mlp", "architecture", "fmnist-mlp", 12, image, 85.0)
    digits_cnn = Target("digits-cnn", "dataset", "digits-cnn", 30, image, 97.0)
    digits_mlp = Target("digits-mlp", "dataset", "digits-mlp", 30, image, 95.0)
    if suite == "cpu":
        return [
            Target("digits-cnn-0.5x", "training length", "digits-cnn", 15, image, 97.0),
            Target("digits-cnn-2x", "training length", "digits-cnn", 60, image, 97.0),
            fmnist_mlp,
            digits_cnn,
            digits_mlp,
            Target("digits-cnn-25pct", "dataset size", "digits-cnn", 30, image, 90.0,
                   train_fraction=0.25),
            Target("digits-cnn-uniform40", "label noise", "digits-cnn", 30, image, 90.0,
                   noise="uniform", noise_rate=0.4, self_meta=True, self_meta_interval=2),
            Target("digits-cnn-pairflip20", "label noise", "digits-cnn", 30, image, 90.0,
                   noise="pairflip", noise_rate=0.2, self_meta=True, self_meta_interval=2),
            Target("shakespeare-lstm-10pct", "data modality", "shakespeare-lstm", 2, both, 12.0,
                   train_fraction=0.1),
        ]  # fmt: skip
    if suite == "quick":
        return [
            Target("digits-cnn", "architecture", "digits-cnn", 4, ("digits-quick",), 95.0),
            Target(
                "digits-mlp-noisy",
                "label noise",
                "digits-mlp",
                4,
                ("digits-quick",),
                80.0,
                noise="uniform",
                noise_rate=0.4,
                self_meta=True,
                self_meta_interval=2,
            ),  # fmt: skip
        ]
    return [
        Target("fmnist-resnet-0.5x", "training length", "fmnist-resnet", 6, image, 88.0),
        Target("fmnist-resnet-2x", "training length", "fmnist-resnet", 24, image, 88.0),
        Target("fmnist-mobilenetv2", "architecture", "fmnist-mobilenetv2", 12, image, 88.0),
        Target("fmnist-shufflenetv2", "architecture", "fmnist-shufflenetv2", 12, image, 88.0),
        Target("fmnist-cnn", "architecture", "fmnist-cnn", 12, image, 88.0),
        fmnist_mlp,
        digits_cnn,
        digits_mlp,
        Target("cifar10-resnet18", "dataset", "cifar10-resnet18", 30, image, 85.0),
        Target("svhn-resnet18", "dataset", "svhn-resnet18", 20, image, 90.0),
        Target(
            "fmnist-resnet-10pct",
            "dataset size",
            "fmnist-resnet",
            12,
            image,
            80.0,
            train_fraction=0.1,
        ),
        Target(
            "fmnist-resnet-uniform40",
            "label noise",
            "fmnist-resnet",
            12,
            image,
            80.0,
            noise="uniform",
            noise_rate=0.4,
            self_meta=True,
        ),  # fmt: skip
        Target(
            "fmnist-resnet-pairflip20",
            "label noise",
            "fmnist-resnet",
            12,
            image,
            80.0,
            noise="pairflip",
            noise_rate=0.2,
            self_meta=True,
        ),  # fmt: skip
        Target("ptb-lstm", "data modality", "ptb-lstm", 4, both, 200.0),
        Target("shakespeare-lstm", "data modality", "shakespeare-lstm", 2, both, 6.0),
        Target("ptb-lstm3", "data modality", "ptb-lstm3", 4, text, 220.0),
    ]


def plan(suite: str | bool, seeds: int) -> list[RunSpec]:
    """Every run of the suite, the self-meta-training runs first."""
    quick = _suite_name(suite) == "quick"
    specs: list[RunSpec] = []
    for target in targets(suite):
        text = task_registry.spec(target.task).modality == "text"
        methods = ["fixed", "cosine", "adam"] if quick else (TEXT_BASELINES if text else BASELINES)
        for seed in range(seeds):
            for network in target.networks:
                specs.append(RunSpec(target, f"mlrsnet:{network}", None, None, seed))
            if target.self_meta:
                specs.append(RunSpec(target, "mlrsnet:self", None, None, seed))
            for name in methods:
                default = baselines.default_lr(name)
                if text and name in ("fixed", "multistep", "exponential", "cosine", "sgdr", "onecycle",
                                     "hd", "rtho", "plateau"):  # fmt: skip
                    default = task_registry.spec(target.task).lr  # SGD on LSTMs: lr 20
                for factor in GRID:
                    specs.append(RunSpec(target, name, default * factor, factor, seed))
    return specs


def data_present(target: Target, data_dir: str | None) -> bool:
    return bool(task_registry.available(target.task, data_dir=data_dir))


def _data_dir(target: Target, data_dir: str | None) -> str | None:
    if data_dir:
        return data_dir
    if task_registry.spec(target.task).modality == "text" and SHARED_DATA.is_dir():
        return str(SHARED_DATA)
    return None


def quick_network(out: Path) -> Path:
    """The quick suite's own source network: a short meta-training on digits."""
    config = RunConfig(task="digits-mlp", out=str(out / "source-digits-quick"), epochs=4, meta_interval=2,
                       save_epochs=[1, 2, 4], seed=0)  # fmt: skip
    run(config, kind="meta-train")
    return Path(config.out) / "schedule.safetensors"


def self_network(spec: RunSpec, out: Path, data_dir: str | None) -> Path:
    """A network meta-trained on the noisy target itself, guided by its clean meta set."""
    t = spec.target
    source_epochs = t.epochs
    config = RunConfig(
        task=t.task, out=str(out / "self-meta" / f"{t.name}-s{spec.seed}"), epochs=source_epochs, seed=spec.seed,
        noise=t.noise, noise_rate=t.noise_rate, train_fraction=t.train_fraction, data_dir=data_dir,
        save_epochs=sorted({1, max(1, source_epochs // 2), source_epochs}),
        meta_interval=t.self_meta_interval,
    )  # fmt: skip
    run(config, kind="meta-train")
    return Path(config.out) / "schedule.safetensors"


def execute(
    spec: RunSpec, out: Path, data_dir: str | None, networks: dict[str, str]
) -> dict[str, Any]:
    t = spec.target
    data_dir = _data_dir(t, data_dir)
    schedule = spec.method
    if schedule == "mlrsnet:self":
        schedule = f"mlrsnet:{self_network(spec, out, data_dir)}"
    elif schedule.startswith("mlrsnet:"):
        schedule = f"mlrsnet:{networks.get(schedule[8:], schedule[8:])}"
    config = RunConfig(
        task=t.task, out=str(out / "runs" / spec.run_id), schedule=schedule, lr=spec.lr, epochs=t.epochs,
        seed=spec.seed, data_dir=data_dir, train_fraction=t.train_fraction, noise=t.noise,
        noise_rate=t.noise_rate, batch_size=t.batch_size, label=spec.method,
    )  # fmt: skip
    config.command = " ".join(["mlrsnet", "train", "--task", t.task, "--schedule", schedule,
                               "--epochs", str(t.epochs), "--seed", str(spec.seed), "--out", config.out]
                              + ([] if spec.lr is None else ["--lr", repr(spec.lr)]))  # fmt: skip
    summary = run(config)
    records = [
        json.loads(line) for line in (Path(config.out) / "metrics.jsonl").read_text().splitlines()
    ]
    higher = higher_is_better(summary["metric"])
    reached = next(
        (
            r
            for r in records
            if (r["test_metric"] >= t.goal if higher else r["test_metric"] <= t.goal)
        ),
        None,
    )
    return {
        "run_id": spec.run_id,
        "target": t.name,
        "axis": t.axis,
        "task": t.task,
        "method": spec.method,
        "lr": spec.lr,
        "grid_factor": spec.grid_factor,
        "seed": spec.seed,
        "metric": summary["metric"],
        "final_test_metric": summary["final_test_metric"],
        "best_test_metric": summary["best_test_metric"],
        "gamma": summary.get("gamma"),
        "goal": t.goal,
        "steps_to_goal": None if reached is None else reached["step"],
        "seconds_to_goal": None if reached is None else reached["wall_seconds"],
        "wall_seconds": summary["wall_seconds"],
        "epochs": t.epochs,
        "run_dir": str(Path(config.out).relative_to(out)),
    }


def estimate_seconds(spec: RunSpec) -> float:
    """A rough cost on 2 CPU cores, from measured epoch times of the sources."""
    per_epoch = {
        "fmnist-resnet": 80, "fmnist-mobilenetv2": 150, "fmnist-shufflenetv2": 120, "fmnist-cnn": 25,
        "fmnist-mlp": 4, "digits-cnn": 0.4, "digits-mlp": 0.05, "cifar10-resnet18": 1400, "svhn-resnet18": 2000,
        "ptb-lstm": 180, "ptb-lstm3": 260, "shakespeare-lstm": 240,
    }  # fmt: skip
    t = spec.target
    cost = per_epoch.get(t.task, 60) * t.epochs * t.train_fraction
    if spec.method == "rtho":
        cost *= 2.5
    if spec.method == "mlrsnet:self":
        cost *= 2.1
    return cost


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def tuned_factor(records: list[dict[str, Any]], target: str, method: str) -> float | None:
    """The grid factor with the best final metric on the tuning seed, or ``None``.

    ``None`` until the tuning seed has a result at every point of :data:`GRID` for this
    target and baseline (a diverged run counts, as the worst value).
    """
    mine = [
        r
        for r in records
        if r["target"] == target and r["method"] == method and r["seed"] == TUNING_SEED
    ]
    if not mine or not all(any(_same(r["grid_factor"], f) for r in mine) for f in GRID):
        return None
    higher = higher_is_better(mine[0]["metric"])
    on_grid = (r for r in mine if any(_same(r["grid_factor"], f) for f in GRID))
    return max(on_grid, key=lambda r: _signed(r["final_test_metric"], higher))["grid_factor"]


def in_protocol(spec: RunSpec, records: list[dict[str, Any]]) -> bool | None:
    """Whether the tuning protocol runs ``spec``; ``None`` while seed 0's grid is incomplete."""
    if spec.seed == TUNING_SEED or spec.grid_factor is None or _same(spec.grid_factor, 1.0):
        return True
    best = tuned_factor(records, spec.target.name, spec.method)
    return None if best is None else _same(best, spec.grid_factor)


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{target: {column: stats}}``: MLR-SNet networks, and each baseline tuned and untuned.

    A baseline's "tuned" column is its grid point with the best final metric on the tuning
    seed (the mean over seeds where no tuning-seed grid ran), reported over every seed run
    there; "untuned" is its default learning rate (grid factor 1).
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_target.setdefault(r["target"], []).append(r)
    for target, rs in by_target.items():
        higher = higher_is_better(rs[0]["metric"])
        cols: dict[str, dict[str, float]] = {}
        for method in sorted({r["method"] for r in rs}):
            mine = [r for r in rs if r["method"] == method]
            if method.startswith("mlrsnet:"):
                cols[method] = _stats(mine)
                continue
            by_factor: dict[float, list[dict[str, Any]]] = {}
            for r in mine:
                by_factor.setdefault(r["grid_factor"], []).append(r)
            best = tuned_factor(rs, target, method)
            if best is None:
                means = {f: _mean_metric(v, higher) for f, v in by_factor.items()}
                best = max(means, key=means.get)
            best = next(f for f in by_factor if _same(f, best))
            if len(by_factor) > 1:  # a grid ran: report its best point
                cols[f"{method} (tuned x{best:.3g})"] = _stats(by_factor[best])
            if 1.0 in by_factor:
                cols[f"{method} (untuned)"] = _stats(by_factor[1.0])
        table[target] = cols
    return table


def _mean_metric(records: list[dict[str, Any]], higher: bool) -> float:
    """The mean final metric, signed so that larger is better; diverged runs count as -inf."""
    signed = [_signed(r["final_test_metric"], higher) for r in records]
    return -math.inf if -math.inf in signed else statistics.fmean(signed)


def _stats(records: list[dict[str, Any]]) -> dict[str, float]:
    values = [r["final_test_metric"] for r in records if r["final_test_metric"] is not None]
    values = [v for v in values if math.isfinite(v)]
    steps = [r["steps_to_goal"] for r in records]
    seconds = [r["seconds_to_goal"] for r in records]
    return {
        "mean": statistics.fmean(values) if values else float("nan"),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "best": statistics.fmean(r["best_test_metric"] for r in records),
        "steps_to_goal": statistics.fmean(steps) if steps and None not in steps else None,
        "seconds_to_goal": statistics.fmean(seconds) if seconds and None not in seconds else None,
    }


def _column_key(name: str) -> str:
    """``"cosine (tuned x3)"`` -> ``"cosine (tuned)"``; other names unchanged."""
    return name.split(" (tuned")[0] + (" (tuned)" if "(tuned" in name else "")


def _target_order(name: str) -> int:
    order = [t.name for suite in SUITES for t in targets(suite)]
    return order.index(name) if name in order else len(order)


def complete_targets(table: dict[str, dict[str, dict[str, float]]], seeds: int = 3) -> list[str]:
    """Targets where every baseline ran tuned and untuned, and an MLR-SNet network, on ``seeds`` seeds."""
    required = {f"{b} (tuned)" for b in BASELINES} | {f"{b} (untuned)" for b in BASELINES}
    complete = []
    for target, cols in table.items():
        n = {_column_key(name): s["n"] for name, s in cols.items()}
        networks = [k for k in n if k.startswith("mlrsnet:")]
        if required <= n.keys() and networks and min(n.values()) >= seeds:
            complete.append(target)
    return complete


def report(records: list[dict[str, Any]]) -> str:
    """Markdown: a table per target (mean ± std over seeds), the aim, and mean ranks."""
    lines = []
    table = summarize(records)
    table = dict(sorted(table.items(), key=lambda kv: _target_order(kv[0])))
    complete = complete_targets(table)
    first_record = {t: next(r for r in records if r["target"] == t) for t in table}
    for target, cols in table.items():
        first = first_record[target]
        higher = higher_is_better(first["metric"])
        unit = "accuracy %" if higher else "perplexity"
        lines += [
            f"### {target} ({first['axis']}; `{first['task']}`, {first['epochs']} epochs)",
            "",
            f"| method | final test {unit} | best | steps / seconds to {first['goal']:g} | seeds |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, s in sorted(cols.items(), key=lambda kv: -_signed(kv[1]["mean"], higher)):
            ttg = (
                "not reached"
                if s["steps_to_goal"] is None
                else f"{s['steps_to_goal']:.0f} / {s['seconds_to_goal']:.1f}"
            )
            lines.append(
                f"| {name} | {_num(s['mean'])} ± {_num(s['std'])} | {_num(s['best'])} | {ttg} "
                f"| {s['n']} |"
            )
        lines.append("")
    if not complete:
        return "\n".join(lines)
    lines += [
        "### The aim, target by target (targets where every method ran on 3 seeds)",
        "",
        "| target | MLR-SNet network | MLR-SNet | best tuned baseline | gap | untuned baselines "
        "it beats | rank |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for target in complete:
        cols = table[target]
        higher = higher_is_better(first_record[target]["metric"])
        ordered = sorted(cols, key=lambda n: -_signed(cols[n]["mean"], higher))
        tuned = [n for n in ordered if "(tuned" in n]
        untuned = [n for n in ordered if n.endswith("(untuned)")]
        for network in (n for n in ordered if n.startswith("mlrsnet:")):
            mean = cols[network]["mean"]
            best = cols[tuned[0]]["mean"]
            gap = f"{best - mean:+.2f} points" if higher else f"{100 * (mean / best - 1):+.1f} %"
            beaten = sum(_signed(mean, higher) > _signed(cols[n]["mean"], higher) for n in untuned)
            lines.append(
                f"| {target} | {network[8:]} | {mean:.2f} | {tuned[0]}: {best:.2f} | {gap} | "
                f"{beaten} of {len(untuned)} | {ordered.index(network) + 1} of {len(ordered)} |"
            )
    lines.append("")
    if len(complete) < 2:
        return "\n".join(lines)  # a mean rank needs targets to average over
    common = set.intersection(*({_column_key(n) for n in table[t]} for t in complete))
    ranks: dict[str, list[int]] = {}
    for target in complete:
        cols = table[target]
        higher = higher_is_better(first_record[target]["metric"])
        shared = [n for n in cols if _column_key(n) in common]
        for place, name in enumerate(
            sorted(shared, key=lambda n: -_signed(cols[n]["mean"], higher)), start=1
        ):
            ranks.setdefault(_column_key(name), []).append(place)
    lines += [
        f"### Mean rank over the {len(complete)} complete targets (1 = best of {len(common)})",
        "",
        f"Targets: {', '.join(complete)}; the columns every one of them has.",
        "",
        "| method | mean rank | targets |",
        "|---|---:|---:|",
    ]
    for name, places in sorted(ranks.items(), key=lambda kv: statistics.fmean(kv[1])):
        lines.append(f"| {name} | {statistics.fmean(places):.2f} | {len(places)} |")
    lines.append("")
    return "\n".join(lines)


def _num(value: float) -> str:
    """Two decimals; three significant digits for the huge values of a diverged run."""
    return f"{value:.2f}" if abs(value) < 1e6 else f"{value:.3g}"


def _signed(value: float | None, higher: bool) -> float:
    """Larger is better; a missing or non-finite value (a diverged run) is worst."""
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if higher else -value


def planned_cost(
    specs: list[RunSpec], records: list[dict[str, Any]], full_grid: bool
) -> list[tuple[RunSpec, float]]:
    """``(spec, expected runs)`` for each spec the protocol may run, not yet done.

    A tuned run of a seed other than the tuning seed whose grid point is not yet known
    counts as ``1 / (len(GRID) - 1)`` of a run: one of the non-default points will run,
    unless the default wins (so the estimate is an upper bound).
    """
    done = {r["run_id"] for r in records}
    weighted = []
    for spec in specs:
        if spec.run_id in done:
            continue
        decision = True if full_grid else in_protocol(spec, records)
        if decision is None:
            weighted.append((spec, 1 / (len(GRID) - 1)))
        elif decision:
            weighted.append((spec, 1.0))
    return weighted


def print_plan(
    specs: list[RunSpec], records: list[dict[str, Any]], full_grid: bool, data_dir: str | None
) -> None:
    """A table of the remaining runs and their estimated cost, per target."""
    rows: dict[str, list[float]] = {}
    absent: set[str] = set()
    for spec, weight in planned_cost(specs, records, full_grid):
        if not data_present(spec.target, _data_dir(spec.target, data_dir)):
            absent.add(spec.target.name)
            continue
        row = rows.setdefault(spec.target.name, [0.0, 0.0])
        row[0] += weight
        row[1] += weight * estimate_seconds(spec)
    print("| target | runs to do | estimated hours (2 cores) |")
    print("|---|---:|---:|")
    for name, (runs, seconds) in rows.items():
        print(f"| {name} | {runs:.0f} | {seconds / 3600:.1f} |")
    total_runs = sum(r[0] for r in rows.values())
    total = sum(r[1] for r in rows.values())
    protocol = "the grid on every seed" if full_grid else f"the grid on seed {TUNING_SEED}"
    planned = {s.run_id for s in specs}
    finished = [r for r in records if r["run_id"] in planned]
    print(
        f"\n{total_runs:.0f} runs, about {total / 3600:.1f} h on 2 CPU cores ({protocol}); "
        f"{len(finished)} done, {sum(r['wall_seconds'] for r in finished) / 3600:.1f} h of run "
        "time summed"
    )
    if absent:
        print("skipped (data not present):", ", ".join(sorted(absent)))


PLOTTED = ("fixed", "multistep", "cosine", "onecycle", "adam", "schedulefree-sgd", "prodigy")


def plots(records: list[dict[str, Any]], out: Path, folder: Path, names: list[str]) -> list[Path]:
    """Learning rate, training loss and test metric per target, side by side.

    Every MLR-SNet network and a few baselines at their defaults (:data:`PLOTTED`), the
    mean over seeds with a min-max band; ``{target}_lr.png`` and so on in ``folder``.
    """
    from mlrsnet.lab import report as run_report

    written: list[Path] = []
    for name in names:
        chosen = [
            r for r in records
            if r["target"] == name
            and (r["method"].startswith("mlrsnet:") or (r["method"] in PLOTTED and _same(r["grid_factor"], 1.0)))
        ]  # fmt: skip
        if not chosen:
            raise SystemExit(f"--plots: no results for target {name!r}")
        runs = [run_report.load_run(out / r["run_dir"]) for r in chosen]
        for run_ in runs:
            run_.summary["task"] = name  # one figure per target, not per task
        written += run_report.plot_runs(runs, folder)
    return written


def write_markdown(path: Path, tables: str) -> None:
    """Replace the text between the page's result markers with ``tables`` (headings one down)."""
    page = path.read_text()
    if MARKDOWN_BEGIN not in page or MARKDOWN_END not in page:
        raise SystemExit(f"{path} has no result markers; add {MARKDOWN_BEGIN} and {MARKDOWN_END}")
    head, rest = page.split(MARKDOWN_BEGIN, 1)
    tail = rest.split(MARKDOWN_END, 1)[1]
    body = "\n".join("#" + line if line.startswith("###") else line for line in tables.splitlines())
    path.write_text(f"{head}{MARKDOWN_BEGIN}\n\n{body.strip()}\n\n{MARKDOWN_END}{tail}")


_READ_CACHE: dict[Path, tuple[int, dict[str, dict[str, Any]]]] = {}


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """``{run_id: record}`` from a results file (empty if there is none).

    The file only grows (records are appended), so it is parsed again only when its size
    changed.
    """
    if not path.is_file():
        return {}
    size = path.stat().st_size
    cached = _READ_CACHE.get(path)
    if cached is None or cached[0] != size:
        records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        _READ_CACHE[path] = cached = (size, {r["run_id"]: r for r in records})
    return dict(cached[1])


def claim(out: Path, run_id: str) -> bool:
    """Take the run for this process (a lock file holding our pid); ``False`` if another has it.

    Several processes started with the same command share the plan this way, each taking
    the next run nobody holds; a lock whose process is gone is taken over.
    """
    lock = out / "runs" / f"{run_id}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _held(lock):
            return False
        lock.unlink(missing_ok=True)  # its process died: take it over
        return claim(out, run_id)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def release(out: Path, run_id: str) -> None:
    (out / "runs" / f"{run_id}.lock").unlink(missing_ok=True)


def _held(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (one being written right now counts)."""
    try:
        pid = int(lock.read_text() or "0")
    except ValueError:
        return True  # its pid is being written right now
    except OSError:
        return False  # released meanwhile
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results/transfer", help="results folder")
    parser.add_argument(
        "--suite", choices=SUITES, default="cpu", help="which targets (default: cpu)"
    )
    parser.add_argument("--quick", action="store_true", help="the CI-sized suite (--suite quick)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per cell (default 3; quick 1)"
    )
    parser.add_argument("--only", nargs="*", help="run only these targets")
    parser.add_argument("--methods", nargs="*", help="run only these methods")
    parser.add_argument("--only-seeds", nargs="*", type=int, help="run only these seeds (a chunk)")
    parser.add_argument(
        "--grid", nargs="*", type=float, help="run only these grid factors (1 = the default lr)"
    )
    parser.add_argument("--max-runs", type=int, help="stop after this many new runs (a chunk)")
    parser.add_argument(
        "--full-grid", action="store_true", help="run the grid on every seed, not only seed 0"
    )
    parser.add_argument(
        "--markdown", help="with --report: write the tables into this page between its markers"
    )
    parser.add_argument("--plots", help="with --report: write learning-rate figures here")
    parser.add_argument("--plot-targets", nargs="*", default=[], help="targets to plot")
    parser.add_argument("--data-dir", help="data root for CIFAR/SVHN/PTB/Shakespeare")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: 1 for --quick, else torch's)"
    )
    parser.add_argument(
        "--plan", action="store_true", help="print the runs and their estimated cost"
    )
    parser.add_argument(
        "--report", action="store_true", help="print the tables of the results so far"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.suite = "quick"
    seeds = args.seeds or (1 if args.quick else 3)
    out = Path(args.out)
    results_path = out / "results.jsonl"
    done = read_results(results_path)
    if args.report:
        text = report(list(done.values()))
        if args.markdown:
            write_markdown(Path(args.markdown), text)
        else:
            print(text)
        if args.plots:
            for png in plots(list(done.values()), out, Path(args.plots), args.plot_targets):
                print(png)
        return 0
    specs = [
        s for s in plan(args.suite, seeds)
        if (not args.only or s.target.name in args.only)
        and (not args.methods or s.method in args.methods)
        and (not args.only_seeds or s.seed in args.only_seeds)
        and (not args.grid or s.grid_factor is None or any(_same(s.grid_factor, g) for g in args.grid))
    ]  # fmt: skip
    if args.plan:
        print_plan(specs, list(done.values()), args.full_grid, args.data_dir)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or (1 if args.quick else torch.get_num_threads()))
    networks: dict[str, str] = {}
    if args.quick:
        networks["digits-quick"] = str(quick_network(out))
    new = 0
    while True:
        waiting = 0
        for spec in specs:
            done = read_results(results_path)  # other processes may have added some
            if spec.run_id in done:
                continue
            if not args.full_grid:
                decision = in_protocol(spec, list(done.values()))
                if decision is None:
                    waiting += 1
                    continue
                if not decision:
                    continue
            data_dir = _data_dir(spec.target, args.data_dir)
            if not data_present(spec.target, data_dir):
                print(
                    f"skip {spec.run_id}: data for {spec.target.task} not present", file=sys.stderr
                )
                continue
            if args.max_runs is not None and new >= args.max_runs:
                break
            if not claim(out, spec.run_id):
                continue  # another process is running it
            if spec.run_id in read_results(results_path):
                release(out, spec.run_id)  # another process finished it since we looked
                continue
            try:
                for network in spec.target.networks:
                    if network not in networks and network in hub.pretrained_names():
                        networks[network] = network
                start = time.perf_counter()
                record = execute(spec, out, data_dir, networks)
                with open(results_path, "a") as f:
                    f.write(jsonio.dumps(record) + "\n")
            finally:
                release(out, spec.run_id)
            new += 1
            print(
                f"{spec.run_id}: {record['final_test_metric']:.2f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        if not waiting or (args.max_runs is not None and new >= args.max_runs):
            break
        if not any(_held(lock) for lock in (out / "runs").glob("*.lock")):
            print(
                f"{waiting} tuned runs of seeds other than {TUNING_SEED} wait for seed "
                f"{TUNING_SEED}'s grid; run that chunk first",
                file=sys.stderr,
            )
            break
        time.sleep(10)  # seed 0's grid is running in another process: wait for it
    done = read_results(results_path)
    print(report(list(done.values())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
