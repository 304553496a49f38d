"""Which runs make the benchmark: methods × learning-rate tiers × seeds, per target.

Three learning-rate tiers for the baselines:

- *defaults*: the literature default of the optimizer and model (:attr:`Target.lr`; the
  packages' own defaults for Schedule-Free and Prodigy, whose rate means something else);
- *probe*: the base rate from the library's learning-rate range test
  (:func:`mlrsnet.probe.lr_range_test`), run once per target and seed; it separates a
  schedule's shape from its scale. Its steps are counted in the runs' cost;
- *tuned*: the best point of a log grid (:data:`GRID`) around the default, chosen by the
  final metric on the clean validation split (held out of the training data, never the test
  set) on a tuning seed of its own, then run on the evaluation seeds.

The learned schedules (the shipped MLR-SNet networks and the authors' released ones) run with
zero tuning: the paper's scale rule for SGD, the target's default rate for AdamW. Each shipped
MLR-SNet+ network (:data:`PLUS`) runs at the base rate it was meta-trained on
(:func:`plus_base`: the probe's, or the target's default), and as issue 11's ablations
(:func:`plus_variants`): with every input but ``t/T`` held constant (``~progress-only``), and
at the other base rate (``~user-lr`` or ``~probe``); beside them the parametric
warmup-stable-decay family fitted by the same meta-training on the same tasks at the same
base rate (:data:`FITTED_WSD`: ``wsd~fitted`` at the probe's, ``wsd~fitted-user`` at the
default, ``wsd~fitted-user-long`` at the default on runs of 100–2,000 steps,
``wsd~fitted-user-passes`` on such runs drawn by passes over the data too; each network's own
is :func:`plus_bar`).

A run is identified by what it computes (target, method, learning rate, seed), so a tuned
point that equals the default is the same run and is never computed twice.

Example:
    >>> from mlrsnet.lab.benchmark.tasksets import QUICK
    >>> runs, probes = plan(QUICK[:1])
    >>> len(probes), sorted({r.tier for r in runs})
    (5, ['defaults', 'learned', 'probe', 'tuning'])
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlrsnet.lab.benchmark.tasksets import Target

__all__ = [
    "CONVERGENCE_ANCHORS", "CONVERGENCE_PLUS", "CONVERGENCE_PROBED", "EVAL_SEEDS", "FITTED_WSD", "GRID", "LEARNED", "PLUS", "RECOMMENDED_PLUS", "RETIRED_PLUS_BARS", "SHAPES", "TUNED",
    "TUNING_SEED",
    "ProbeSpec", "RunSpec", "cells", "convergence_plus", "defaults_methods", "fitted_wsd", "fitted_wsd_base",
    "learned_methods", "pick", "plan", "plus_bar", "plus_base", "plus_contract", "plus_variants", "split_variant",
    "tuned_run", "uses_probe",
]  # fmt: skip

#: The seeds every reported cell runs on (paired across methods: same data order and init).
EVAL_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: The seed the tuning grid runs on (never an evaluation seed).
TUNING_SEED = 1000
#: The tuning grid: factors of the default learning rate, half a decade apart.
GRID: tuple[float, ...] = (0.1, 0.316, 1.0, 3.16, 10.0)
#: The hand-designed shapes, run at all three tiers.
SHAPES: tuple[str, ...] = ("cosine", "linear", "wsd", "onecycle")
#: The shapes the tuned tier tunes.
TUNED: tuple[str, ...] = ("cosine", "wsd")
#: The learned schedules: shipped networks and the authors' released three.
LEARNED: tuple[str, ...] = ("mlrsnet:fmnist-resnet", "mlrsnet:ptb-lstm", "mlrsnet:authors")
#: The shipped MLR-SNet+ networks the benchmark measures (:func:`mlrsnet.plus.pretrained`).
#: ``v1``–``v4`` were measured there too and are no longer shipped (superseded; their records
#: stay in git and on the short-horizon page).
PLUS: tuple[str, ...] = ("v6",)
#: The bars (:func:`plus_bar`) of the networks no longer shipped, read off their manifests
#: while they were, so the short-horizon page regenerates their ablation (b) unchanged.
RETIRED_PLUS_BARS: dict[str, str] = {"v1": "wsd~fitted", "v2": "wsd~fitted-user",
                                     "v3": "wsd~fitted-user-long", "v4": "wsd~fitted-user-passes"}  # fmt: skip
#: The one of :data:`PLUS` to use, chosen on the held-out targets' validation splits (never
#: their test metric): ``v6`` had the best mean validation rank of the five measured there
#: (docs/plus.md, *Which network to use*).
RECOMMENDED_PLUS = "v6"
#: The MLR-SNet+ networks the convergence suite measures: ``v6`` (the recommended network of
#: the short-horizon suite, user-scaled) and ``v7``, the candidate under the user-rate
#: contract of issue 26, meta-trained on runs trained to their plateau
#: (:data:`~mlrsnet.lab.benchmark.tasksets.META_TRAINING_CONVERGENCE`), in both its modes.
CONVERGENCE_PLUS: tuple[str, ...] = ("v6", "v7")
#: The warmup-stable-decay family fitted by MLR-SNet+'s meta-training (``--family wsd``):
#: each variant's file, whose ``config`` says the tasks and the base rate it was fitted on —
#: the probe's rate (``--base probe``), the task's default rate (``--base user``), and the
#: default rate on runs of 100–2,000 steps (``--base user --min-steps 100 --max-steps 2000``),
#: and on such runs drawn by passes over the data too (``... --passes 1 16``); and ``v7``'s
#: bar: the convergence meta-training set at the user's rate as the peak, scored by the soft
#: error on a validation split (``--task-set convergence --peak 1 --validation --objective
#: soft-error``).
FITTED_WSD: dict[str, Path] = {
    "fitted": Path(__file__).with_name("wsd_fitted.json"),
    "fitted-user": Path(__file__).with_name("wsd_fitted_user.json"),
    "fitted-user-long": Path(__file__).with_name("wsd_fitted_user_long.json"),
    "fitted-user-passes": Path(__file__).with_name("wsd_fitted_user_passes.json"),
    "fitted-user-convergence": Path(__file__).with_name("wsd_fitted_user_convergence.json"),
}
#: The meta-training settings that decide which tasks a run draws and the rate it scales.
_TASK_SETTINGS = ("base", "max_steps", "min_steps", "passes", "quick", "task_set", "peak",
                  "validation", "objective")  # fmt: skip
#: The package defaults of the methods whose rate is not the target's.
_OWN_DEFAULT_LR = {"schedulefree-sgd": 1.0, "schedulefree-adamw": 0.0025, "prodigy": 1.0,
                   "adam": 1e-3, "l4": 0.15, "dadaptation-sgd": 1.0, "dadaptation-adam": 1.0,
                   "dog": 1.0}  # fmt: skip
#: The convergence suite's rows besides the hand shapes: a constant rate and the
#: learning-rate-free methods a practitioner would pick instead of a schedule (``"{family}"``
#: is the target's: ``sgd`` or ``adamw``/``adam``), each at its package's defaults;
#: Mechanic tunes the scale of the target's optimizer at the target's rate.
CONVERGENCE_ANCHORS: tuple[str, ...] = (
    "fixed", "schedulefree-{sf}", "prodigy", "dadaptation-{da}", "dog", "mechanic",
)  # fmt: skip
#: The shapes the convergence suite runs at the probe's rate (the two the tuned tier tunes).
CONVERGENCE_PROBED: tuple[str, ...] = TUNED


@dataclass(frozen=True)
class ProbeSpec:
    """One learning-rate range test: a target's model at ``seed`` under its optimizer."""

    target: str
    seed: int

    @property
    def probe_id(self) -> str:
        return f"{self.target}--probe--s{self.seed}"


