"""Meta-train MLR-SNet+ over whole training runs by antithetic evolution strategies.

Each iteration draws ``pairs`` task instances from the benchmark's *meta-training* set
(:data:`mlrsnet.lab.benchmark.tasksets.META_TRAINING`: the task, its training fraction, SGD
with momentum or AdamW, uniform label noise, a length drawn log-uniformly), takes its base
rate (the library's probe, run once per instance, or with ``base="user"`` the rate a user of
the task types: :func:`user_lr`), and trains each instance twice, with the network's
weights ``θ + σε`` and ``θ − σε`` (the same seed, so the same initialisation and data order).
The objective is the log of the final loss on the instance's *clean* validation split (or,
with ``objective="error"``, the log of its final error: :func:`run_objective`) — the whole
run's outcome, not a one-step lookahead, so no short-horizon bias — and the ES estimate

    g = Σ_k d_k ε_k / (2 σ K),   d_k = f(θ + σ ε_k) − f(θ − σ ε_k)

(Salimans et al. 2017; unbiased for the Gaussian-smoothed objective over whole runs, the
"ES-Single" estimator of Vicol et al. 2023 with one perturbation per run) drives Adam on ``θ``.
With ``shaping`` (the default) each difference is divided by the median ``|d_k|`` of its
iteration and clipped to ±3 (:func:`shape_differences`): one diverged run, whose objective
jumps by several units, then moves ``θ`` no more than a few ordinary pairs do. Adam divides
by the gradient's scale anyway, so only the outliers' weight changes.
``θ`` starts at :meth:`mlrsnet.plus.PlusNet.from_shape` (hold, then a 1 − √ cooldown), at
another network (``init``), or (``prior``) at a fitted WSD family that a residual network
corrects: then ``θ`` is the correction's weights only, and ES starts at the family's solution.

The runs are Ray tasks (a local cluster by default, ``address`` for a running one); the
state is checkpointed after every iteration (``state.json``), so a killed meta-training
resumes at its last finished iteration; ``history.jsonl`` has one line per iteration.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlrsnet import plus
from mlrsnet.atomic import atomic_write
from mlrsnet.checks import number
from mlrsnet.lab.executor import start_ray, text_data_dir
from mlrsnet.lab.probing import probe_task, training_batches
from mlrsnet.lab.rundir import versions

__all__ = [
    "BASES", "DIVERGED", "OBJECTIVES", "WSD_START", "ESConfig", "contract", "es_gradient",
    "evaluate", "flat_params", "meta_train", "probe", "residual_start", "run_objective",
    "sample_instance", "scoring_size", "set_params", "shape_differences", "start_network",
    "steps_per_pass", "user_lr", "with_early_stop_unit", "with_peaks", "wsd_options",
]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ESConfig:
    """Settings of a meta-training.

    Attributes:
        out: The folder of the state, the history and the network.
        iterations: The ES iteration to stop at. It is the one setting a folder may be
            resumed with another value of (besides ``out``: a moved folder resumes): more
            iterations go on, and the iteration the folder stands at writes its network
            without training.
        pairs: Antithetic pairs (task instances) per iteration.
        sigma: Standard deviation of the perturbations.
        meta_lr: Adam's step on ``θ``.
        hidden: Hidden units of the network.
        seed: Seed of everything.
        max_steps: The longest run drawn (lengths are log-uniform in each family's
            :attr:`~mlrsnet.lab.benchmark.tasksets.MetaTask.steps`, capped by this).
        min_steps: When given, every family's lengths are log-uniform between this and
            ``max_steps`` instead (longer runs than the families declare, e.g. the held-out
            targets' range of lengths).
        passes: When given (``(low, high)``), runs are drawn from
            :data:`~mlrsnet.lab.benchmark.tasksets.META_TRAINING_BY_PASSES` by passes over
            the data as well as by length (:func:`sample_instance`): passes log-uniform in
            ``[low, high]``, a length log-uniform in ``[min_steps, max_steps]``, and the
            family's training fraction whose passes come nearest that length.
        quick: Digits tasks only and short runs (the ``--quick`` test).
        monitor_every: Every this many iterations (and after the first), the network is
            scored on fixed monitor instances against warmup-stable-decay at the same probe
            rate: ``monitor_log_ratio`` is the mean of ``log(L_net / L_wsd)`` (below 0: the
            network ends at a lower validation loss).
        monitor_instances: How many fixed instances the monitor uses.
        monitor_schedule: The hand schedule the monitor scores the network against, at the
            same base rate (``"cosine"``: the schedule a user would replace at convergence).
        family: ``"plus"`` (the network) or ``"wsd"``: the parametric warmup-stable-decay
            family (:func:`wsd_options`) fitted by the same ES on the same tasks: the bar
            the network must clear (issue 11's ablation b).
        shaping: Divide each iteration's antithetic differences by their median magnitude
            and clip them to ±3 (:func:`shape_differences`).
        base: The base rate every run scales: ``"probe"`` (the library's probe, run once per
            instance; its cost is not part of the objective) or ``"user"`` (the rate a user
            of the task types: :func:`user_lr`). The shipped network declares it, and the
            benchmark runs it at that rate.
        init: Start from this network (a shipped name or a file, :func:`mlrsnet.plus.resolve`)
            instead of :meth:`mlrsnet.plus.PlusNet.from_shape`; its width must be ``hidden``.
        init_peaks: A fitted WSD family's file (``wsd.json`` of a ``family="wsd"`` run):
            start with the network's scales set so that each optimizer family's first rate
            is that family's fitted peak times the base rate (:func:`with_peaks`).
        prior: A fitted WSD family's file: meta-train a *residual* network
            (:meth:`mlrsnet.plus.PlusNet.residual`) that is this family times a bounded
            correction, starting at exactly the family (the correction 1); ES learns the
            correction only (:func:`residual_start`).
        limit: The residual correction's bound (``[1/limit, limit]``).
        task_set: ``None``: :data:`~mlrsnet.lab.benchmark.tasksets.META_TRAINING`, or with
            ``passes`` :data:`~mlrsnet.lab.benchmark.tasksets.META_TRAINING_BY_PASSES`;
            ``"convergence"``: :data:`~mlrsnet.lab.benchmark.tasksets.META_TRAINING_CONVERGENCE`,
            drawn by ``passes`` (which it needs), for runs trained up to their plateau.
        peak: Meta-train under the user-rate contract: every run's rate is bounded at this
            multiple of its base rate (:class:`mlrsnet.plus.MLRSNetPlusLR`'s ``peak``; 1.0:
            the base rate is the peak), so the network learns the schedule below it and is
            used with the same bound (``None``: the network's own bound). The network
            declares it (:attr:`mlrsnet.plus.PlusNet.peak`), so it is used with it by default.
            With ``family="wsd"`` the fitted family's peak is bounded the same way (the bar
            of a network meta-trained under it).
        validation: Meta-train a network that reads a validation loss
            (:func:`mlrsnet.plus.validation_inputs`): every run's meta split is cut in two
            disjoint halves, the first given to the network at every epoch end (as a user
            gives their held-out split's loss), the second scoring the run (for every run,
            the monitor's reference included, so the objectives compare). With
            ``family="wsd"`` (which reads none) the second half scores every run, as the
            network it is the bar of is scored.
        prior_shape: ``(warmup, cooldown, power)``: meta-train a residual network of this
            warmup-stable-decay prior (:class:`mlrsnet.plus.Prior`, bound ``limit``) at 1x
            the base rate for both optimizer families, e.g. ``(0.02, 0.98, 1.0)``: linear to
            zero after a short warmup. The alternative to ``prior`` (a fitted family's file).
        objective: What a run is scored by (:func:`run_objective`): ``"loss"``, the log of
            the final validation loss, or ``"error"``, the log of the final validation error
            (classification; a language model is scored by its loss either way). Under label
            noise the validation loss can fall while the accuracy falls (a memorising model
            grows less confident on the examples it gets wrong), so the loss rewards a
            schedule that memorises; the error is what the user reads. ``"soft-error"``
            scores the mean of 1 − p(true class) instead: bounded like the error, but not
            quantised by single examples on small scoring splits (100 examples on digits);
            it also scores confidence, so under label noise it still prefers the confident
            model that memorised to a less confident one that is right more often.
            ``"sharp-error"`` scores the same of the logits over 0.25
            (``Task.evaluate``'s ``sharp_error``): near the error, and smooth near the
            decision boundary only.
        early_stop_unit: ``(rise, threshold, weight)``: before meta-training starts, two of
            the start network's least-used hidden units are rewired into a thresholded
            response to the validation loss rising above its best
            (:func:`with_early_stop_unit`; a negative ``weight`` lowers the rate, as early
            stopping would). ES then keeps, changes or undoes it like every weight. Needs
            ``validation``.
    """

    out: str
    iterations: int = 200
    pairs: int = 8
    sigma: float = 0.05
    meta_lr: float = 0.01
    hidden: int = 16
    seed: int = 0
    max_steps: int = 600
    min_steps: int | None = None
    passes: tuple[float, float] | None = None
    quick: bool = False
    monitor_every: int = 10
    monitor_instances: int = 6
    monitor_schedule: str = "wsd"
    family: str = "plus"
    shaping: bool = True
    base: str = "probe"
    init: str | None = None
    init_peaks: str | None = None
    prior: str | None = None
    limit: float = 2.0
    task_set: str | None = None
    peak: float | None = None
    validation: bool = False
    prior_shape: tuple[float, float, float] | None = None
    objective: str = "loss"
    early_stop_unit: tuple[float, float, float] | None = None


#: The base-rate rules of :attr:`ESConfig.base`.
BASES: tuple[str, ...] = ("probe", "user")

#: What a run may be scored by (:attr:`ESConfig.objective`, :func:`run_objective`).
OBJECTIVES: tuple[str, ...] = ("loss", "error", "soft-error", "sharp-error")

#: The objective of a run whose loss is not finite (or not positive).
DIVERGED = 10.0


#: The WSD family's parameters at the start: peak 1x (both optimizer families), about 0.4 %
#: warmup, 20 % cooldown, 1 − √.
WSD_START = np.array([0.0, -4.0, math.log(0.25 / 0.75), math.log(0.5), 0.0])


def contract(base: str, peak: float | None) -> str:
    """The mode a network meta-trained at ``base`` rates under the bound ``peak`` is used in.

    - ``"user-rate"``: the base is the user's rate and the network never exceeds ``peak``
      times it (1.0: the user's rate is the peak, as with every torch scheduler);
    - ``"user-scaled"``: the base is the user's rate, but the network sets its own peak, a
      learned multiple of it (``v6``);
    - ``"zero-tuning"``: the base is the library's probe (``--lr probe``), the user sets none.

    Example:
        >>> contract("user", 1.0), contract("user", None), contract("probe", 1.0)
        ('user-rate', 'user-scaled', 'zero-tuning')
    """
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    if base == "probe":
        return "zero-tuning"
    return "user-scaled" if peak is None else "user-rate"


def wsd_options(
    theta: np.ndarray, family: str = "sgd", bound: float | None = None
) -> dict[str, float]:
    """The WSD family's schedule for an optimizer family, from its 5 parameters (unconstrained,
    so ES can move freely).

    ``peak = exp(θ0)`` (SGD) or ``exp(θ4)`` (adaptive optimizers: their probe errs the other
    way, as MLR-SNet+'s family scales) multiplies the base rate, at most ``bound`` times it
    where one is given (:attr:`ESConfig.peak`: the user-rate contract the network is held to);
    ``warmup = 0.2 σ(θ1)``; ``cooldown = 0.8 σ(θ2)``; ``power = exp(θ3)`` shapes the
    ``1 - s**power`` cooldown.

    Example:
        >>> {k: round(v, 3) for k, v in wsd_options(WSD_START, "adaptive").items()}
        {'peak': 1.0, 'warmup': 0.004, 'cooldown': 0.2, 'power': 0.5}
        >>> wsd_options(np.r_[1.0, WSD_START[1:]], "sgd", bound=1.0)["peak"]
        1.0
    """
    if family not in plus.OPTIMIZER_FAMILIES:
        raise ValueError(f"family must be one of {plus.OPTIMIZER_FAMILIES}, got {family!r}")
    theta = np.asarray(theta, dtype=np.float64)
    sigmoid = lambda x: 1.0 / (1.0 + math.exp(-max(min(float(x), 60.0), -60.0)))  # noqa: E731
    log_peak = theta[0] if family == "sgd" else theta[4]
    peak = math.exp(max(min(float(log_peak), 5.0), -5.0))
    return {
        "peak": peak if bound is None else min(peak, bound),
        "warmup": 0.2 * sigmoid(theta[1]),
        "cooldown": 0.8 * sigmoid(theta[2]),
        "power": math.exp(max(min(float(theta[3]), 3.0), -3.0)),
    }


def with_peaks(net: plus.PlusNet, peaks: dict[str, float]) -> plus.PlusNet:
    """Set ``net``'s scales so that a run's first rate is ``peaks[family]`` times its base rate
    (``s_f · m_0 = peak``, ``m_0`` the multiplier at the start, before any loss); returns ``net``.

    Example:
        >>> net = with_peaks(plus.PlusNet.from_shape(hidden=4), {"sgd": 2.0, "adaptive": 0.5})
        >>> m0 = plus.multiplier(net.numpy_params(), plus.features(plus.init_state(), 0, 100))
        >>> round(net.scale("sgd") * m0, 6), round(net.scale("adaptive") * m0, 6)
        (2.0, 0.5)

    Raises:
        ValueError: For a family not in :data:`mlrsnet.plus.OPTIMIZER_FAMILIES` or a peak
            that is not a positive number.
    """
    m0 = plus.multiplier(net.numpy_params(), plus.features(plus.init_state(), 0, 1))
    with torch.no_grad():
        for family, peak in peaks.items():
            if family not in plus.OPTIMIZER_FAMILIES:
                raise ValueError(f"family must be one of {plus.OPTIMIZER_FAMILIES}, got {family!r}")
            if not (isinstance(peak, (int, float)) and math.isfinite(peak) and peak > 0):
                raise ValueError(f"the {family} peak must be a positive number, got {peak!r}")
            index = plus.OPTIMIZER_FAMILIES.index(family)
            net.log_scale[index] = math.log(peak / m0)
    return net


def with_early_stop_unit(
    net: plus.PlusNet, rise: float, threshold: float, weight: float
) -> plus.PlusNet:
    """A copy of ``net`` whose two least-used hidden units (the smallest output weights in
    absolute value) are rewired into a thresholded response to a validation loss risen above
    its best, ``r = clip(log(last / best), 0, 1)`` (:func:`mlrsnet.plus.validation_inputs`):
    they add ``weight · (tanh(rise · r − threshold · seen) − tanh(−threshold · seen))`` to
    the output, ``seen`` being 1 once a validation loss was given. That is 0 while every
    validation loss is a new best (up to rounding; exactly for a user who gives none), near
    0 for a small rise (noise: ``rise · r`` well under ``threshold``), and near ``weight``
    once the loss has risen by about ``threshold / rise`` in log (memorisation): a negative
    ``weight`` then
    lowers the rate, as early stopping would. (How long ago the best was is not read: it
    grows between two validation losses even when each is a new best.)

    Example:
        >>> net = with_early_stop_unit(plus.PlusNet(hidden=4, validation=True), 10.0, 2.0, -2.0)
        >>> _, _, w2, _ = net.numpy_params()
        >>> sorted(w2.round(3).tolist())[:1], sorted(w2.round(3).tolist())[-1:]
        ([-2.0], [2.0])

    Raises:
        ValueError: For a network that reads no validation loss, or with fewer than two units.
    """
    if not net.reads_validation:
        raise ValueError("an early-stopping unit reads the validation inputs: the network "
                         "reads none (validation=False)")  # fmt: skip
    if net.hidden < 2:
        raise ValueError(
            f"an early-stopping unit rewires two hidden units; the network has {net.hidden}"
        )
    out = copy.deepcopy(net)
    seen, risen = plus.NUM_FEATURES, plus.NUM_FEATURES + 1  # the validation inputs follow
    with torch.no_grad():
        response, offset = out.layer2.weight.abs().reshape(-1).argsort()[:2].tolist()
        for unit in (response, offset):
            out.layer1.weight[unit].zero_()
            out.layer1.bias[unit] = 0.0
            out.layer1.weight[unit, seen] = -threshold
        out.layer1.weight[response, risen] = rise
        out.layer2.weight[0, response] = weight
        out.layer2.weight[0, offset] = -weight
    return out


def residual_start(
    path: str | os.PathLike[str],
    *,
    hidden: int,
    seed: int = 0,
    limit: float = 2.0,
    validation: bool = False,
    peak: float | None = None,
) -> plus.PlusNet:
    """The residual network that starts as the WSD family fitted in ``path`` (the ``wsd.json``
    of a ``family="wsd"`` meta-training): its shape as the prior, its peaks as the scales
    (``validation`` and ``peak`` as for :meth:`mlrsnet.plus.PlusNet.residual`).

    Raises:
        ValueError: If the file's optimizer families do not share one shape (the family's
            warmup, cooldown and power are common to both: :func:`wsd_options`).
    """
    options = json.loads(Path(path).read_text())["options"]
    shape = {k: v for k, v in options["sgd"].items() if k != "peak"}
    if any({k: v for k, v in o.items() if k != "peak"} != shape for o in options.values()):
        raise ValueError(f"{path}: the optimizer families' shapes differ; a prior has one")
    prior = plus.Prior(shape["warmup"], shape["cooldown"], shape["power"], limit)
    peaks = {family: options[family]["peak"] for family in plus.OPTIMIZER_FAMILIES}
    return plus.PlusNet.residual(prior, peaks, hidden=hidden, seed=seed, validation=validation,
                                 peak=peak)  # fmt: skip


def start_network(config: ESConfig) -> plus.PlusNet:
    """The network ``config`` meta-trains, before its weights are set: a residual network of
    ``config.prior`` or ``config.prior_shape`` starting at exactly its prior, else a plain one;
    reading a validation loss where ``config.validation``, declaring ``config.peak``.

    Example:
        >>> net = start_network(ESConfig(out="x", hidden=4, validation=True, peak=1.0,
        ...                              prior_shape=(0.02, 0.98, 1.0)))
        >>> net.num_inputs, net.peak, round(net.prior.cooldown, 6)
        (17, 1.0, 0.98)
    """
    options = {"validation": config.validation, "peak": config.peak}
    if config.prior is not None:
        return residual_start(config.prior, hidden=config.hidden, seed=config.seed,
                              limit=config.limit, **options)  # fmt: skip
    if config.prior_shape is not None:
        prior = plus.Prior(*config.prior_shape, limit=config.limit)
        return plus.PlusNet.residual(prior, dict.fromkeys(plus.OPTIMIZER_FAMILIES, 1.0),
                                     hidden=config.hidden, seed=config.seed, **options)  # fmt: skip
    return plus.PlusNet(hidden=config.hidden, **options)


def flat_params(net: plus.PlusNet) -> np.ndarray:
    """The network's weights as one float64 vector (a residual network's: its correction's)."""
    return np.concatenate([p.detach().double().reshape(-1).numpy() for p in net.parameters()])


def set_params(net: plus.PlusNet, theta: np.ndarray) -> plus.PlusNet:
    """Load the vector ``theta`` into ``net`` (in :func:`flat_params` order); returns ``net``."""
    size = sum(p.numel() for p in net.parameters())
    if theta.size != size:
        raise ValueError(f"theta has {theta.size} values, the network {size}")
    offset = 0
    with torch.no_grad():
        for p in net.parameters():
            n = p.numel()
            p.copy_(torch.as_tensor(theta[offset : offset + n]).reshape(p.shape))
            offset += n
    return net


def sample_instance(
    rng: np.random.Generator, config: ESConfig, data_dir: str | None = None
) -> dict[str, Any]:
    """A task instance from the meta-training set: what a run trains and for how long.

    With ``config.passes`` the run is drawn by passes over the data: passes ``p`` and a length
    ``s`` log-uniform in their ranges, then the family's training fraction whose ``p`` passes
    come nearest ``s`` steps (in log); the run is ``p`` passes of that fraction, kept within
    the length range (a small dataset's run is then more passes), and its realised ``passes``
    are recorded.
    """
    from mlrsnet.lab.benchmark import tasksets

    if config.task_set == "convergence":
        task_set = tasksets.META_TRAINING_CONVERGENCE
    elif config.passes is None:
        task_set = tasksets.META_TRAINING
    else:
        task_set = tasksets.META_TRAINING_BY_PASSES
    families = [m for m in task_set if not config.quick or m.task.startswith("digits")]
    family = families[int(rng.integers(len(families)))]
    noise = float(family.noise_rates[int(rng.integers(len(family.noise_rates)))])
    if config.min_steps is None:
        low = family.steps[0]
        high = max(low, min(family.steps[1], config.max_steps))
    else:
        low, high = config.min_steps, config.max_steps
    steps = int(math.exp(rng.uniform(math.log(low), math.log(high))))
    fraction = float(family.train_fractions[int(rng.integers(len(family.train_fractions)))])
    instance = {
        "task": family.task,
        "train_fraction": fraction,
        "optimizer": family.optimizers[int(rng.integers(len(family.optimizers)))],
        "noise_rate": noise,
        "steps": steps,
        "seed": int(rng.integers(2**31 - 1)),
    }  # fmt: skip
    if config.passes is not None:
        passes = math.exp(rng.uniform(math.log(config.passes[0]), math.log(config.passes[1])))
        per_pass = {f: steps_per_pass(family.task, f, data_dir) for f in family.train_fractions}
        fraction = min(per_pass, key=lambda f: abs(math.log(passes * per_pass[f] / steps)))
        instance["train_fraction"] = fraction
        instance["steps"] = max(low, min(high, round(passes * per_pass[fraction])))
        instance["passes"] = instance["steps"] / per_pass[fraction]
    return instance


@functools.lru_cache(maxsize=64)
def steps_per_pass(task: str, train_fraction: float, data_dir: str | None = None) -> int:
    """Optimizer steps of one pass over ``task``'s training split at ``train_fraction``.

    Example:
        >>> steps_per_pass("digits-mlp", 1.0)
        18
    """
    from mlrsnet.lab import tasks

    built = tasks.get(task, data_dir=text_data_dir(task, data_dir), train_fraction=train_fraction)
    return len(built.train_loader(built.batch_size))


def _task(instance: dict[str, Any], data_dir: str | None) -> Any:
    from mlrsnet.lab import tasks

    text = tasks.spec(instance["task"]).modality == "text"
    noise = instance["noise_rate"] > 0 and not text
    return tasks.get(instance["task"], data_dir=text_data_dir(instance["task"], data_dir),
                     seed=instance["seed"], train_fraction=instance["train_fraction"],
                     noise="uniform" if noise else None,
                     noise_rate=instance["noise_rate"] if noise else 0.0)  # fmt: skip


def probe(instance: dict[str, Any], data_dir: str | None = None) -> dict[str, Any]:
    """The library's probe on a task instance: its base rate, as :func:`evaluate` finds it.

    Returns:
        ``{"base_lr", "probe_steps", "seconds"}``.
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    task = _task(instance, data_dir)
    model = task.build_model(seed=instance["seed"])
    model.train()
    result = probe_task(task, model, instance["optimizer"], instance["seed"] + 1)
    return {"base_lr": result.lr, "probe_steps": result.steps,
            "seconds": time.perf_counter() - started}  # fmt: skip


def user_lr(instance: dict[str, Any]) -> float:
    """The rate a user of the instance's task types, as the benchmark's *defaults* tier sets
    it: the task's registry default with SGD (:attr:`~mlrsnet.lab.tasks.TaskSpec.lr`), and
    AdamW's default (:func:`mlrsnet.lab.baselines.default_lr`) with AdamW.

    Example:
        >>> user_lr({"task": "digits-mlp", "optimizer": "sgd"}), user_lr({"task": "digits-mlp", "optimizer": "adamw"})
        (0.05, 0.001)
    """
    from mlrsnet.lab import baselines, tasks

    if instance["optimizer"] == "adamw":
        return baselines.default_lr("adamw")
    return float(tasks.spec(instance["task"]).lr)


def _base_lrs(config: ESConfig, instances: list[dict[str, Any]], probe_remote: Any,
              data_dir: str | None) -> list[float]:  # fmt: skip
    """The base rate of every instance under ``config.base`` (the probes run in parallel)."""
    import ray

    if config.base == "user":
        return [user_lr(inst) for inst in instances]
    return [
        p["base_lr"] for p in ray.get([probe_remote.remote(inst, data_dir) for inst in instances])
    ]


def _family(optimizer: str) -> str:
    """The :data:`~mlrsnet.plus.OPTIMIZER_FAMILIES` entry of a task's optimizer name."""
    return "adaptive" if optimizer == "adamw" else "sgd"


def evaluate(
    instance: dict[str, Any],
    theta: np.ndarray | None,
    *,
    hidden: int = 16,
    base_lr: float | None = None,
    data_dir: str | None = None,
    schedule: str = "mlrsnet-plus",
    template: plus.PlusNet | None = None,
    peak: float | None = None,
    validation: bool = False,
    objective: str = "loss",
) -> dict[str, Any]:
    """Train one task instance with the network ``theta`` (or a baseline ``schedule``).

    Args:
        instance: From :func:`sample_instance`.
        theta: The network's weights (``None`` for a baseline schedule).
        hidden: The network's width.
        base_lr: The base rate; ``None`` runs the probe first (its cost is returned).
        data_dir: Root of the text data.
        schedule: ``"mlrsnet-plus"``, ``"wsd-family"`` (``theta`` from :func:`wsd_options`)
            or a baseline name (``"wsd"``, ``"cosine"``, ...).
        template: The network ``theta`` goes into (a copy of it; by default a plain
            ``PlusNet(hidden)``): a residual network's prior and scales come from here.
        peak: The network's rate bound, a multiple of ``base_lr`` (:attr:`ESConfig.peak`).
        validation: Cut the meta split in two disjoint halves (:attr:`ESConfig.validation`):
            a schedule that reads a validation loss (``needs_val_loss``) is given the first
            half's at every epoch end, and the second half scores the run. Without it the
            whole meta split scores the run, and no schedule is given a validation loss (a
            network that reads one then reads 0: the ablation).
        objective: What scores the run (:func:`run_objective`): ``"loss"`` or ``"error"``.

    Returns:
        ``{"val_loss", "val_metric", "objective" (:func:`run_objective`), "soft_error",
        "sharp_error" (``None`` for text), "base_lr", "probe_steps", "seconds"}``.
    """
    from mlrsnet.lab import baselines
    from mlrsnet.lab.tasks.types import call_model

    torch.set_num_threads(1)
    started = time.perf_counter()
    task = _task(instance, data_dir)
    seed = instance["seed"]
    model = task.build_model(seed=seed)
    model.train()
    probe_steps = 0
    if base_lr is None:
        result = probe_task(task, model, instance["optimizer"], seed + 1)
        base_lr, probe_steps = result.lr, result.steps
    options: dict[str, Any] = {"optimizer": instance["optimizer"]}
    lr = base_lr
    if schedule == "mlrsnet-plus":
        net = plus.PlusNet(hidden=hidden) if template is None else copy.deepcopy(template)
        options["network"] = set_params(net, np.asarray(theta))
        options["peak"] = peak
    elif schedule == "wsd-family":
        family = wsd_options(np.asarray(theta), _family(instance["optimizer"]), bound=peak)
        schedule, lr = "wsd", base_lr * family.pop("peak")
        options.update(family)
    method = baselines.build(schedule, model.parameters(), lr=lr, momentum=task.momentum,
                             weight_decay=task.weight_decay, total_steps=instance["steps"],
                             steps_per_epoch=max(1, len(task.train_loader(task.batch_size))),
                             grad_clip=task.grad_clip, **options)  # fmt: skip
    torch.manual_seed(seed)
    carry: Any = None
    last_epoch = 0
    stream = training_batches(task, seed)
    feeds_validation = validation and method.needs_val_loss
    for _ in range(instance["steps"]):
        epoch, inputs, targets = next(stream)
        if epoch != last_epoch:
            carry, last_epoch = None, epoch
            if feeds_validation:
                method.eval()
                method.epoch_end(task.evaluate(model, split="meta", part=(0, 2))["loss"])
                method.train()
        outputs = call_model(model, task.model_inputs(inputs, carry))
        method.step(task.loss_fn(outputs, targets))
        carry = task.next_carry(outputs)
    method.eval()
    part = (1, 2) if validation else None
    scored = task.evaluate(model, split="meta", part=part)
    text = task.modality == "text"
    score = run_objective(objective, scored["loss"], scored["metric"], language_model=text,
                          soft_error=scored.get("sharp_error" if objective == "sharp-error"
                                               else "soft_error"),
                          size=1 if text else scoring_size(task, part))  # fmt: skip
    return {"val_loss": scored["loss"], "val_metric": scored["metric"], "objective": score,
            "soft_error": scored.get("soft_error"), "sharp_error": scored.get("sharp_error"),
            "base_lr": base_lr, "probe_steps": probe_steps,
            "seconds": time.perf_counter() - started}  # fmt: skip


def run_objective(
    kind: str,
    loss: float,
    metric: float,
    *,
    size: int,
    language_model: bool = False,
    soft_error: float | None = None,
) -> float:
    """What one run scores (lower is better): the ES objective of :attr:`ESConfig.objective`.

    ``"loss"``: ``log(loss)``, or :data:`DIVERGED` when the loss is not finite. ``"error"``
    (classification): ``log(1 − accuracy + 1/size)``, where ``size`` is how many examples
    scored the run: the ``1/size`` (one example's worth) keeps a perfect run finite, so the
    objective stays a log ratio between the two runs of a pair; a diverged run (its loss or
    accuracy not finite) scores the worst, ``log(1 + 1/size)``. A language model's metric is
    a perplexity, so it is scored by its loss under either kind. ``"soft-error"``
    (classification): ``log(soft_error + 1/size)``, the error with each example counted by the
    probability the model does not give its true class (``Task.evaluate``'s ``soft_error``):
    bounded per example like the error, so memorising noisy labels is not rewarded as the
    loss rewards it, but smooth in the weights, so two runs of a pair on 100 examples differ
    by less than one example's flip when their schedules barely differ. ``"sharp-error"``:
    the same formula, given the soft error of the logits over
    :data:`~mlrsnet.lab.tasks.types.SHARP_TEMPERATURE` (``Task.evaluate``'s
    ``sharp_error``), which does not reward confidence beyond a logit's margin.

    Example:
        >>> round(run_objective("error", 0.4, 0.9, size=100), 4)  # log(0.1 + 0.01)
        -2.2073
        >>> round(run_objective("soft-error", 0.4, 0.9, size=100, soft_error=0.15), 4)
        -1.8326
        >>> run_objective("loss", float("nan"), 0.1, size=100)
        10.0
    """
    if kind not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {kind!r}")
    if kind == "loss" or language_model:
        return math.log(loss) if math.isfinite(loss) and loss > 0 else DIVERGED
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if kind in ("soft-error", "sharp-error"):
        if soft_error is None:
            raise ValueError(f"the {kind} objective needs the run's soft error")
        error = soft_error if math.isfinite(loss) and math.isfinite(soft_error) else 1.0
    else:
        error = 1.0 - metric if math.isfinite(loss) and math.isfinite(metric) else 1.0
    return math.log(min(max(error, 0.0), 1.0) + 1.0 / size)


def scoring_size(task: Any, part: tuple[int, int] | None) -> int:
    """How many examples of ``task``'s meta split score a run (its ``part`` of it, if given).

    Example:
        >>> from mlrsnet.lab import tasks
        >>> task = tasks.get("digits-mlp")
        >>> scoring_size(task, None) == 2 * scoring_size(task, (1, 2))
        True
    """
    from mlrsnet.lab.tasks.types import split_part

    indices = task.meta_indices
    return int((indices if part is None else split_part(indices, part)).numel())


def es_gradient(differences: np.ndarray, noise: np.ndarray, sigma: float) -> np.ndarray:
    """The antithetic ES estimate ``Σ_k d_k ε_k / (2 σ K)`` from ``d_k = f(θ + σε_k) − f(θ − σε_k)``.

    Example:
        >>> eps = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> es_gradient(np.array([0.2, -0.2]), eps, 0.1)
        array([ 0.5, -0.5])
    """
    diff = np.asarray(differences, dtype=np.float64)[:, None]
    return (diff * noise).sum(axis=0) / (2.0 * sigma * len(noise))


def shape_differences(differences: np.ndarray, clip: float = 3.0) -> np.ndarray:
    """Antithetic differences over their median magnitude, clipped to ``±clip``.

    The signs and the order of the differences are kept; a difference many times the typical
    one (a run that diverged on one side) counts ``clip`` typical ones, not hundreds.

    Example:
        >>> shape_differences(np.array([0.01, -0.02, 0.03, 5.0]))
        array([ 0.4, -0.8,  1.2,  3. ])
    """
    diff = np.asarray(differences, dtype=np.float64)
    scale = float(np.median(np.abs(diff)))
    if not scale > 0:
        return np.sign(diff)
    return np.clip(diff / scale, -clip, clip)


class _Adam:
    """Adam on a numpy vector, with its state as lists (JSON-serialisable)."""

    def __init__(self, size: int, lr: float, state: dict[str, Any] | None = None) -> None:
        self.lr = lr
        self.m = np.zeros(size) if state is None else np.asarray(state["m"])
        self.v = np.zeros(size) if state is None else np.asarray(state["v"])
        self.t = 0 if state is None else int(state["t"])

    def step(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * grad
        self.v = 0.999 * self.v + 0.001 * grad**2
        m_hat = self.m / (1 - 0.9**self.t)
        v_hat = self.v / (1 - 0.999**self.t)
        return theta - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)

    def state(self) -> dict[str, Any]:
        return {"m": self.m.tolist(), "v": self.v.tolist(), "t": self.t}


def meta_train(
    config: ESConfig,
    *,
    workers: int = 2,
    address: str | None = None,
    data_dir: str | None = None,
    command: str = "",
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Run (or resume) the meta-training of ``config``; returns the network file.

    Raises:
        ValueError: If ``config.out`` holds a meta-training with other settings, or one
            already past ``config.iterations``.
    """
    import ray

    _check_es_config(config)
    schedule = "mlrsnet-plus" if config.family == "plus" else "wsd-family"
    template = start_network(config) if config.family == "plus" else None
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    if state_path.is_file():
        theta, adam, rng, iteration = _resumed(config, out, json.loads(state_path.read_text()))
    else:
        theta, adam, rng, iteration = _fresh(config, template)
    start_ray(workers, address)
    remote = ray.remote(num_cpus=1, max_retries=1)(evaluate)
    probe_remote = ray.remote(num_cpus=1, max_retries=1)(probe)
    monitor = _Monitor(config, remote, data_dir, out / "monitor.json", schedule, template)
    if iteration == 0:
        _append(out / "history.jsonl", {"iteration": 0, **monitor.score(theta)})
    while iteration < config.iterations:
        started = time.perf_counter()
        instances = [sample_instance(rng, config, data_dir) for _ in range(config.pairs)]
        noise = rng.standard_normal((config.pairs, theta.size))
        base_lrs = _base_lrs(config, instances, probe_remote, data_dir)
        runs = []
        for inst, eps, base_lr in zip(instances, noise, base_lrs, strict=True):
            for sign in (1.0, -1.0):
                runs.append(remote.remote(inst, theta + sign * config.sigma * eps,
                                          hidden=config.hidden, base_lr=base_lr,
                                          data_dir=data_dir, schedule=schedule,
                                          template=template, peak=config.peak,
                                          validation=config.validation,
                                          objective=config.objective))  # fmt: skip
        results = ray.get(runs)
        f_plus = np.array([r["objective"] for r in results[0::2]])
        f_minus = np.array([r["objective"] for r in results[1::2]])
        differences = f_plus - f_minus
        if config.shaping:
            differences = shape_differences(differences)
        grad = es_gradient(differences, noise, config.sigma)
        theta = adam.step(theta, grad)
        iteration += 1
        record = {
            "iteration": iteration,
            "objective_pairs": float(np.mean(np.r_[f_plus, f_minus])),
            "mean_abs_difference": float(np.mean(np.abs(f_plus - f_minus))),
            "grad_norm": float(np.linalg.norm(grad)),
            "seconds": time.perf_counter() - started,
            "instances": instances,
        }  # fmt: skip
        if iteration % config.monitor_every == 0 or iteration == config.iterations:
            record.update(monitor.score(theta))
        _append(out / "history.jsonl", record)
        atomic_write(state_path, json.dumps({
            "config": asdict(config), "theta": theta.tolist(), "adam": adam.state(),
            "rng": rng.bit_generator.state, "iteration": iteration,
        }).encode())  # fmt: skip
        if on_iteration is not None:
            on_iteration(record)
    return _save_result(config, out, theta, iteration, command, template)


def _check_es_config(config: ESConfig) -> None:
    """Refuse settings of :func:`meta_train` that do not go together.

    Raises:
        ValueError: Naming the setting.
    """
    if config.family not in ("plus", "wsd"):
        raise ValueError(f"family must be 'plus' or 'wsd', got {config.family!r}")
    if config.base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {config.base!r}")
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {config.objective!r}")
    from mlrsnet.lab import baselines

    if config.monitor_schedule not in baselines.names():
        raise ValueError(
            f"monitor_schedule must be a baseline name, got {config.monitor_schedule!r}"
        )
    if config.task_set not in (None, "convergence"):
        raise ValueError(f"task_set must be None or 'convergence', got {config.task_set!r}")
    if config.task_set == "convergence" and config.passes is None:
        raise ValueError("task_set 'convergence' draws runs by passes over the data: give passes")
    if config.peak is not None:
        number("peak", config.peak, 0.0, low_open=True)
    if (config.init is not None or config.init_peaks is not None or config.prior is not None) \
            and config.family != "plus":  # fmt: skip
        raise ValueError("init and prior start the network's meta-training; the WSD family "
                         "has none")  # fmt: skip
    if config.early_stop_unit is not None:
        if config.family != "plus" or not config.validation:
            raise ValueError("early_stop_unit is a network's, and reads the validation inputs: "
                             "it needs validation")  # fmt: skip
        if len(config.early_stop_unit) != 3 or not all(
                math.isfinite(v) for v in config.early_stop_unit):  # fmt: skip
            raise ValueError(f"early_stop_unit must be three finite numbers (rise, threshold, "
                             f"weight), got {config.early_stop_unit!r}")  # fmt: skip
    if config.prior is not None and config.prior_shape is not None:
        raise ValueError("give a prior's file or a prior_shape, not both")
    residual = config.prior is not None or config.prior_shape is not None
    if residual and config.init_peaks is not None:
        raise ValueError("a residual network's peaks are its prior's: no init_peaks")
    if config.family != "plus" and config.prior_shape is not None:
        raise ValueError("prior_shape is the network's; the WSD family has none")
    if config.prior_shape is not None:
        if len(config.prior_shape) != 3:
            raise ValueError(f"prior_shape must be (warmup, cooldown, power), got "
                             f"{config.prior_shape!r}")  # fmt: skip
        plus.Prior(*config.prior_shape, limit=config.limit)  # names a field out of range
    if config.min_steps is not None and not 1 <= config.min_steps <= config.max_steps:
        raise ValueError(f"min_steps must be between 1 and max_steps ({config.max_steps}), "
                         f"got {config.min_steps}")  # fmt: skip
    if config.passes is not None and not 0 < config.passes[0] <= config.passes[1]:
        raise ValueError(f"passes must be (low, high) with 0 < low <= high, got {config.passes}")


#: Where a meta-training stands: ``θ``, its Adam, the random stream and the iteration.
_Start = tuple[np.ndarray, _Adam, np.random.Generator, int]


def _resumed(config: ESConfig, out: Path, state: dict[str, Any]) -> _Start:
    """Where the meta-training in ``out`` (its ``state.json``: ``state``) stopped.

    Raises:
        ValueError: If it has other settings than ``config``, or is past its iterations.
    """
    # the folder is where the state is: a moved folder resumes under its new path
    settings = {k: v for k, v in asdict(config).items() if k not in ("iterations", "out")}
    settings = json.loads(json.dumps(settings))  # as the file holds them: tuples are lists
    saved = {**asdict(ESConfig(out=config.out)), **state["config"]}  # older folders
    differs = sorted(k for k in settings if saved.get(k) != settings[k])
    if differs:
        raise ValueError(f"{out} holds a meta-training with other settings ({', '.join(differs)})")
    if state["iteration"] > config.iterations:
        raise ValueError(
            f"{out} is already at iteration {state['iteration']}, past the "
            f"{config.iterations} asked for (its earlier iterates are not kept)"
        )
    theta = np.asarray(state["theta"])
    adam = _Adam(theta.size, config.meta_lr, state["adam"])
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    return theta, adam, rng, state["iteration"]


def _fresh(config: ESConfig, template: plus.PlusNet | None) -> _Start:
    """Where a new meta-training starts: ``θ`` of the WSD family's start, of the residual
    network ``template`` (:func:`start_network`), of ``config.init`` or of the shape's
    network, with its peaks set by ``config.init_peaks``; a fresh Adam and the random stream
    of ``config.seed``."""
    if config.family == "wsd":
        theta = WSD_START.copy()
    elif config.init is not None:
        start, _ = plus.resolve(config.init)
        if start.hidden != config.hidden:
            raise ValueError(f"init {config.init!r} has {start.hidden} hidden units, "
                             f"the config {config.hidden}")  # fmt: skip
        if start.reads_validation != config.validation:
            raise ValueError(f"init {config.init!r} has validation={start.reads_validation}, "
                             f"the config {config.validation}")  # fmt: skip
        if not _same_frame(start, template):
            raise ValueError(f"init {config.init!r} corrects another prior (or none), or has "
                             "other scales or another peak, than the network configured: its "
                             "weights would mean something else there")  # fmt: skip
        theta = flat_params(start)
    elif template is not None and template.prior is not None:
        theta = flat_params(template)
    else:
        theta = flat_params(plus.PlusNet.from_shape(hidden=config.hidden, seed=config.seed,
                                                    validation=config.validation))  # fmt: skip
    if config.early_stop_unit is not None:  # a network's (checked): template is its frame
        start = set_params(copy.deepcopy(template), theta)
        theta = flat_params(with_early_stop_unit(start, *config.early_stop_unit))
    if config.init_peaks is not None:
        fitted = json.loads(Path(config.init_peaks).read_text())["options"]
        net = set_params(plus.PlusNet(hidden=config.hidden, validation=config.validation), theta)
        theta = flat_params(with_peaks(net, {f: fitted[f]["peak"] for f in fitted}))
    return theta, _Adam(theta.size, config.meta_lr), np.random.default_rng(config.seed), 0


def _same_frame(start: plus.PlusNet, template: plus.PlusNet | None) -> bool:
    """Whether ``start``'s weights mean the same in ``template`` (the network meta-training
    sets them into): both plain, or both residual networks of the same prior and scales,
    declaring the same peak. Without a template (a plain network) ``start`` must be plain."""
    if template is None or template.prior is None:
        return start.prior is None
    if start.prior is None:
        return False
    return (start.prior.as_list() == template.prior.as_list()
            and torch.equal(start.log_scale, template.log_scale) and start.peak == template.peak)  # fmt: skip


def _save_result(config: ESConfig, out: Path, theta: np.ndarray, iteration: int, command: str,
                 template: plus.PlusNet | None) -> Path:  # fmt: skip
    """Write what the meta-training found, with its manifest: the WSD family's options
    (``wsd.json``) or the network (``plus.safetensors``); returns the file."""
    task_set = (
        "META_TRAINING_CONVERGENCE"
        if config.task_set == "convergence"
        else "META_TRAINING"
        if config.passes is None
        else "META_TRAINING_BY_PASSES"
    )
    manifest = {"command": command, "config": asdict(config), "iterations": iteration,
                "meta_training_set": "mlrsnet.lab.benchmark.tasksets." + task_set,
                "contract": contract(config.base, config.peak),
                "iteration_seconds": _iteration_seconds(out / "history.jsonl"),
                "versions": versions()}  # fmt: skip
    if config.family == "wsd":
        path = out / "wsd.json"
        options = {family: wsd_options(theta, family, bound=config.peak)
                   for family in plus.OPTIMIZER_FAMILIES}  # fmt: skip
        atomic_write(path, json.dumps({**manifest, "theta": theta.tolist(),
                                       "options": options}, indent=2).encode())  # fmt: skip
        return path
    net = set_params(copy.deepcopy(template), theta)
    return plus.save(out / "plus.safetensors", net.float(), manifest)


class _Monitor:
    """Fixed instances, their base rates and the reference schedule's loss on them (WSD's by
    default; computed once, kept in a file)."""

    def __init__(self, config: ESConfig, remote: Any, data_dir: str | None, path: Path,
                 schedule: str, template: plus.PlusNet | None = None) -> None:  # fmt: skip
        import ray

        self.remote, self.data_dir, self.hidden = remote, data_dir, config.hidden
        self.peak, self.reference = config.peak, config.monitor_schedule
        self.validation, self.objective = config.validation, config.objective
        self.schedule, self.template = schedule, template
        if path.is_file():
            saved = json.loads(path.read_text())
            self.instances, self.base_lrs = saved["instances"], saved["base_lrs"]
            self.scores = saved.get("reference", saved.get("wsd"))  # "wsd": older folders
            return
        rng = np.random.default_rng([config.seed, 1])
        self.instances = [sample_instance(rng, config, data_dir)
                          for _ in range(config.monitor_instances)]  # fmt: skip
        probes = ray.get([
            remote.remote(inst, None, schedule=config.monitor_schedule, data_dir=data_dir,
                          base_lr=user_lr(inst) if config.base == "user" else None,
                          validation=config.validation, objective=config.objective)
            for inst in self.instances
        ])  # fmt: skip
        self.base_lrs = [p["base_lr"] for p in probes]
        self.scores = [p["objective"] for p in probes]
        atomic_write(path, json.dumps({"instances": self.instances, "base_lrs": self.base_lrs,
                                       "reference": self.scores}).encode())  # fmt: skip

    def score(self, theta: np.ndarray) -> dict[str, float]:
        import ray

        results = ray.get([
            self.remote.remote(inst, theta, hidden=self.hidden, base_lr=lr, data_dir=self.data_dir,
                               schedule=self.schedule, template=self.template, peak=self.peak,
                               validation=self.validation, objective=self.objective)
            for inst, lr in zip(self.instances, self.base_lrs, strict=True)
        ])  # fmt: skip
        ratios = [r["objective"] - w for r, w in zip(results, self.scores, strict=True)]
        return {"monitor_log_ratio": float(np.mean(ratios)),
                "monitor_wins": int(sum(r < 0 for r in ratios)),
                "monitor_schedule": self.reference}  # fmt: skip


def _iteration_seconds(path: Path) -> float:
    """The wall time of the ES iterations in ``path`` (the monitor's scoring not counted)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    return sum(json.loads(line).get("seconds", 0.0) for line in lines)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, allow_nan=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
