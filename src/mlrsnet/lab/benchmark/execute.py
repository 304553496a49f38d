"""Run the benchmark on Ray: probes, runs and tuned runs, one JSON line per finished job.

The driver is the only writer of the records file (``records.jsonl``: one line per finished
probe or run). A job already in it is never run again; a job that was killed resumes from its
run folder's checkpoint (:func:`mlrsnet.lab.runner.run`), so a killed suite continues where it
stopped. Ray runs a local cluster by default (one worker per core asked for); ``address``
joins an existing cluster, whose nodes need this package and the data at the same paths.

Each job is a plain function of its spec (:func:`run_probe`, :func:`run_training`), usable
without Ray too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlrsnet.lab import metrics
from mlrsnet.lab.benchmark.plan import (
    FITTED_WSD,
    GRID,
    TUNED,
    ProbeSpec,
    RunSpec,
    estimated_seconds,
    fitted_wsd,
    pick,
    plan,
    split_variant,
    tuned_run,
    uses_probe,
)  # fmt: skip
from mlrsnet.lab.benchmark.tasksets import Target
from mlrsnet.lab.executor import start_ray, text_data_dir
from mlrsnet.lab.probing import probe_task

__all__ = [
    "CURVE_POINTS", "Records", "execute", "run_probe", "run_training", "tuned_factor",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: Points kept of each run's per-step learning-rate and loss curves in its record.
CURVE_POINTS = 60


class Records:
    """The records file: one JSON object per line, appended and flushed per finished job.

    Example:
        >>> import tempfile
        >>> records = Records(Path(tempfile.mkdtemp()) / "records.jsonl")
        >>> records.add({"id": "a", "kind": "run"})
        >>> Records(records.path).ids()
        {'a'}
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            for lineno, line in enumerate(self.path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    self.rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{self.path}: line {lineno} is not JSON ({err.msg}); remove it (the "
                        "job runs again) and rerun"
                    ) from None

    def ids(self) -> set[str]:
        """Ids of the finished jobs."""
        return {row["id"] for row in self.rows}

    def add(self, row: dict[str, Any]) -> None:
        """Append ``row`` (strict JSON: non-finite numbers become ``null``)."""
        line = json.dumps(_strict(row), allow_nan=False, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append(json.loads(line))


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _task(target: Target, seed: int, data_dir: str | None) -> Any:
    from mlrsnet.lab import tasks

    return tasks.get(target.task, data_dir=text_data_dir(target.task, data_dir), seed=seed,
                     train_fraction=target.train_fraction, noise=target.noise,
                     noise_rate=target.noise_rate)  # fmt: skip


def run_probe(target: Target, spec: ProbeSpec, *, data_dir: str | None = None) -> dict[str, Any]:
    """The learning-rate range test of ``target`` at ``spec.seed``, as a record.

    The probe trains the run's own model (same seed, same initialisation) with the target's
    optimizer on the first training batches, with the task's gradient clipping, and leaves
    nothing behind but its cost (``steps``, ``seconds``).
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    task = _task(target, spec.seed, data_dir)
    torch.manual_seed(spec.seed)
    model = task.build_model(seed=spec.seed)
    model.train()
    result = probe_task(task, model, target.optimizer, spec.seed,
                        augment=None if target.augment else False)  # fmt: skip
    return {
        "id": spec.probe_id, "kind": "probe", "target": spec.target, "seed": spec.seed,
        "lr": result.lr, "steps": result.steps, "stopped_early": result.stopped_early,
        "seconds": time.perf_counter() - started,
        "curve": {"lr": _sig(result.lrs), "loss": _sig(result.smoothed)},
    }  # fmt: skip


def _sig(values: Iterable[float], digits: int = 5) -> list[float | None]:
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in values]


def _downsample(steps: np.ndarray, values: np.ndarray, points: int) -> tuple[list, list]:
    if steps.size == 0:
        return [], []
    index = np.unique(np.linspace(0, steps.size - 1, min(points, steps.size)).round().astype(int))
    return [int(s) for s in steps[index]], _sig(values[index].tolist())


def _schedule(spec: RunSpec, reference: str | None) -> str:
    if spec.method == "mlrsnet:authors":
        if reference is None:
            raise ValueError("mlrsnet:authors needs the reference folder (--reference)")
        return f"mlrsnet:{Path(reference) / 'official-checkpoints'}"
    return split_variant(spec.method)[0]


def _options(target: Target, method: str) -> dict[str, Any]:
    """The baseline options of ``method`` on ``target``: its optimizer and warmup, and what a
    variant (``~progress-only``, ``~fitted``) changes."""
    from mlrsnet.lab import baselines

    schedule, variant = split_variant(method)
    accepted = baselines.default_options(schedule.split(":", 1)[0])
    options: dict[str, Any] = {}
    if "optimizer" in accepted:
        options["optimizer"] = target.optimizer
    if "warmup" in accepted and target.warmup:
        options["warmup"] = target.warmup
    if variant == "progress-only":
        options["progress_only"] = True
    elif schedule == "wsd" and variant in FITTED_WSD:
        fitted = fitted_wsd(target.optimizer, variant)
        if fitted is None:
            raise ValueError(f"{method} needs the fitted family ({FITTED_WSD[variant]})")
        options.update({k: v for k, v in fitted.items() if k != "peak"})
    elif variant not in ("", "user-lr", "probe"):
        raise ValueError(f"unknown variant {variant!r} of {method!r}")
    return options


def run_training(
    target: Target,
    spec: RunSpec,
    *,
    out: str | os.PathLike[str],
    lr: float | None = None,
    probe: dict[str, Any] | None = None,
    data_dir: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """Train ``spec`` (its run folder under ``out/runs``, resumed if there) and return its record.

    Args:
        target: The spec's target.
        spec: The run.
        out: The suite's folder.
        lr: The learning rate, overriding ``spec.lr`` (the probe tier's).
        probe: The probe record whose rate a probe-tier run uses (its cost is recorded).
        data_dir: Root of the text data.
        reference: The authors' reference folder (for ``mlrsnet:authors``).
    """
    from mlrsnet.lab.rundir import LR_FILE, read_lr
    from mlrsnet.lab.runner import RunConfig, run

    torch.set_num_threads(1)
    options = _options(target, spec.method)
    if probe is not None:
        lr = probe["lr"]
    lr = spec.lr if lr is None else lr
    variant = split_variant(spec.method)[1]
    if variant in FITTED_WSD:  # the family's peak scales its base rate (_options checked it)
        if lr is None:
            raise ValueError(f"{spec.method} needs a base rate: a probe's or the spec's lr")
        lr *= fitted_wsd(target.optimizer, variant)["peak"]  # type: ignore[index]
    folder = Path(out) / "runs" / spec.run_id
    config = RunConfig(
        task=target.task, out=str(folder), schedule=_schedule(spec, reference),
        epochs=target.epochs, lr=lr, seed=spec.seed, device="cpu",
        data_dir=text_data_dir(target.task, data_dir), train_fraction=target.train_fraction,
        noise=target.noise, noise_rate=target.noise_rate, options=options,
        validation=True, label=spec.method, augment=None if target.augment else False,
        # the convergence suite's small training sets: testing every epoch cost as much as
        # training (the final and early-stopped test metrics are the same either way)
        test_eval="end" if target.profile == "convergence" else "epoch",
        command=f"benchmarks/heldout.py --only {target.name} (run {spec.run_id})",
    )  # fmt: skip
    summary = run(config)
    steps, lrs, losses = read_lr(folder / LR_FILE)
    curve_steps, curve_lr = _downsample(steps, lrs, CURVE_POINTS)
    _, curve_loss = _downsample(steps, _ema(losses), CURVE_POINTS)
    epochs = [
        {k: row.get(k) for k in ("epoch", "step", "train_loss", "test_metric", "val_metric")}
        for row in _read_metrics(folder)
    ]
    return {
        "id": spec.run_id, "kind": "run", **asdict(spec), "lr": lr,
        "gamma": summary.get("gamma"),
        "final_test_metric": summary["final_test_metric"],
        "best_test_metric": summary["best_test_metric"],
        "final_val_metric": summary.get("final_val_metric"),
        "val_selected_test_metric": summary.get("val_selected_test_metric"),
        "final_test_loss": summary.get("final_test_loss"),
        "metric": summary["metric"], "steps": summary["steps"],
        "seconds": summary["wall_seconds"],
        "probe_steps": None if probe is None else probe["steps"],
        "probe_seconds": None if probe is None else probe["seconds"],
        "nonfinite_steps_skipped": summary.get("nonfinite_steps_skipped"),
        "curve": {"step": curve_steps, "lr": curve_lr, "loss": curve_loss, "epochs": epochs},
    }  # fmt: skip


def _ema(values: np.ndarray, beta: float = 0.9) -> np.ndarray:
    out, average = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        average = beta * average + (1 - beta) * (v if math.isfinite(v) else average)
        out[i] = average / (1 - beta ** (i + 1))
    return out


def _read_metrics(folder: Path) -> list[dict[str, Any]]:
    from mlrsnet.lab.rundir import METRICS_FILE, read_metrics

    return read_metrics(folder / METRICS_FILE)


def tuned_factor(rows: Iterable[dict[str, Any]], target: str, method: str) -> float | None:
    """The grid factor of ``method`` on ``target`` with the best final *validation* metric.

    ``None`` until every grid point has a record. Ties go to the smaller factor.

    Example:
        >>> rows = [{"kind": "run", "tier": "tuning", "target": "t", "method": "cosine",
        ...          "factor": f, "final_val_metric": v, "metric": "accuracy"}
        ...         for f, v in zip(GRID, (80.0, 85.0, 86.0, 86.0, 10.0))]
        >>> tuned_factor(rows, "t", "cosine")
        1.0
    """
    points = {
        row["factor"]: row
        for row in rows
        if row.get("kind") == "run" and row.get("tier") == "tuning"
        and row["target"] == target and row["method"] == method
    }  # fmt: skip
    if set(points) != set(GRID):
        return None
    best: float | None = None
    for factor in sorted(points):
        value = points[factor]["final_val_metric"]
        if value is None:
            continue
        if best is None or metrics.is_better(
            points[factor]["metric"], value, points[best]["final_val_metric"]
        ):
            best = factor
    return best if best is not None else min(GRID)


def execute(
    targets: tuple[Target, ...] | list[Target],
    *,
    out: str | os.PathLike[str],
    workers: int = 2,
    address: str | None = None,
    data_dir: str | None = None,
    reference: str | None = None,
    seeds: tuple[int, ...] | None = None,
    on_record: Callable[[dict[str, Any], int, int], None] | None = None,
    methods: Collection[str] | None = None,
) -> Records:
    """Run every job of ``targets`` not yet in ``out/records.jsonl`` on Ray.

    Args:
        targets: The targets.
        out: The suite's folder (``records.jsonl``, ``runs/``).
        workers: CPUs of the local Ray cluster (one job per CPU); ignored with ``address``.
        address: A Ray cluster to join (``"auto"`` or ``"HOST:PORT"``), else a local one.
        data_dir: Root of the text data.
        reference: The authors' reference folder (``mlrsnet:authors``).
        seeds: Evaluation seeds (default :data:`~mlrsnet.lab.benchmark.plan.EVAL_SEEDS`).
        on_record: Called with each new record and the counts done / total (progress).
        methods: Run only these methods' jobs (and the probes they use), never the tuned
            tier's evaluation runs; ``None``: every job.

    Returns:
        The records.

    Raises:
        ValueError: For a method no target plans.
    """
    import ray

    out = Path(out)
    records = Records(out / "records.jsonl")
    by_name = {t.name: t for t in targets}
    runs, probes = plan(targets) if seeds is None else plan(targets, seeds)
    if methods is not None:
        runs, probes = pick(runs, probes, methods)
    done = records.ids()
    eval_seeds = sorted({r.seed for r in runs if r.tier != "tuning"})
    start_ray(workers, address)
    probe_job = ray.remote(num_cpus=1, max_retries=1)(run_probe)
    run_job = ray.remote(num_cpus=1, max_retries=1)(run_training)
    common = {"data_dir": data_dir}
    pending: dict[Any, tuple[str, float]] = {}
    probe_refs: dict[str, Any] = {}
    probe_rows = {row["id"]: row for row in records.rows if row.get("kind") == "probe"}
    tuned_runs = (
        0
        if methods is not None
        else sum(len(TUNED) * len(t.check_seeds or eval_seeds) for t in targets)
    )
    total = len(runs) + len(probes) + tuned_runs  # at most: a tuned default is a defaults run

    def submit_run(spec: RunSpec, probe_ref: Any = None) -> None:
        if spec.run_id in done or any(spec.run_id == v[0] for v in pending.values()):
            return
        target = by_name[spec.target]
        ref = run_job.remote(target, spec, out=str(out), probe=probe_ref, reference=reference,
                             **common)  # fmt: skip
        pending[ref] = (spec.run_id, estimated_seconds(target, spec))

    for probe in probes:
        if probe.probe_id in probe_rows:
            probe_refs[probe.probe_id] = probe_rows[probe.probe_id]
        else:
            ref = probe_job.remote(by_name[probe.target], probe, **common)
            probe_refs[probe.probe_id] = ref
            pending[ref] = (probe.probe_id, estimated_seconds(by_name[probe.target], probe))
    # grids and probes first (others wait on them), then the long runs first
    order = sorted(runs, key=lambda r: (r.tier != "tuning", -by_name[r.target].seconds))
    for spec in order:
        ref = probe_refs[ProbeSpec(spec.target, spec.seed).probe_id] if uses_probe(spec) else None
        submit_run(spec, ref)
    submitted_tuned: set[tuple[str, str]] = set()

    def submit_tuned() -> None:
        if methods is not None:  # the tuned tier is not one of the methods picked
            return
        for target in targets:
            source = target.tuned_at or target.name
            for method in TUNED:
                if (target.name, method) in submitted_tuned:
                    continue
                factor = tuned_factor(records.rows, source, method)
                if factor is None:
                    continue
                submitted_tuned.add((target.name, method))
                for seed in target.check_seeds or eval_seeds:
                    submit_run(tuned_run(target, method, factor, seed))

    submit_tuned()
    finished = len(done)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job_id, _ = pending.pop(ready[0])
        try:
            row = ray.get(ready[0])
        except Exception as err:  # noqa: BLE001 - one failed job must not lose the others
            logger.error("%s failed: %s", job_id, err)
            continue
        records.add(row)
        done.add(row["id"])
        finished += 1
        if on_record is not None:
            on_record(row, finished, total)
        submit_tuned()
    return records