@dataclass(frozen=True)
class RunSpec:
    """One training run.

    Attributes:
        target: Target name.
        method: A baseline name or ``mlrsnet:NETWORK``.
        tier: ``"defaults"``, ``"probe"``, ``"tuning"`` (a grid point), ``"tuned"`` or
            ``"learned"``.
        seed: Seed of the model, data order and splits.
        lr: The learning rate (``None``: the probe's, or the paper's rule for MLR-SNet).
        factor: The grid factor of a tuning or tuned run.
    """

    target: str
    method: str
    tier: str
    seed: int
    lr: float | None = None
    factor: float | None = None

    @property
    def run_id(self) -> str:
        """What the run computes: target, method, learning rate (or its source), seed."""
        method = self.method.replace(":", "-").replace("/", "_")
        if uses_probe(self):
            rate = "probe"
        elif self.lr is None:
            rate = "paper"
        else:
            rate = f"lr{self.lr:.4g}"
        return f"{self.target}--{method}--{rate}--s{self.seed}"


def uses_probe(spec: RunSpec) -> bool:
    """Whether ``spec`` runs at its target's probe rate: the probe tier, and a learned method
    other than the faithful MLR-SNet (whose rate is the paper's rule) without a rate of its own.

    Example:
        >>> uses_probe(RunSpec("t", "mlrsnet-plus:v7~probe", "learned", 0))
        True
        >>> uses_probe(RunSpec("t", "mlrsnet:ptb-lstm", "learned", 0))
        False
    """
    if spec.tier == "probe":
        return True
    return spec.tier == "learned" and spec.lr is None and not spec.method.startswith("mlrsnet:")


