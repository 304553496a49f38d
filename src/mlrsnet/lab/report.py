"""Compare finished runs: load run directories, tabulate, plot and write a report.

A *run directory* is what ``mlrsnet train`` / ``mlrsnet meta-train`` write; its format
(``summary.json``, ``metrics.jsonl``, ``lr.csv``) is owned by :mod:`mlrsnet.lab.rundir`,
whose readers this module uses, and which metric is better in which direction by
:mod:`mlrsnet.lab.metrics`.

This module is what ``mlrsnet compare DIR...`` and ``mlrsnet demo`` call::

    runs = find_runs(["runs/"])
    rows = summarize(runs)
    md_path, csv_path = write_table(rows, "out/")
    pngs = plot_runs(runs, "out/")
    report = write_report(runs, "out/", title="Fashion-MNIST", machine="1 CPU core")

Every number in the tables, figures and report comes from the run files. Nothing
is printed (progress goes to :mod:`logging`) and nothing is written outside the
given output folder.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlrsnet.lab.metrics import higher_is_better
from mlrsnet.lab.rundir import (
    LR_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    read_lr,
    read_metrics,
    read_summary,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Run",
    "find_runs",
    "load_run",
    "plot_runs",
    "summarize",
    "write_report",
    "write_table",
    "CSV_COLUMNS",
    "RESULT_SETTINGS",
]

#: Columns of ``comparison.csv``, in order (also the keys of :func:`summarize` rows).
CSV_COLUMNS = (
    "task",
    "label",
    "schedule",
    "metric",
    "higher_is_better",
    "n_seeds",
    "seeds",
    "n_incomplete",
    "final_test_metric_mean",
    "final_test_metric_std",
    "best_test_metric_mean",
    "best_test_metric_std",
    "final_test_loss_mean",
    "wall_seconds_mean",
    "rank",
)


# ----------------------------------------------------------------------------- loading


def _as_float(value: Any) -> float:
    """A JSON number as float; ``None`` (missing/diverged) as NaN."""
    return math.nan if value is None else float(value)


@dataclass(eq=False)
class Run:
    """One loaded run directory.

    Attributes:
        path: The run directory.
        summary: The parsed ``summary.json``.
        metrics: The parsed ``metrics.jsonl``, one dict per epoch, in file order.
        lr_steps: ``lr.csv`` step column (int64, 1-based optimizer steps).
        lr: ``lr.csv`` learning-rate column (float64).
        loss: ``lr.csv`` per-step training-loss column (float64; NaN where empty).

    Example:
        >>> run = load_run("runs/fmnist-cosine-s0")  # doctest: +SKIP
        >>> run.task, run.label, run.final_test_metric, run.incomplete  # doctest: +SKIP
        ('fmnist-resnet', 'cosine', 91.3, False)
    """

    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    lr_steps: np.ndarray
    lr: np.ndarray
    loss: np.ndarray

    @property
    def task(self) -> str:
        """The task name from the summary."""
        return str(self.summary["task"])

    @property
    def schedule(self) -> str:
        """The schedule name (falls back to the label)."""
        return str(self.summary.get("schedule") or self.summary.get("label"))

    @property
    def label(self) -> str:
        """The display name: ``label`` if present, else ``schedule``."""
        return str(self.summary.get("label") or self.summary.get("schedule"))

    @property
    def seed(self) -> int | None:
        """The seed, or ``None`` if the summary has none."""
        seed = self.summary.get("seed")
        return None if seed is None else int(seed)

    @property
    def metric(self) -> str:
        """``"accuracy"`` or ``"perplexity"``."""
        return str(self.summary["metric"])

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger test metric is better (accuracy) or worse (perplexity)."""
        return higher_is_better(self.metric)

    @property
    def completed(self) -> bool:
        """``summary["completed"]``; a summary without the key counts as completed."""
        return bool(self.summary.get("completed", True))

    @property
    def incomplete(self) -> bool:
        """True for a run whose summary says ``completed: false`` (flagged in reports)."""
        return not self.completed

    @property
    def command(self) -> str | None:
        """The command line that produced the run, if recorded."""
        command = self.summary.get("command")
        return str(command) if command else None

    def _epoch_values(self, key: str) -> np.ndarray:
        return np.array([_as_float(m.get(key)) for m in self.metrics], dtype=np.float64)

    @property
    def epochs(self) -> np.ndarray:
        """Epoch numbers of ``metrics.jsonl`` (int64)."""
        return np.array([int(m["epoch"]) for m in self.metrics], dtype=np.int64)

    def epoch_values(self, key: str) -> np.ndarray:
        """One ``metrics.jsonl`` column as float64 (NaN where missing or null).

        Args:
            key: A metrics key such as ``"train_loss"`` or ``"test_metric"``.

        Returns:
            An array with one value per epoch line.
        """
        return self._epoch_values(key)

    def _summary_or_last(self, key: str, metrics_key: str) -> float:
        value = self.summary.get(key)
        if value is not None:
            return float(value)
        if self.metrics:
            return _as_float(self.metrics[-1].get(metrics_key))
        return math.nan

    @property
    def final_test_metric(self) -> float:
        """Summary ``final_test_metric``; if null/absent, the last epoch's ``test_metric``."""
        return self._summary_or_last("final_test_metric", "test_metric")

    @property
    def best_test_metric(self) -> float:
        """Summary ``best_test_metric``; if null/absent, the best epoch's ``test_metric``; NaN
        for a run that tested once, at the end (``test_eval="end"``: no pick on the test set
        was made, and its one test epoch is not a best)."""
        value = self.summary.get("best_test_metric")
        if value is not None:
            return float(value)
        if self.summary.get("test_eval") == "end":
            return math.nan
        values = self._epoch_values("test_metric")
        values = values[~np.isnan(values)]
        if values.size == 0:
            return math.nan
        return float(values.max() if self.higher_is_better else values.min())

    @property
    def final_test_loss(self) -> float:
        """Summary ``final_test_loss``; if null/absent, the last epoch's ``test_loss``."""
        return self._summary_or_last("final_test_loss", "test_loss")

    @property
    def wall_seconds(self) -> float:
        """Summary ``wall_seconds``; if null/absent, the last epoch's ``wall_seconds``; plus
        the probe's ``probe_seconds`` where the run's rate came from ``--lr probe`` (the
        probe's cost counts in every reported figure)."""
        probe = self.summary.get("probe_seconds")
        own = self._summary_or_last("wall_seconds", "wall_seconds")
        return own + float(probe) if isinstance(probe, (int, float)) else own


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load one run directory.

    ``summary.json`` is required; a missing ``metrics.jsonl`` or ``lr.csv`` is
    logged and read as empty. Runs with ``completed: false`` are loaded and
    flagged (:attr:`Run.incomplete`).

    Args:
        path: The run directory.

    Returns:
        The loaded :class:`Run`.

    Raises:
        FileNotFoundError: If ``path`` is not a directory or has no ``summary.json``
            (the message names the missing file).
        ValueError: If a file is malformed; the message names the file and, for
            ``metrics.jsonl`` / ``lr.csv``, the line number.

    Example:
        >>> run = load_run("runs/fmnist-cosine-s0")  # doctest: +SKIP
        >>> run.metric, len(run.metrics), run.lr.shape  # doctest: +SKIP
        ('accuracy', 30, (14070,))
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: run directory does not exist")
    summary = read_summary(path / SUMMARY_FILE)
    metrics = read_metrics(path / METRICS_FILE)
    lr_steps, lr, loss = read_lr(path / LR_FILE)
    run = Run(path, summary, metrics, lr_steps, lr, loss)
    if run.incomplete:
        logger.warning("%s: run is incomplete (completed=false); flagged in reports", path)
    return run


