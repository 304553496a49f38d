"""The benchmark's report: tables, intervals, ranks and figures from the records alone.

:func:`tables` turns the records into one :class:`Row` per method and tier of each target;
:func:`markdown` writes them as the page's section; :func:`figures` draws the summary of
mean ranks and, per target, the learning-rate, loss and metric curves. Nothing here picks
anything by a test metric: the best baseline of each tier is the one with the best mean
final *validation* metric, and the tuned tier's point was chosen on validation too.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlrsnet.lab.benchmark import stats
from mlrsnet.lab.benchmark.execute import Records, tuned_factor
from mlrsnet.lab.benchmark.plan import (
    EVAL_SEEDS,
    LEARNED,
    TUNED,
    plus_bar,
    tuned_run,
)  # fmt: skip
from mlrsnet.lab.benchmark.plan import cells as planned_cells
from mlrsnet.lab.benchmark.tasksets import META_TRAINING, META_TRAINING_BY_PASSES, MetaTask, Target
from mlrsnet.lab.metrics import higher_is_better

__all__ = [
    "BEGIN", "END", "Row", "acceptance", "acceptance_at_convergence", "diverged", "figures", "markdown", "markers", "tables", "write",
]  # fmt: skip

BEGIN = "<!-- heldout:begin (python benchmarks/heldout.py --report) -->"
END = "<!-- heldout:end -->"


def markers(suite: str = "heldout") -> tuple[str, str]:
    """The comments around ``suite``'s section of a page (:data:`BEGIN`/:data:`END` for the
    held-out suite), so that each suite's report replaces its own section only.

    Example:
        >>> markers("convergence")[1]
        '<!-- convergence:end -->'
    """
    if suite == "heldout":
        return BEGIN, END
    return (f"<!-- {suite}:begin (python benchmarks/heldout.py --suite {suite} --report) -->",
            f"<!-- {suite}:end -->")  # fmt: skip


TIERS = ("defaults", "probe", "tuned")


@dataclass
class Row:
    """One method at one tier on one target, over the evaluation seeds."""

    target: str
    method: str
    tier: str  # defaults, probe, tuned, learned, or "<tier> + early stop"
    records: list[dict[str, Any]] = field(repr=False)
    key: str = "final_test_metric"

    @property
    def label(self) -> str:
        name = "schedulefree" if self.method.startswith("schedulefree") else self.method
        return name if self.tier == "learned" else f"{name} · {self.tier}"

    @property
    def baseline(self) -> bool:
        return self.tier != "learned"

    def values(self, key: str | None = None) -> list[float]:
        key = key or self.key
        return [_number(r.get(key)) for r in self.records]

    @property
    def seeds(self) -> list[int]:
        return [r["seed"] for r in self.records]

    def mean(self, key: str | None = None) -> float:
        return statistics.fmean(self.values(key))

    def std(self) -> float:
        values = self.values()
        return statistics.stdev(values) if len(values) > 1 else 0.0


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def tables(records: Records, targets: list[Target] | tuple[Target, ...],
           seeds: tuple[int, ...] = EVAL_SEEDS) -> dict[str, list[Row]]:  # fmt: skip
    """``{target: rows}`` for every target whose cells are all complete on ``seeds``.

    A target is left out until every planned cell (method, tier) has all its seeds, so
    no table or rank is drawn from a partly run target.
    """
    by_id = {r["id"]: r for r in records.rows}
    runs = [r for r in records.rows if r.get("kind") == "run"]
    result: dict[str, list[Row]] = {}
    for target in targets:
        target_seeds = target.check_seeds or seeds
        cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            if r["target"] == target.name and r["tier"] in ("defaults", "probe", "learned"):
                cells[(r["method"], r["tier"])].append(r)
        source = target.tuned_at or target.name
        for method in TUNED:
            factor = tuned_factor(records.rows, source, method)
            if factor is None:
                continue
            for seed in target_seeds:
                row = by_id.get(tuned_run(target, method, factor, seed).run_id)
                if row is not None:
                    cells[(method, "tuned")].append(row)
        rows = []
        for (method, tier), recs in cells.items():
            recs = sorted((r for r in recs if r["seed"] in target_seeds), key=lambda r: r["seed"])
            if [r["seed"] for r in recs] != sorted(target_seeds):
                continue
            rows.append(Row(target.name, method, tier, recs))
            if target.noisy and method == "cosine" and tier in ("defaults", "tuned"):
                rows.append(Row(target.name, method, f"{tier} + early stop", recs,
                                key="val_selected_test_metric"))  # fmt: skip
        if planned_cells(target) <= {(r.method, r.tier) for r in rows}:  # every cell, every seed
            result[target.name] = sorted(rows, key=_order)
    return result


def _order(row: Row) -> tuple[int, str]:
    tiers = ["learned", "defaults", "defaults + early stop", "probe", "tuned",
             "tuned + early stop"]  # fmt: skip
    return (tiers.index(row.tier), row.method)


def best_of_tier(rows: list[Row], tier: str, metric: str) -> Row | None:
    """The baseline of ``tier`` with the best mean final validation metric."""
    candidates = [r for r in rows if r.tier == tier]
    if not candidates:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(candidates, key=lambda r: sign * r.mean("final_val_metric"))


@functools.cache
def _interval(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float]:
    """The paired interval, computed once per pair of samples (tables, counts and the
    significance lines all ask for the same comparisons)."""
    return stats.paired_interval(a, b)


def compare(row: Row, reference: Row, metric: str) -> tuple[float, float, float, str]:
    """Mean difference, its paired 95 % interval and win/tie/loss of ``row`` vs ``reference``."""
    a, b = row.values(), reference.values()
    low, high = _interval(tuple(a), tuple(b))
    outcome = stats.win_tie_loss(low, high, higher_is_better=higher_is_better(metric))
    return statistics.fmean(a) - statistics.fmean(b), low, high, outcome


def rank_table(
    result: dict[str, list[Row]], metric_of: dict[str, str]
) -> dict[str, tuple[float, float, float]]:
    """Mean rank (with interval) of every row label present on every complete target."""
    table = {t: {r.label: r.values() for r in rows if "early stop" not in r.tier}
             for t, rows in result.items()}  # fmt: skip
    return stats.mean_ranks(table, {t: higher_is_better(metric_of[t]) for t in result})


def _fmt(value: float, metric: str) -> str:
    return f"{value:.2f}" if metric == "accuracy" else f"{value:.1f}"


def _lr_text(row: Row) -> str:
    lrs = [r.get("lr") for r in row.records]
    if row.tier == "learned" and lrs[0] is None:
        gammas = [r.get("gamma") for r in row.records if r.get("gamma") is not None]
        return f"γ {statistics.fmean(gammas):.3g} (paper)" if gammas else "paper γ"
    values = [v for v in lrs if v is not None]
    if not values:
        return "—"
    mean = statistics.fmean(values)
    return f"{mean:.3g}" if max(values) == min(values) else f"{mean:.3g} (mean)"


def _target_section(t: Target, rows: list[Row], metric: str, figures_dir: str) -> list[str]:
    """A target's heading, figure and table: every row against the best of each tier."""
    lines: list[str] = []
    out = lines.append
    best = {tier: best_of_tier(rows, tier, metric) for tier in TIERS}
    arrow = "higher" if higher_is_better(metric) else "lower"
    out(f"#### {t.name} ({t.axis}; `{t.task}`, {t.epochs} epochs, final-step test {metric}, "
        f"{arrow} is better)")  # fmt: skip
    out("")
    if figures_dir:
        out(f"![{t.name}]({figures_dir}/{t.name}.png)")
        out("")
    names = {tier: (b.label if b else "—") for tier, b in best.items()}
    out("Best baseline by validation: " + "; ".join(f"{k}: {v}" for k, v in names.items()))
    out("")
    out(
        "| method | lr | final test | early-stopped | Δ vs best defaults | Δ vs best probe | Δ vs best tuned | steps |"
    )
    out("|---|---|---:|---:|---|---|---|---:|")
    for row in rows:
        cells = []
        for tier in TIERS:
            ref = best[tier]
            if ref is None or ref is row:
                cells.append("—")
                continue
            diff, low, high, outcome = compare(row, ref, metric)
            cells.append(f"{diff:+.2f} [{low:+.2f}, {high:+.2f}] {outcome}")
        steps = row.records[0]["steps"]
        probe_steps = row.records[0].get("probe_steps")
        steps_text = f"{steps} + {probe_steps}" if probe_steps else str(steps)
        # the test metric at the best validation epoch (the early-stop rows are that already)
        early = (
            "" if "early stop" in row.tier else _fmt(row.mean("val_selected_test_metric"), metric)
        )
        out(f"| {row.label} | {_lr_text(row)} | {_fmt(row.mean(), metric)} ± "
            f"{_fmt(row.std(), metric)} | {early} | {' | '.join(cells)} | {steps_text} |")  # fmt: skip
    out("")
    return lines