def split_variant(method: str) -> tuple[str, str]:
    """``"mlrsnet-plus:v7~progress-only"`` → ``("mlrsnet-plus:v7", "progress-only")``.

    Example:
        >>> split_variant("wsd~fitted"), split_variant("cosine")
        (('wsd', 'fitted'), ('cosine', ''))
    """
    schedule, _, variant = method.partition("~")
    return schedule, variant


def fitted_wsd(optimizer: str = "sgd", variant: str = "fitted") -> dict[str, Any] | None:
    """The warmup-stable-decay family of :data:`FITTED_WSD` ``variant`` for a target's
    optimizer (``peak``, ``warmup``, ``cooldown``, ``power``), or ``None`` before it is fitted.
    ``peak`` multiplies the base rate it was fitted at (:func:`fitted_wsd_base`); it is fitted
    per optimizer family (SGD, adaptive), as MLR-SNet+'s scales are.

    Raises:
        ValueError: For a variant not in :data:`FITTED_WSD`.
    """
    path = _fitted_path(variant)
    if not path.is_file():
        return None
    family = "adaptive" if optimizer == "adamw" else "sgd"
    return json.loads(path.read_text())["options"][family]


def fitted_wsd_base(variant: str) -> str:
    """The base rate :data:`FITTED_WSD` ``variant`` was fitted at: ``"probe"`` or ``"user"``
    (its file's ``config.base``; fits made before the setting existed: the probe).

    Example:
        >>> fitted_wsd_base("fitted"), fitted_wsd_base("fitted-user")
        ('probe', 'user')
    """
    return _task_settings(json.loads(_fitted_path(variant).read_text()))["base"]


def _fitted_path(variant: str) -> Path:
    if variant not in FITTED_WSD:
        raise ValueError(f"no fitted WSD family {variant!r}; there are {sorted(FITTED_WSD)}")
    return FITTED_WSD[variant]


def _task_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """What decides a meta-training's tasks and base rate, with the defaults of settings that
    did not exist yet when it ran."""
    from dataclasses import asdict

    from mlrsnet.lab.plus_training import ESConfig

    settings = {**asdict(ESConfig(out="")), **manifest.get("config", {})}
    return {k: settings[k] for k in _TASK_SETTINGS}