def find_runs(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Load every run under the given paths.

    Each path may be a run directory (it holds ``summary.json``) or a folder that
    holds run directories at any depth. Runs are returned in path order, each
    path's runs sorted by directory; a run reached twice is loaded once.

    Args:
        paths: One path or several.

    Returns:
        The loaded runs.

    Raises:
        FileNotFoundError: If a path does not exist or holds no ``summary.json``.
        ValueError: If a run's files are malformed (see :func:`load_run`).

    Example:
        >>> runs = find_runs(["runs/fmnist", "runs/ptb/cosine-s0"])  # doctest: +SKIP
        >>> sorted({run.task for run in runs})  # doctest: +SKIP
        ['fmnist-resnet', 'ptb-lstm']
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    runs: list[Run] = []
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or directory")
        if root.is_file() and root.name == SUMMARY_FILE:
            root = root.parent
        if (root / SUMMARY_FILE).is_file():
            run_dirs = [root]
        else:
            run_dirs = sorted(p.parent for p in root.rglob(SUMMARY_FILE) if p.is_file())
        if not run_dirs:
            raise FileNotFoundError(f"{root}: no {SUMMARY_FILE} found (not a run directory)")
        for run_dir in run_dirs:
            key = run_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            runs.append(load_run(run_dir))
    logger.info("found %d run(s)", len(runs))
    return runs


# ----------------------------------------------------------------------------- summary


def _ranks(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """Ranks with best = 1; ties share the mean of their positions; NaN ranks last."""
    keyed = [(-v if higher_is_better else v) if not math.isnan(v) else math.inf for v in values]
    nan = [math.isnan(v) for v in values]
    order = sorted(range(len(values)), key=lambda i: (nan[i], keyed[i]))
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        first = order[start]
        while end + 1 < len(order) and (
            (nan[order[end + 1]] and nan[first])
            or (not nan[first] and keyed[order[end + 1]] == keyed[first])
        ):
            end += 1
        for pos in range(start, end + 1):
            ranks[order[pos]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return mean, std


#: Summary settings that change a run's result. Runs of one task and label that differ in any
#: of them are not averaged together: each setting gets its own group, labelled with what
#: differs, e.g. ``cosine (epochs=10)`` and ``cosine (epochs=40)``.
RESULT_SETTINGS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "train_fraction",
    "noise",
    "noise_rate",
)

_MISSING = object()


def _setting(run: Run, key: str) -> Any:
    return run.summary.get(key, _MISSING)


def _setting_key(value: Any) -> tuple[Any, ...]:
    """A hashable key under which equal settings (``10`` and ``10.0``) coincide."""
    if value is _MISSING:
        return ("missing",)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("number", float(value))
    return ("json", json.dumps(value, sort_keys=True, default=str))


def _setting_text(key: str, value: Any) -> str:
    if value is _MISSING:
        shown = "?"
    elif value is None:
        shown = "none" if key == "noise" else "default"
    elif isinstance(value, float):
        shown = f"{value:g}" if float(f"{value:g}") == value else repr(value)
    else:
        shown = str(value)
    return f"{key}={shown}"


def _method_labels(runs: Iterable[Run]) -> dict[Run, str]:
    """The label each run is reported under: its :attr:`Run.label`, followed by the settings of
    :data:`RESULT_SETTINGS` that differ among the runs of its task and label, e.g.
    ``cosine (epochs=10)``; a setting a summary lacks shows as ``?``."""
    by_method: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_method.setdefault((run.task, run.label), []).append(run)
    labels: dict[Run, str] = {}
    for (_, label), members in by_method.items():
        differing = [
            key
            for key in RESULT_SETTINGS
            if len({_setting_key(_setting(run, key)) for run in members}) > 1
        ]
        for run in members:
            details = ", ".join(_setting_text(key, _setting(run, key)) for key in differing)
            labels[run] = f"{label} ({details})" if details else label
    return labels


def _group(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs by task and label, split where a result-changing setting differs (see
    :func:`_method_labels`): keys ``(task, label as reported)``."""
    runs = list(runs)
    labels = _method_labels(runs)
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.task, labels[run]), []).append(run)
    return groups


def summarize(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """Aggregate runs per (task, label) over seeds and rank the methods of each task.

    Runs of one label that differ in a setting that changes the result (one of
    :data:`RESULT_SETTINGS`: epochs, batch size, lr, momentum, weight decay, train fraction,
    label noise and its rate) are not averaged together: they form separate groups whose
    label names what differs, e.g. ``cosine (epochs=10)`` and ``cosine (epochs=40)``.

    Each row has the keys :data:`CSV_COLUMNS`: ``task``, ``label``, ``schedule``
    (the group's schedules, ``"; "``-joined if they differ), ``metric``,
    ``higher_is_better``, ``n_seeds`` (number of runs), ``seeds`` (list),
    ``n_incomplete``, the mean and sample standard deviation (``ddof=1``; 0 for a
    single seed) of the final and best test metric, the mean final test loss,
    the mean wall seconds, and ``rank``: the method's place within its task by
    mean final test metric (1 = best; higher accuracy / lower perplexity is
    better; tied methods share the mean of their places; NaN means rank last).

    Args:
        runs: Loaded runs.

    Returns:
        One dict per group, sorted by task, then rank, then label.

    Raises:
        ValueError: If one task mixes metrics (e.g. accuracy and perplexity).

    Example:
        >>> rows = summarize(find_runs(["runs/"]))  # doctest: +SKIP
        >>> [(r["label"], r["n_seeds"], r["rank"]) for r in rows]  # doctest: +SKIP
        [('mlrsnet', 3, 1.0), ('cosine', 3, 2.0), ('step', 3, 3.0)]
    """
    groups = _group(runs)
    rows: list[dict[str, Any]] = []
    for (task, label), members in groups.items():
        metrics = {run.metric for run in members}
        if len(metrics) > 1:
            raise ValueError(f"task {task!r}, method {label!r}: mixed metrics {sorted(metrics)}")
        metric = metrics.pop()
        final_mean, final_std = _mean_std([run.final_test_metric for run in members])
        best_mean, best_std = _mean_std([run.best_test_metric for run in members])
        seeds = [run.seed for run in members]
        if len(set(seeds)) < len(seeds):
            logger.warning("task %r, method %r: repeated seeds %s", task, label, seeds)
        schedules = list(dict.fromkeys(run.schedule for run in members))
        rows.append(
            {
                "task": task,
                "label": label,
                "schedule": "; ".join(schedules),
                "metric": metric,
                "higher_is_better": higher_is_better(metric),
                "n_seeds": len(members),
                "seeds": seeds,
                "n_incomplete": sum(run.incomplete for run in members),
                "final_test_metric_mean": final_mean,
                "final_test_metric_std": final_std,
                "best_test_metric_mean": best_mean,
                "best_test_metric_std": best_std,
                "final_test_loss_mean": float(np.mean([run.final_test_loss for run in members])),
                "wall_seconds_mean": float(np.mean([run.wall_seconds for run in members])),
                "rank": math.nan,
            }
        )
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    for task, task_rows in by_task.items():
        metrics = {row["metric"] for row in task_rows}
        if len(metrics) > 1:
            raise ValueError(f"task {task!r}: mixed metrics {sorted(metrics)}")
        higher = task_rows[0]["higher_is_better"]
        ranks = _ranks([row["final_test_metric_mean"] for row in task_rows], higher)
        for row, rank in zip(task_rows, ranks, strict=True):
            row["rank"] = rank
    rows.sort(key=lambda r: (r["task"], r["rank"], r["label"]))
    return rows


# ----------------------------------------------------------------------------- tables


def _fmt(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _fmt_pm(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):  # e.g. no best test metric: runs tested only at the end
        return "n/a"
    return f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def _fmt_rank(rank: float) -> str:
    return "n/a" if math.isnan(rank) else f"{rank:g}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _metric_title(metric: str) -> str:
    return "accuracy (%)" if metric == "accuracy" else metric


def _task_tables(rows: Sequence[dict[str, Any]], heading: str = "##") -> list[str]:
    """Markdown lines: one heading and table per task."""
    lines: list[str] = []
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    for task in tasks:
        task_rows = [row for row in rows if row["task"] == task]
        metric = task_rows[0]["metric"]
        direction = "higher is better" if task_rows[0]["higher_is_better"] else "lower is better"
        lines += [f"{heading} {_md_cell(task)}", "", f"Test {metric} ({direction}).", ""]
        lines += [
            f"| Method | Seeds | Final {_metric_title(metric)} | Best {_metric_title(metric)} "
            "| Final test loss | Wall (s) | Rank |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        any_incomplete = False
        for row in task_rows:
            label = _md_cell(row["label"])
            if row["n_incomplete"]:
                any_incomplete = True
                label += f" (incomplete: {row['n_incomplete']}/{row['n_seeds']})"
            lines.append(
                f"| {label} | {row['n_seeds']} "
                f"| {_fmt_pm(row['final_test_metric_mean'], row['final_test_metric_std'])} "
                f"| {_fmt_pm(row['best_test_metric_mean'], row['best_test_metric_std'])} "
                f"| {_fmt(row['final_test_loss_mean'], 4)} "
                f"| {_fmt(row['wall_seconds_mean'], 1)} "
                f"| {_fmt_rank(row['rank'])} |"
            )
        lines.append("")
        if any_incomplete:
            lines += ["Incomplete runs (completed = false) are included in the means.", ""]
    return lines


def write_table(
    rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Write ``comparison.md`` and ``comparison.csv`` from :func:`summarize` rows.

    The markdown has one table per task (method, seeds, final and best metric as
    mean ± std, final test loss, wall seconds, rank); the CSV has one row per
    group with the columns :data:`CSV_COLUMNS`, every number in full precision
    (``seeds`` is ``;``-joined, ``higher_is_better`` is ``true``/``false``).

    Args:
        rows: Rows from :func:`summarize`.
        out_dir: Output folder (created if needed).

    Returns:
        ``(md_path, csv_path)``.

    Example:
        >>> md, csv_path = write_table(summarize(runs), "out/")  # doctest: +SKIP
        >>> md.name, csv_path.name  # doctest: +SKIP
        ('comparison.md', 'comparison.csv')
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path = out / "comparison.md"
    csv_path = out / "comparison.csv"
    lines = ["# Comparison", ""] + _task_tables(rows)
    md_path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            cells = []
            for key in CSV_COLUMNS:
                value = row[key]
                if key == "seeds":
                    value = ";".join("" if s is None else str(s) for s in value)
                elif isinstance(value, bool):
                    value = "true" if value else "false"
                elif isinstance(value, float):
                    value = repr(value)
                cells.append(value)
            writer.writerow(cells)
    logger.info("wrote %s and %s", md_path, csv_path)
    return md_path, csv_path


# ----------------------------------------------------------------------------- plots


#: Figure kind (file-name suffix) -> caption.
_FIGURE_TITLES = {
    "lr": "learning rate per step",
    "train_loss": "training loss per epoch",
    "test_metric": "test metric per epoch",
}


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return safe or "task"


def _aggregate(
    series: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds on the union of their x values (NaN-aware)."""
    xs = np.unique(np.concatenate([x for x, _ in series]))
    table = np.full((len(series), xs.size), np.nan)
    for i, (x, y) in enumerate(series):
        table[i, np.searchsorted(xs, x)] = y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return xs, np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


def _thin(n: int, limit: int = 4000) -> slice:
    return slice(None, None, max(1, math.ceil(n / limit)))


def _plot_task(
    plt: Any,
    task: str,
    runs: Sequence[Run],
    kind: str,
    path: Path,
    colors: dict[str, Any],
) -> bool:
    """Draw one figure of one task; False (nothing written) if no run has data."""
    from matplotlib.ticker import MaxNLocator

    groups = _group(runs)
    metric = runs[0].metric
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        drawn = False
        lows: list[float] = []
        highs: list[float] = []
        for (_, label), members in sorted(groups.items(), key=lambda kv: kv[0][1]):
            if kind == "lr":
                series = [(r.lr_steps, r.lr) for r in members if r.lr.size]
            elif kind == "train_loss":
                series = [(r.epochs, r.epoch_values("train_loss")) for r in members if r.metrics]
            else:
                series = [(r.epochs, r.epoch_values("test_metric")) for r in members if r.metrics]
            if not series:
                continue
            x, mean, lo, hi = _aggregate(series)
            if kind == "lr":
                # A log axis cannot show lr <= 0 (warm-up start, cosine end): leave gaps.
                mean, lo, hi = (np.where(v > 0, v, np.nan) for v in (mean, lo, hi))
                keep = _thin(x.size)
                x, mean, lo, hi = x[keep], mean[keep], lo[keep], hi[keep]
            if not np.isfinite(mean).any():
                continue
            lows.append(float(np.nanmin(mean)))
            highs.append(float(np.nanmax(mean)))
            n = len(series)
            notes = [f"n={n}"] if n > 1 else []
            n_incomplete = sum(run.incomplete for run in members)
            if n_incomplete:
                notes.append(f"{n_incomplete} incomplete")
            name = f"{label} ({', '.join(notes)})" if notes else label
            color = colors[label]
            marker = None if kind == "lr" or x.size > 40 else "o"
            ax.plot(x, mean, color=color, label=name, marker=marker, markersize=3, lw=1.4)
            if n > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
            drawn = True
        if not drawn:
            logger.info("%s: no data for %s plot, skipped", task, kind)
            return False
        if kind == "lr":
            ax.set_yscale("log")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("learning rate (log scale)")
            ax.set_title(f"{task}: learning rate")
        elif kind == "train_loss":
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss")
            ax.set_title(f"{task}: training loss per epoch")
        else:
            # Perplexity often falls by orders of magnitude in the first epochs.
            if metric == "perplexity" and min(lows) > 0 and max(highs) > 10 * min(lows):
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"test {_metric_title(metric)}")
            better = "higher" if higher_is_better(metric) else "lower"
            ax.set_title(f"{task}: test {metric} per epoch ({better} is better)")
        if kind != "lr":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        return True
    finally:
        plt.close(fig)


def plot_runs(runs: Iterable[Run], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Plot each task's runs to PNG files (matplotlib, Agg backend).

    Per task: ``{task}_lr.png`` (learning rate against optimizer step, log y),
    ``{task}_train_loss.png`` (training loss per epoch) and
    ``{task}_test_metric.png`` (test metric per epoch), with ``{task}`` reduced
    to ``[A-Za-z0-9._-]``. One line per method: the mean over its seeds, with a
    shaded min--max band when there are several. A figure with no data (e.g. no
    ``lr.csv`` in any run of the task) is not written.

    Args:
        runs: Loaded runs.
        out_dir: Output folder (created if needed).

    Returns:
        The written PNG paths, per task in the order lr, train loss, test metric.

    Example:
        >>> [p.name for p in plot_runs(runs, "out/")]  # doctest: +SKIP
        ['fmnist-resnet_lr.png', 'fmnist-resnet_train_loss.png', 'fmnist-resnet_test_metric.png']
    """
    written = [png for pngs in _plot_tasks(list(runs), Path(out_dir)).values() for _, png in pngs]
    logger.info("wrote %d figure(s) to %s", len(written), out_dir)
    return written


def _plot_tasks(runs: Sequence[Run], out: Path) -> dict[str, list[tuple[str, Path]]]:
    """Task -> [(kind, png path)] for the figures written (see :func:`plot_runs`)."""
    if not runs:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.task, []).append(run)
    palette = plt.get_cmap("tab10").colors
    written: dict[str, list[tuple[str, Path]]] = {}
    used: set[str] = set()
    for task in sorted(by_task):
        task_runs = by_task[task]
        stem = _safe_name(task)
        base, k = stem, 2
        while stem.lower() in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem.lower())
        labels = sorted(set(_method_labels(task_runs).values()))
        colors = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
        written[task] = []
        for kind in _FIGURE_TITLES:
            path = out / f"{stem}_{kind}.png"
            if _plot_task(plt, task, task_runs, kind, path, colors):
                written[task].append((kind, path))
    return written


# ----------------------------------------------------------------------------- report


def _run_lines(runs: Sequence[Run], out: Path) -> list[str]:
    lines = [
        "| Task | Method | Seed | Epochs | Steps | Final test metric | Best test metric "
        "| Wall (s) | Completed | Directory |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    labels = _method_labels(runs)
    for run in runs:
        try:
            where = os.path.relpath(run.path, out)
        except ValueError:  # another drive on Windows
            where = str(run.path)
        epochs = run.summary.get("epochs", len(run.metrics))
        steps = run.summary.get("steps", int(run.lr_steps.max()) if run.lr_steps.size else None)
        lines.append(
            f"| {_md_cell(run.task)} | {_md_cell(labels[run])} "
            f"| {'' if run.seed is None else run.seed} "
            f"| {'' if epochs is None else epochs} | {'' if steps is None else steps} "
            f"| {_fmt(run.final_test_metric, 2)} | {_fmt(run.best_test_metric, 2)} "
            f"| {_fmt(run.wall_seconds, 1)} | {'yes' if run.completed else '**no**'} "
            f"| `{Path(where).as_posix()}` |"
        )
    return lines


def write_report(
    runs: Iterable[Run],
    out_dir: str | os.PathLike[str],
    title: str = "MLR-SNet comparison",
    intro: str = "",
    commands: list[str] | None = None,
    machine: str | None = None,
) -> Path:
    """Write ``report.md``: tables, figures, per-run list, commands and machine.

    Also writes what it embeds: ``comparison.md`` / ``comparison.csv``
    (:func:`write_table`) and the PNGs (:func:`plot_runs`), all in ``out_dir``,
    linked relatively. The commands are those recorded in the run summaries
    (in run order, without repeats) followed by ``commands``. Software versions
    recorded in the summaries are listed under the machine description.

    Args:
        runs: Loaded runs.
        out_dir: Output folder (created if needed).
        title: The report's first heading.
        intro: Markdown placed under the title.
        commands: Extra commands to list (e.g. the one that made the report).
        machine: A description of the machine the runs ran on.

    Returns:
        The path of ``report.md``.

    Example:
        >>> path = write_report(find_runs(["runs/"]), "out/", machine="2 CPU cores")  # doctest: +SKIP
        >>> path.name  # doctest: +SKIP
        'report.md'
    """
    runs = sorted(runs, key=lambda r: (r.task, r.label, -1 if r.seed is None else r.seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs)
    md_path, csv_path = write_table(rows, out)
    task_pngs = _plot_tasks(runs, out)

    lines = [f"# {title}", ""]
    if intro:
        lines += [intro.rstrip(), ""]
    n_incomplete = sum(run.incomplete for run in runs)
    lines += [
        f"{len(runs)} run(s), {len({r.task for r in runs})} task(s). "
        f"Tables: [{md_path.name}]({md_path.name}), [{csv_path.name}]({csv_path.name}).",
        "",
    ]
    if n_incomplete:
        lines += [f"**{n_incomplete} run(s) did not complete** (completed = false).", ""]
    lines += ["## Results", ""]
    for task in dict.fromkeys(row["task"] for row in rows):
        lines += _task_tables([row for row in rows if row["task"] == task], heading="###")
        for kind, png in task_pngs.get(task, []):
            rel = Path(os.path.relpath(png, out)).as_posix()
            lines += [f"![{_md_cell(task)}: {_FIGURE_TITLES[kind]}]({rel})", ""]
    lines += ["## Runs", ""] + _run_lines(runs, out) + [""]
    all_commands = [run.command for run in runs if run.command] + list(commands or [])
    all_commands = list(dict.fromkeys(all_commands))
    lines += ["## Commands", ""]
    if all_commands:
        lines += ["```sh", *all_commands, "```", ""]
    else:
        lines += ["No commands were recorded.", ""]
    lines += ["## Machine", "", machine.rstrip() if machine else "Not given.", ""]
    versions = list(
        dict.fromkeys(
            json.dumps(run.summary["versions"], sort_keys=True)
            for run in runs
            if isinstance(run.summary.get("versions"), dict) and run.summary["versions"]
        )
    )
    if versions:
        lines += ["Software versions recorded by the runs:", ""]
        for text in versions:
            pairs = json.loads(text)
            lines.append("- " + ", ".join(f"{k} {v}" for k, v in pairs.items()))
        lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    logger.info("wrote %s", path)
    return path