def _plateau_pairs(targets: list[Target] | tuple[Target, ...]) -> list[tuple[Target, Target]]:
    """(target, its learning-curve check) pairs: each ``-2x-check`` twin, and a length variant
    at twice the length of the target whose tuned rate it reuses (the CNN's 2x for its 1x)."""
    by_name = {t.name: t for t in targets}
    pairs = []
    for t in targets:
        base = by_name.get(t.tuned_at or "")
        if base is not None and t.epochs == 2 * base.epochs:
            pairs.append((base, t))
    return pairs


def plateau_lines(result: dict[str, list[Row]], targets: list[Target] | tuple[Target, ...],
                  metric_of: dict[str, str]) -> list[str]:  # fmt: skip
    """The learning-curve check: the best tuned baseline (by validation) of each target against
    the same method and rate trained twice as long, on the seeds the check ran."""
    lines = ["| target | best tuned (by validation) | epochs | test | at 2x the epochs | "
             "2x − 1x | at its plateau? |", "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for base, check in _plateau_pairs(targets):
        if base.name not in result or check.name not in result:
            lines.append(f"| `{base.name}` | not yet complete | {base.epochs} | | | | |")
            continue
        metric = metric_of[base.name]
        best = best_of_tier(result[base.name], "tuned", metric)
        longer = next((r for r in result[check.name]
                       if best is not None and (r.method, r.tier) == (best.method, "tuned")), None)  # fmt: skip
        if best is None or longer is None:
            continue
        seeds = sorted(set(best.seeds) & set(longer.seeds))
        one = statistics.fmean(
            v for v, s in zip(best.values(), best.seeds, strict=True) if s in seeds
        )
        two = statistics.fmean(
            v for v, s in zip(longer.values(), longer.seeds, strict=True) if s in seeds
        )
        if metric == "accuracy":  # gain in points, within 0.3
            change, gain = f"{two - one:+.2f} points", (two - one) / 0.3
        else:  # perplexity: the relative fall, within 2 %
            change, gain = f"{100 * (two / one - 1):+.1f} %", (1 - two / one) / 0.02
        verdict = ("yes" if abs(gain) <= 1 else "no: still improving" if gain > 0
                   else "past it: longer training makes it worse")  # fmt: skip
        lines.append(f"| `{base.name}` | {best.label} | {base.epochs} | {_fmt(one, metric)} | "
                     f"{_fmt(two, metric)} | {change} | {verdict} "
                     f"(seeds {', '.join(map(str, seeds))}) |")  # fmt: skip
    return lines


def gap_lines(
    result: dict[str, list[Row]], metric_of: dict[str, str], common: list[str] | None = None
) -> list[str]:
    """Every zero-tuning row (defaults, probe, learned) against the best tuned baseline of each
    target (by validation): the mean difference and its paired 95 % interval, in points of
    accuracy or in perplexity; sorted by the mean gap over the accuracy targets in ``common``
    (default: every accuracy target), shown only for the rows that ran on all of them, so
    that every mean is over the same targets."""
    names = list(result)
    common = [t for t in (names if common is None else common) if metric_of[t] == "accuracy"]
    gaps: dict[str, dict[str, tuple[float, float, float]]] = defaultdict(dict)
    for target, rows in result.items():
        ref = best_of_tier(rows, "tuned", metric_of[target])
        if ref is None:
            continue
        for row in rows:
            if not row.tier.startswith("tuned"):
                gaps[row.label][target] = compare(row, ref, metric_of[target])[:3]

    def mean_gap(label: str) -> float:  # points add up over accuracy targets
        if not common or any(t not in gaps[label] for t in common):
            return math.nan
        return statistics.fmean(gaps[label][t][0] for t in common)

    order = sorted(gaps, key=lambda label: (math.isnan(mean_gap(label)), -mean_gap(label)))
    lines = [f"| method | mean gap over {len(common)} accuracy targets (the same for every row) | "
             + " | ".join(f"`{t}`" for t in names) + " |",
             "|---|---:|" + "---|" * len(names)]  # fmt: skip
    for label in order:
        cells = [f"{g[0]:+.2f} [{g[1]:+.2f}, {g[2]:+.2f}]" if (g := gaps[label].get(t)) else "—"
                 for t in names]  # fmt: skip
        mean = mean_gap(label)
        lines.append(f"| {label} | {'—' if math.isnan(mean) else f'{mean:+.2f}'} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return lines


def cost_lines(records: Records, targets: list[Target] | tuple[Target, ...]) -> list[str]:
    """What each target cost: its records' single-core run time (runs and probes)."""
    lines = ["| target | runs done | probes | hours | seconds a run (median) | "
             "seconds a run (`--plan`'s estimate) |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for t in targets:
        runs = [r["seconds"] for r in records.rows
                if r.get("kind") == "run" and r["target"] == t.name and r.get("seconds")]  # fmt: skip
        probes = [r["seconds"] for r in records.rows
                  if r.get("kind") == "probe" and r["target"] == t.name]  # fmt: skip
        median = f"{statistics.median(runs):.0f}" if runs else "—"
        lines.append(f"| `{t.name}` | {len(runs)} | {len(probes)} | "
                     f"{(sum(runs) + sum(probes)) / 3600:.2f} | {median} | {t.seconds:g} |")  # fmt: skip
    return lines


def _task_sets(targets: list[Target] | tuple[Target, ...]) -> list[str]:
    """The meta-training tasks and the held-out targets, as the page lists them."""
    lines: list[str] = []
    out = lines.append
    out("### The two task sets")
    out("")
    out("*Meta-training tasks* — a learned schedule may be trained on these; they are never "
        "reported as transfer evidence (`mlrsnet.lab.benchmark.tasksets.META_TRAINING`):")  # fmt: skip
    out("")
    for m in META_TRAINING:
        out(f"- {_meta_task(m)}, {m.steps[0]}–{m.steps[1]} steps")
    out("")
    out("The same tasks at larger training fractions, for runs drawn by passes over the data "
        "(`META_TRAINING_BY_PASSES`; MLR-SNet+ meta-training with `--passes`, its lengths "
        "from `--min-steps`/`--max-steps`):")  # fmt: skip
    out("")
    for m in META_TRAINING_BY_PASSES:
        out(f"- {_meta_task(m)}")
    out("")
    out("*Held-out targets* — the only runs reported; every test set is whole:")
    out("")
    out("| target | axis | task | optimizer, default lr | epochs | training data | why this size |")
    out("|---|---|---|---|---:|---|---|")
    for t in targets:
        data = f"{t.train_fraction:.0%}"
        if t.noisy:
            data += f", {t.noise_rate:.0%} {t.noise} noise"
        out(f"| `{t.name}` | {t.axis} | `{t.task}` | {t.optimizer} {t.lr:g}"
            f"{f', {t.warmup:.0%} warmup' if t.warmup else ''} | {t.epochs} | {data} | {t.note} |")  # fmt: skip
    out("")
    return lines


def _full(name: str, targets: list[Target] | tuple[Target, ...]) -> bool:
    """Whether target ``name`` runs every method (not a length variant's few)."""
    return next(t for t in targets if t.name == name).methods is None


def _convergence_lines(result: dict[str, list[Row]], targets: list[Target] | tuple[Target, ...],
                       records: Records, metric_of: dict[str, str]) -> list[str]:  # fmt: skip
    """The convergence suite's own sections: plateau check, zero-tuning gaps, costs."""
    main = {t: rows for t, rows in result.items()
            if not next(x for x in targets if x.name == t).check_seeds}  # fmt: skip
    return [
        "### At their plateau: the learning-curve check", "",
        "The best tuned baseline of each target (chosen by validation) against the same method "
        "and rate at twice the length (its `-2x-check` twin, or the CNN's 2x for its 1x); a "
        "target is at its plateau when twice the training changes its final test metric by at "
        "most 0.3 points (or 2 % perplexity), past it when longer training makes it worse "
        "(overfitting, or memorising noisy labels).", "",
        *plateau_lines(result, targets, metric_of), "",
        "### Zero tuning: the gap to the tuned tier", "",
        "Each row that needs no tuning (the defaults and probe tiers, the learned schedules) "
        "against the best tuned baseline of the target (chosen by validation): mean difference "
        "of the final test metric and its paired 95 % interval, in points of accuracy (higher "
        "is better) or in perplexity (lower is better). The mean is over the same accuracy "
        "targets for every row that has one: those that run every method (not the length "
        "variants), for the rows that ran on all of them.", "",
        *gap_lines(main, metric_of, [t for t in main if _full(t, targets)]), "",
        "### What each target costs", "",
        *cost_lines(records, targets), "",
    ]  # fmt: skip


def markdown(
    result: dict[str, list[Row]],
    targets: list[Target] | tuple[Target, ...],
    records: Records,
    *,
    figures_dir: str = "",
    quick: bool = False,
) -> str:
    """The report section as Markdown: the task sets, (at convergence) the learning-curve
    check, the zero-tuning gaps and the costs, the mean ranks over the targets (their
    learning-curve checks aside) and a table per target."""
    metric_of = {t: rows[0].records[0]["metric"] for t, rows in result.items()}
    everything = result
    lines: list[str] = []
    out = lines.append
    runs = [r for r in records.rows if r.get("kind") == "run"]
    probes = [r for r in records.rows if r.get("kind") == "probe"]
    hours = (sum(r.get("seconds") or 0 for r in runs) + sum(r["seconds"] for r in probes)) / 3600
    complete = [t.name for t in targets if t.name in result]
    out(f"Records: {len(runs)} runs and {len(probes)} probes ({hours:.2f} h of single-core run "
        f"time); complete targets: {len(complete)} of {len(targets)}.")  # fmt: skip
    missing = [t.name for t in targets if t.name not in result]
    if missing:
        out("Not yet complete (a target is shown once every cell has all its seeds): "
            + ", ".join(f"`{m}`" for m in missing) + ".")  # fmt: skip
    out("")
    if not quick:
        lines += _task_sets(targets)
    checks = {t.name for t in targets if t.check_seeds}
    result = {name: rows for name, rows in result.items() if name not in checks}
    if any(t.profile == "convergence" for t in targets):
        lines += _convergence_lines(everything, targets, records, metric_of)
    ranks = rank_table(result, metric_of) if result else {}
    if ranks:
        out(f"### Mean rank over the {len(result)} complete targets")
        out("")
        if figures_dir:
            out(f"![mean ranks]({figures_dir}/ranks.png)")
            out("")
        out("Rank 1 is best, by the mean final test metric of 5 seeds; the interval resamples "
            "the seeds of every target (paired across methods). Win/tie/loss: against the best "
            "baseline of each tier (chosen by validation), a win when the paired 95 % interval "
            "of the difference lies on the better side of zero.")  # fmt: skip
        out("")
        wtl = _win_tie_loss_counts(result, metric_of)
        out(
            "| method | mean rank | 95 % interval | vs defaults W/T/L | vs probe W/T/L | vs tuned W/T/L |"
        )
        out("|---|---:|---|---|---|---|")
        for label, (mean, low, high) in sorted(ranks.items(), key=lambda kv: kv[1][0]):
            counts = " | ".join("{}/{}/{}".format(*wtl[label][tier]) for tier in TIERS)
            out(f"| {label} | {mean:.1f} | {low:.1f}–{high:.1f} | {counts} |")
        out("")
    out("### Targets")
    out("")
    for t in targets:
        if t.name in result:
            lines += _target_section(t, result[t.name], metric_of[t.name], figures_dir)
    out("### What is significant")
    out("")
    out(_significance(result, metric_of))
    convergence = any(t.profile == "convergence" for t in targets)
    noisy = {t.name for t in targets if t.noisy}
    for network in _plus_networks(result):
        out("")
        if convergence:
            out(acceptance_at_convergence(network, result, metric_of, ranks, noisy))
        else:
            out(acceptance(network, result, targets, metric_of, ranks))
    return "\n".join(lines) + "\n"


def _plus_networks(result: dict[str, list[Row]]) -> list[str]:
    """The MLR-SNet+ networks in ``result`` (as shipped, not their ablations)."""
    methods = {r.method for rows in result.values() for r in rows}
    return sorted(m for m in methods if m.startswith("mlrsnet-plus:") and "~" not in m)


def acceptance(
    network: str,
    result: dict[str, list[Row]],
    targets: list[Target] | tuple[Target, ...],
    metric_of: dict[str, str],
    ranks: dict[str, tuple[float, float, float]],
) -> str:
    """Issue 11's acceptance criteria for the MLR-SNet+ ``network``, each with what was measured,
    and its ablations on every target (the network minus each variant, paired over seeds).

    Args:
        network: The network's method name (``mlrsnet-plus:NAME``).
        result: :func:`tables`.
        targets: The targets (for their axis, optimizer, task and noise).
        metric_of: ``{target: metric}``.
        ranks: :func:`rank_table`.
    """
    from mlrsnet.lab.tasks import registry

    lines = [f"### Acceptance of `{network}` (issue 11)", ""]
    out = lines.append
    by_name = {t.name: t for t in targets if t.name in result}
    row_of = functools.partial(_row_of, result)
    verdict = _verdict

    rank = ranks.get(network)
    if rank is not None:
        ahead = sorted(
            (label, mean) for label, (mean, _, _) in ranks.items()
            if label.endswith((" · defaults", " · probe")) and mean <= rank[0]
        )  # fmt: skip
        behind = ", ".join(f"{label} ({mean:.1f})" for label, mean in ahead) or "none"
        out(f"- Zero tuning, mean rank ahead of every *defaults* and *probe* baseline: "
            f"{verdict(not ahead)}. Its mean rank is {rank[0]:.1f} ({rank[1]:.1f}–{rank[2]:.1f}); "
            f"baselines of those tiers ranked as well or better: {behind}.")  # fmt: skip
    outcomes = {}
    for target in by_name:
        row, ref = row_of(target, network), best_of_tier(result[target], "tuned", metric_of[target])
        if row is not None and ref is not None:
            outcomes[target] = compare(row, ref, metric_of[target])
    inside = [t for t, c in outcomes.items() if c[3] != "loss"]
    need = math.ceil(2 * len(outcomes) / 3)
    out(f"- Within the *tuned* tier's 95 % interval (or better) on at least 2 of every 3 targets: "
        f"{verdict(len(inside) >= need)}: on {len(inside)} of {len(outcomes)} (needed {need})"
        + (f": {', '.join(f'`{t}`' for t in inside)}" if inside else "") + ".")  # fmt: skip
    lengths = [t for t in by_name if by_name[t].axis == "training length"]
    if lengths:
        cells = []
        for target in lengths:
            diff, low, high, outcome = outcomes.get(target, (math.nan,) * 3 + ("—",))
            cells.append(f"`{target}` {diff:+.2f} [{low:+.2f}, {high:+.2f}] {outcome}")
        out("- Length transfer (one network, no retraining), vs the best *tuned* baseline: "
            + "; ".join(cells) + ".")  # fmt: skip
    for target in (t for t in by_name if by_name[t].noise == "uniform"):
        row = row_of(target, network)
        cosine = row_of(target, "cosine · defaults")
        stopped = [r for r in result[target] if r.method == "cosine" and "early stop" in r.tier]
        if row is None or cosine is None:
            continue
        diff, low, high, outcome = compare(row, cosine, metric_of[target])
        out(f"- Label noise (`{target}`), ahead of cosine at the final step: "
            f"{verdict(outcome == 'win')}: {diff:+.2f} [{low:+.2f}, {high:+.2f}] points vs "
            f"cosine · defaults ({outcome}).")  # fmt: skip
        for ref in stopped:
            gap = row.mean() - ref.mean()
            out(f"- Label noise (`{target}`), within 1 point of {ref.label}: "
                f"{verdict(gap >= -1.0)}: {gap:+.2f} points.")  # fmt: skip
    groups: dict[str, list[str]] = defaultdict(list)
    for target, spec in by_name.items():
        groups[spec.optimizer].append(target)
        groups[registry.spec(spec.task).modality].append(target)
    counts = []
    for group, members in sorted(groups.items()):
        tally = Counter(
            compare(row, ref, metric_of[t])[3]
            for t in members
            if (row := row_of(t, network)) is not None
            and (ref := best_of_tier(result[t], "defaults", metric_of[t])) is not None
        )
        counts.append(f"{group} {tally['win']}/{tally['tie']}/{tally['loss']}")
    out("- SGD and AdamW, image and text, one network; win/tie/loss against the best "
        "*defaults* baseline per group: " + ", ".join(counts) + ".")  # fmt: skip
    out("")
    # a network meta-trained at the default rate runs its ablation (c) at the probe's; (b) is
    # the WSD family fitted on the network's tasks at its base rate
    at_default = any(r.method == f"{network}~probe" for rows in result.values() for r in rows)
    ablations = [
        (f"{network}~progress-only", "(a) only t/T"),
        (_bar(network, at_default), "(b) fitted WSD"),
    ]
    if at_default:
        ablations += [(f"{network}~probe", "(c) probe")]
    else:
        ablations += [(f"{network}~user-lr", "(c) user lr")]
    ablations += [(m, f"(d) {m}") for m in LEARNED]
    out("Ablations: the network minus each variant, mean of 5 paired seeds [95 % interval] "
        "(accuracy in points, perplexity and loss in their units; the sign says which is "
        "higher, the word whether the network is better).")  # fmt: skip
    out("")
    lines += _ablation_table(network, ablations, result, list(by_name), metric_of)
    return "\n".join(lines)


def _row_of(result: dict[str, list[Row]], target: str, label: str) -> Row | None:
    return next((r for r in result[target] if r.label == label), None)


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _ablation_table(network: str, ablations: list[tuple[str, str]], result: dict[str, list[Row]],
                    targets: list[str], metric_of: dict[str, str]) -> list[str]:  # fmt: skip
    """One row per target: ``network`` minus each ablation's row (``"—"`` where not run)."""
    lines = ["| target | " + " | ".join(name for _, name in ablations) + " |",
             "|---|" + "---|" * len(ablations)]  # fmt: skip
    for target in targets:
        if (row := _row_of(result, target, network)) is None:
            continue
        cells = [_cell(compare(row, other, metric_of[target]))
                 if (other := _row_of(result, target, label)) else "—"
                 for label, _ in ablations]  # fmt: skip
        lines.append(f"| `{target}` | " + " | ".join(cells) + " |")
    return lines


def diverged(record: dict[str, Any]) -> bool:
    """Whether a run diverged: a non-finite final test loss or skipped non-finite steps, or
    (accuracy) a final test accuracy below 20 %, twice chance on these ten-class targets."""
    loss = record.get("final_test_loss")
    if (
        loss is None
        or not math.isfinite(float(loss))
        or (record.get("nonfinite_steps_skipped") or 0)
    ):
        return True
    return record.get("metric") == "accuracy" and _number(record.get("final_test_metric")) < 20.0


def _diverged_beyond(row: Row, reference: Row) -> list[int]:
    """The seeds on which ``row`` diverged and ``reference`` (the same seeds) did not."""
    ref = {r["seed"]: diverged(r) for r in reference.records}
    return [r["seed"] for r in row.records if diverged(r) and not ref.get(r["seed"], False)]


def _cell(outcome: tuple[float, float, float, str]) -> str:
    diff, low, high, word = outcome
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}] {word}"


def acceptance_at_convergence(
    network: str,
    result: dict[str, list[Row]],
    metric_of: dict[str, str],
    ranks: dict[str, tuple[float, float, float]],
    noisy: set[str],
) -> str:
    """Issue 26's acceptance criteria for MLR-SNet+ ``network`` on the convergence targets,
    each with what was measured: its user-rate mode (the row at the target's rate) against
    cosine at the same rate, its zero-tuning mode (``~probe``) against every zero-tuning row
    and the tuned tier, divergence against cosine at the same rate, and its ablations.

    Args:
        network: The network's method name (``mlrsnet-plus:NAME``).
        result: :func:`tables`, the learning-curve twins left out.
        metric_of: ``{target: metric}``.
        ranks: :func:`rank_table`.
        noisy: The label-noise targets.
    """
    lines = [f"### Acceptance of `{network}` at convergence (issue 26)", ""]
    out = lines.append
    row_of = functools.partial(_row_of, result)
    verdict = _verdict

    versus = {t: compare(row, cosine, metric_of[t]) for t in result
              if (row := row_of(t, network)) and (cosine := row_of(t, "cosine · defaults"))}  # fmt: skip
    losses = [t for t, c in versus.items() if c[3] == "loss"]
    wins = [t for t, c in versus.items() if c[3] == "win"]
    met = not losses and len(wins) >= 3 and any(t in noisy for t in wins)
    out(f"- User-rate mode (the target's rate), never significantly worse than cosine at the same "
        f"rate and ahead of it on at least 3 targets, the label-noise one included: {verdict(met)}: "
        + "; ".join(f"`{t}` {_cell(c)}" for t, c in versus.items()) + ".")  # fmt: skip
    zero = f"{network}~probe"
    rank = ranks.get(zero)
    if rank is None:
        out(f"- Zero-tuning mode: not run (`{zero}` is not among the rows of every target).")
    else:
        ahead = sorted((label, mean) for label, (mean, _, _) in ranks.items()
                       if label.endswith((" · defaults", " · probe")) and mean <= rank[0])  # fmt: skip
        out(f"- Zero-tuning mode, mean rank ahead of every zero-tuning row: {verdict(not ahead)}: "
            f"{rank[0]:.1f} ({rank[1]:.1f}–{rank[2]:.1f}); as well or better: "
            + (", ".join(f"{label} ({mean:.1f})" for label, mean in ahead) or "none") + ".")  # fmt: skip
        tuned = {t: compare(row, ref, metric_of[t]) for t in result
                 if (row := row_of(t, zero)) and (ref := best_of_tier(result[t], "tuned", metric_of[t]))}  # fmt: skip
        inside = [t for t, c in tuned.items() if c[3] != "loss"]
        need = math.ceil(2 * len(tuned) / 3)
        out(f"- Zero-tuning mode within the *tuned* tier's 95 % interval (or better) on at least "
            f"2 of every 3 targets: {verdict(len(inside) >= need)}: on {len(inside)} of "
            f"{len(tuned)} (needed {need})" + (f": {', '.join(f'`{t}`' for t in inside)}" if inside else "")
            + ".")  # fmt: skip
    pairs = [(network, "cosine · defaults"), (zero, "cosine · probe")]
    beyond = {(label, t): seeds for label, ref in pairs for t in result
              if (row := row_of(t, label)) and (other := row_of(t, ref))
              and (seeds := _diverged_beyond(row, other))}  # fmt: skip
    out("- No run diverges that cosine at the same rate does not (non-finite, or below 20 % "
        f"accuracy): {verdict(not beyond)}"
        + ("" if not beyond else ": " + "; ".join(f"{label} on `{t}`, seeds {seeds}"
                                                  for (label, t), seeds in beyond.items()))
        + ".")  # fmt: skip
    ablations = [(f"{network}~progress-only", "loss inputs at 0"),
                 (_bar(network, at_default=True), "fitted WSD (same meta-training)"),
                 (zero, "zero-tuning mode"), ("cosine · defaults", "cosine, same rate")]  # fmt: skip
    out("")
    out("Ablations of the user-rate mode: the network at the target's rate minus each row, mean "
        "of 5 paired seeds [95 % interval] (accuracy in points, perplexity in its units; the "
        "word says whether the network is better).")  # fmt: skip
    out("")
    lines += _ablation_table(network, ablations, result, list(result), metric_of)
    return "\n".join(lines)


def _meta_task(m: MetaTask) -> str:
    """One meta-training family in words (task, fractions, optimizers, label noise)."""
    noise = ", ".join(f"{r:.0%}" for r in m.noise_rates)
    return (f"`{m.task}` on {', '.join(f'{f:.0%}' for f in m.train_fractions)} of its training "
            f"split, {' and '.join(m.optimizers)}, uniform label noise {noise}")  # fmt: skip


def _bar(network: str, at_default: bool) -> str:
    """Ablation (b) of ``network`` (``"mlrsnet-plus:NAME"``): the shipped network's own bar
    (:func:`~mlrsnet.lab.benchmark.plan.plus_bar`), for a network no longer shipped its bar
    when it was (:data:`~mlrsnet.lab.benchmark.plan.RETIRED_PLUS_BARS`), and otherwise the
    WSD family fitted at its base rate."""
    from mlrsnet import plus
    from mlrsnet.lab.benchmark.plan import RETIRED_PLUS_BARS

    name = network.split(":", 1)[1]
    bar = plus_bar(name) if name in plus.pretrained_names() else RETIRED_PLUS_BARS.get(name)
    return bar or ("wsd~fitted-user" if at_default else "wsd~fitted")


def _win_tie_loss_counts(
    result: dict[str, list[Row]], metric_of: dict[str, str]
) -> dict[str, dict[str, list[int]]]:
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: {t: [0, 0, 0] for t in TIERS})
    for target, rows in result.items():
        best = {tier: best_of_tier(rows, tier, metric_of[target]) for tier in TIERS}
        for row in rows:
            for tier, ref in best.items():
                if ref is None or ref is row:
                    continue
                outcome = compare(row, ref, metric_of[target])[3]
                counts[row.label][tier][("win", "tie", "loss").index(outcome)] += 1
    return counts