def plus_bar(network: str) -> str | None:
    """The fitted WSD family that is shipped MLR-SNet+ ``network``'s bar (issue 11's
    ablation b): the :data:`FITTED_WSD` variant fitted on the same tasks at the same base rate
    (``"wsd~VARIANT"``), or ``None`` when none is.

    Example:
        >>> plus_bar("v6"), plus_bar("v7")
        ('wsd~fitted-user-passes', 'wsd~fitted-user-convergence')
    """
    from mlrsnet import plus

    settings = _task_settings(plus.pretrained(network)[1])
    for variant, path in FITTED_WSD.items():
        if path.is_file() and _task_settings(json.loads(path.read_text())) == settings:
            return f"wsd~{variant}"
    return None


def plus_base(network: str) -> str:
    """The base rate the shipped MLR-SNet+ ``network`` was meta-trained on: ``"probe"`` or
    ``"user"`` (its manifest's ``config.base``; networks made before it existed: the probe).

    Example:
        >>> plus_base("v6")
        'user'
    """
    from mlrsnet import plus

    return _task_settings(plus.pretrained(network)[1])["base"]


def plus_variants(network: str) -> tuple[str, ...]:
    """How the benchmark runs MLR-SNet+ ``network``: as shipped, with its loss inputs held at 0,
    and at the other base rate than its own (issue 11's ablations a and c).

    Example:
        >>> plus_variants("v6")
        ('', '~progress-only', '~probe')
    """
    return ("", "~progress-only", "~user-lr" if plus_base(network) == "probe" else "~probe")


def _allowed(target: Target, method: str) -> bool:
    """Whether ``target`` runs ``method``: every method, or those it names (``"mlrsnet-plus"``
    names every row of an MLR-SNet+ network, its variants included)."""
    if target.methods is None or method in target.methods:
        return True
    return method.startswith("mlrsnet-plus:") and "mlrsnet-plus" in target.methods


def _convergence_learned(target: Target) -> list[tuple[str, float | None]]:
    """The faithful MLR-SNet meta-trained on the target's modality (the shipped Penn Treebank
    network for text; the shipped Fashion-MNIST and the authors' CIFAR networks for images) at
    the paper's rule for SGD or the target's rate for AdamW, and each of
    :data:`CONVERGENCE_PLUS` (:func:`convergence_plus`)."""
    from mlrsnet.lab import tasks

    rate = target.lr if target.optimizer == "adamw" else None
    if tasks.spec(target.task).modality == "text":
        faithful = ["mlrsnet:ptb-lstm"]
    else:
        faithful = ["mlrsnet:fmnist-resnet", "mlrsnet:authors"]
    plus_rows = [row for network in CONVERGENCE_PLUS for row in convergence_plus(target, network)]
    return [(m, rate) for m in faithful] + plus_rows


def convergence_plus(target: Target, network: str) -> list[tuple[str, float | None]]:
    """The convergence suite's rows of MLR-SNet+ ``network``: as shipped at its base rate; and
    for a network under the user-rate contract (issue 26) its two modes and ablations: at the
    target's rate (the user-rate mode), with its loss inputs held at 0 (``~progress-only``:
    does the loss count?), at the probe's rate (``~probe``: the zero-tuning mode), and the
    warmup-stable-decay family fitted by the same meta-training (:func:`plus_bar`), at the
    target's rate times its peak (bounded at the same contract's peak).

    Example:
        >>> from mlrsnet.lab.benchmark.tasksets import CONVERGENCE
        >>> convergence_plus(CONVERGENCE[0], "v6")  # user-scaled: as shipped only
        [('mlrsnet-plus:v6', 0.05)]
    """
    name = f"mlrsnet-plus:{network}"
    if plus_contract(network) != "user-rate":
        return [(name, target.lr if plus_base(network) == "user" else None)]
    rows = [(name, target.lr), (f"{name}~progress-only", target.lr), (f"{name}~probe", None)]
    bar = plus_bar(network)
    return rows if bar is None else [*rows, (bar, target.lr)]


def plus_contract(network: str) -> str:
    """The mode shipped MLR-SNet+ ``network`` is used in (its manifest's ``contract``, or the
    one its settings imply: :func:`mlrsnet.lab.plus_training.contract`).

    Example:
        >>> plus_contract("v6"), plus_contract("v7")
        ('user-scaled', 'user-rate')
    """
    from mlrsnet import plus
    from mlrsnet.lab.plus_training import contract

    manifest = plus.pretrained(network)[1]
    if manifest.get("contract"):
        return str(manifest["contract"])
    return contract(plus_base(network), manifest.get("config", {}).get("peak"))


def learned_methods(target: Target) -> list[tuple[str, float | None]]:
    """The learned tier of ``target``: (method, learning rate) pairs, ``None`` for the paper's
    rule (MLR-SNet with SGD) or the probe's rate (MLR-SNet+ and the fitted WSD family at the
    probe's base rate).

    Example:
        >>> from mlrsnet.lab.benchmark.tasksets import HELD_OUT
        >>> [m for m, _ in learned_methods(HELD_OUT[0])][:3]
        ['mlrsnet:fmnist-resnet', 'mlrsnet:ptb-lstm', 'mlrsnet:authors']
    """
    if target.profile == "convergence":
        return [(m, lr) for m, lr in _convergence_learned(target) if _allowed(target, m)]
    methods = [(m, target.lr if target.optimizer == "adamw" else None) for m in LEARNED]
    for network in PLUS:
        base = plus_base(network)
        for variant in plus_variants(network):
            at_default = variant == "~user-lr" or (base == "user" and variant != "~probe")
            methods.append((f"mlrsnet-plus:{network}{variant}", target.lr if at_default else None))
    for variant, path in FITTED_WSD.items():  # those fitted on short runs (not v7's bar)
        if path.is_file() and _task_settings(json.loads(path.read_text()))["task_set"] is None:
            at_default = fitted_wsd_base(variant) == "user"
            methods.append((f"wsd~{variant}", target.lr if at_default else None))
    return methods


def defaults_methods(target: Target) -> list[tuple[str, float]]:
    """The *defaults* tier of ``target``: (method, learning rate) pairs.

    Example:
        >>> from mlrsnet.lab.benchmark.tasksets import HELD_OUT
        >>> [m for m, _ in defaults_methods(HELD_OUT[7])]
        ['cosine', 'linear', 'wsd', 'onecycle', 'schedulefree-adamw', 'prodigy']
    """
    schedule_free = "schedulefree-adamw" if target.optimizer == "adamw" else "schedulefree-sgd"
    if target.profile == "convergence":
        adaptive = target.optimizer == "adamw"
        names = [m.format(sf="adamw" if adaptive else "sgd", da="adam" if adaptive else "sgd")
                 for m in CONVERGENCE_ANCHORS]  # fmt: skip
        methods = [(m, target.lr) for m in SHAPES]
        methods += [(m, _OWN_DEFAULT_LR.get(m, target.lr)) for m in names]
        return [(m, lr) for m, lr in methods if _allowed(target, m)]
    methods = [(m, target.lr) for m in SHAPES]
    methods += [(m, _OWN_DEFAULT_LR[m]) for m in (schedule_free, "prodigy")]
    methods += [(m, _OWN_DEFAULT_LR.get(m, target.lr)) for m in target.extras]
    return methods


def tuned_run(target: Target, method: str, factor: float, seed: int) -> RunSpec:
    """The tuned tier's run of ``method`` at ``factor`` × the default rate."""
    return RunSpec(target.name, method, "tuned", seed, _grid_lr(target, factor), factor)


def _grid_lr(target: Target, factor: float) -> float:
    return float(f"{target.lr * factor:.4g}")