def _significance(result: dict[str, list[Row]], metric_of: dict[str, str]) -> str:
    """One line per learned schedule and tier: where it is significantly better or worse."""
    if not result:
        return "No target is complete yet."
    lines = []
    learned_labels = sorted({r.label for rows in result.values() for r in rows if not r.baseline})
    for label in learned_labels:
        for tier in TIERS:
            wins, ties, losses = [], [], []
            for target, rows in result.items():
                row = next((r for r in rows if r.label == label), None)
                ref = best_of_tier(rows, tier, metric_of[target])
                if row is None or ref is None:
                    continue
                diff, low, high, outcome = compare(row, ref, metric_of[target])
                {"win": wins, "tie": ties, "loss": losses}[outcome].append(
                    f"`{target}` ({diff:+.2f})"
                )
            lines.append(
                f"- **{label}** vs the best *{tier}* baseline: significantly better on "
                f"{len(wins)} ({', '.join(wins) or 'none'}), not distinguishable on "
                f"{len(ties)}, significantly worse on {len(losses)}"
                + (f" ({', '.join(losses)})" if losses else "")
                + "."
            )
    return "\n".join(lines)


def figures(result: dict[str, list[Row]], out: Path) -> list[Path]:
    """The summary figure (mean ranks) and one figure of curves per complete target.

    ``out`` is the report's own folder: figures from an earlier report are removed first.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # the folder is the report's own: only current figures
        stale.unlink()
    written = []
    metric_of = {t: rows[0].records[0]["metric"] for t, rows in result.items()}
    ranks = rank_table(result, metric_of)
    colors = {"defaults": "tab:gray", "probe": "tab:blue", "tuned": "tab:green"}
    if ranks:
        items = sorted(ranks.items(), key=lambda kv: kv[1][0], reverse=True)
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(items) + 1.2))
        for i, (label, (mean, low, high)) in enumerate(items):
            tier = label.split(" · ")[-1] if " · " in label else "learned"
            color = colors.get(tier, "tab:red")
            ax.errorbar(mean, i, xerr=[[mean - low], [high - mean]], fmt="o", color=color,
                        capsize=2)  # fmt: skip
        ax.set_yticks(range(len(items)), [label for label, _ in items], fontsize=8)
        ax.set_xlabel(f"mean rank over {len(result)} held-out targets (1 = best), 95 % interval")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        path = out / "ranks.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for target, rows in result.items():
        metric = metric_of[target]
        best = [best_of_tier(rows, tier, metric) for tier in TIERS]
        shown = [r for r in best if r is not None] + [r for r in rows if not r.baseline]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        # test metric per epoch where every run has one, else validation (test_eval="end")
        per_epoch = "test" if all(e.get("test_metric") is not None for row in shown
                                  for e in row.records[0]["curve"]["epochs"]) else "val"  # fmt: skip
        for row in shown:
            curve = row.records[0]["curve"]  # seed 0
            kw = {"label": row.label, "lw": 1.2}
            axes[0].plot(curve["step"], curve["lr"], **kw)
            axes[1].plot(curve["step"], curve["loss"], **kw)
            epochs = curve["epochs"]
            axes[2].plot([e["step"] for e in epochs], [e[f"{per_epoch}_metric"] for e in epochs],
                         marker=".", **kw)  # fmt: skip
        axes[0].set(yscale="log", xlabel="step", ylabel="learning rate (seed 0)")
        axes[1].set(yscale="log", xlabel="step", ylabel="training loss (EMA, seed 0)")
        split = "test" if per_epoch == "test" else "validation"
        axes[2].set(xlabel="step", ylabel=f"{split} {metric} (seed 0)")
        if metric == "perplexity":
            axes[2].set_yscale("log")
        axes[2].legend(fontsize=7)
        fig.suptitle(target)
        fig.tight_layout()
        path = out / f"{target}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write(
    out: str | Path,
    targets: list[Target] | tuple[Target, ...],
    page: str | Path,
    *,
    figures_out: Path | None = None,
    quick: bool = False,
    suite: str = "heldout",
    insert_before: str | None = None,
) -> Path:
    """Write the report from ``out/records.jsonl`` into ``page``.

    An existing page keeps everything outside ``suite``'s :func:`markers` (the overhead
    section of BENCHMARKS.md, the other suite's section); where it has no such section yet,
    the section goes before the line ``insert_before`` (a heading), else at the end. A new
    page is the section alone.
    """
    begin, end = markers(suite)
    out, page = Path(out), Path(page)
    records = Records(out / "records.jsonl")
    seeds = (0, 1) if quick else EVAL_SEEDS
    result = tables(records, targets, seeds)
    figures_dir = ""
    if figures_out is not None:
        figures(result, figures_out)
        figures_dir = _relative(figures_out, page.parent)
    section = markdown(result, targets, records, figures_dir=figures_dir, quick=quick)
    text = page.read_text() if page.is_file() else ""
    block = f"{begin}\n{section}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = f"{head}{block}{rest.split(end, 1)[1]}"
    elif text and insert_before and f"\n{insert_before}\n" in text:
        head, tail = text.split(f"\n{insert_before}\n", 1)
        text = f"{head}\n{block}\n\n{insert_before}\n{tail}"
    elif text:
        text = f"{text.rstrip()}\n\n{block}\n"
    else:
        text = f"{block}\n"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    return page


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())