def plan(
    targets: tuple[Target, ...] | list[Target], seeds: tuple[int, ...] = EVAL_SEEDS
) -> tuple[list[RunSpec], list[ProbeSpec]]:
    """The runs (without the tuned runs, which wait for their grid) and probes of a suite.

    Args:
        targets: The targets.
        seeds: Evaluation seeds (at least 5 for a reported figure).

    Returns:
        ``(runs, probes)``; the tuned tier's runs come from :func:`tuned_run` once the grid
        of their target has finished.
    """
    runs: dict[str, RunSpec] = {}
    probes: list[ProbeSpec] = []

    def add(spec: RunSpec) -> None:
        runs.setdefault(spec.run_id, spec)

    for target in targets:
        probed = CONVERGENCE_PROBED if target.profile == "convergence" else SHAPES
        for seed in seeds:
            for method, lr in defaults_methods(target):
                add(RunSpec(target.name, method, "defaults", seed, lr))
            seed_runs = [RunSpec(target.name, m, "probe", seed) for m in probed
                         if _allowed(target, m)]  # fmt: skip
            seed_runs += [RunSpec(target.name, m, "learned", seed, lr)
                          for m, lr in learned_methods(target)]  # fmt: skip
            if any(uses_probe(r) for r in seed_runs):
                probes.append(ProbeSpec(target.name, seed))
            for spec in seed_runs:
                add(spec)
        for method in TUNED if target.tuned_at is None else ():
            for factor in GRID:
                add(RunSpec(target.name, method, "tuning", TUNING_SEED,
                            _grid_lr(target, factor), factor))  # fmt: skip
    return list(runs.values()), probes


def cells(target: Target) -> set[tuple[str, str]]:
    """The ``(method, tier)`` cells a report of ``target`` shows: its planned runs' (the tuning
    grid aside) and the tuned tier's.

    Example:
        >>> from mlrsnet.lab.benchmark.tasksets import QUICK_CONVERGENCE
        >>> sorted(cells(QUICK_CONVERGENCE[2]))
        [('cosine', 'tuned'), ('wsd', 'tuned')]
    """
    runs, _ = plan([target], seeds=(0,))
    return {(r.method, r.tier) for r in runs if r.tier != "tuning"} | {(m, "tuned") for m in TUNED}


def pick(
    runs: list[RunSpec], probes: list[ProbeSpec], methods: Iterable[str]
) -> tuple[list[RunSpec], list[ProbeSpec]]:
    """The runs of ``methods`` among :func:`plan`'s, and the probes they use.

    Raises:
        ValueError: For a method none of ``runs`` has.
    """
    methods = set(methods)
    unknown = sorted(methods - {r.method for r in runs})
    if unknown:
        raise ValueError(f"no target plans method(s) {', '.join(unknown)}")
    runs = [r for r in runs if r.method in methods]
    used = {ProbeSpec(r.target, r.seed).probe_id for r in runs if uses_probe(r)}
    return runs, [p for p in probes if p.probe_id in used]


def estimated_seconds(target: Target, spec: RunSpec | ProbeSpec) -> float:
    """Estimated single-core seconds of ``spec`` (a probe costs 100 steps of training)."""
    if isinstance(spec, ProbeSpec):
        return target.seconds * min(1.0, 100 / max(_steps(target), 1))
    factor = 3.0 if spec.method == "rtho" else 1.0  # a Hessian-vector product per step
    return target.seconds * factor


def _steps(target: Target) -> int:
    """Rough steps of a run (for the probe's share of the cost)."""
    sizes = {"fmnist": 59000 / 128, "shakespeare": 1_003_854 / (32 * 64), "ptb": 929_589 / 700}
    per_epoch = next((v for k, v in sizes.items() if target.task.startswith(k)), 50.0)
    return max(1, math.ceil(per_epoch * target.train_fraction)) * target.epochs
