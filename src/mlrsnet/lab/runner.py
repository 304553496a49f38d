"""Training runs that write metrics, survive interruption and resume exactly.

:func:`run` trains one task with one method (``kind="train"``: a baseline or a transferred
MLR-SNet) or meta-trains a schedule network on a task (``kind="meta-train"``). Every method
implements the lab's training-step protocol (:mod:`mlrsnet.lab.protocol`), so the loop never
asks which kind it drives, and every task knows how its model is called
(:mod:`mlrsnet.lab.tasks.types`), so it never asks whether the task is text. The files of a
run are :mod:`mlrsnet.lab.rundir`'s.

Started again with the same configuration, a run resumes from its last checkpoint and ends
with exactly the metrics and learning-rate trace of an uninterrupted run: data order and
augmentation depend only on (seed, epoch, batch), the RNG state is checkpointed, and the logs
are cut back to what the checkpoint had seen.

With ``lr="probe"`` a fresh run first finds its base rate with the library's range test on
its own model (:func:`mlrsnet.lab.probing.probe_task`, which leaves the model and the RNG as
they were); the rate, the probe's steps and seconds go into the checkpoint and the summary,
and a resumed run takes the rate from its checkpoint without probing again.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mlrsnet import checks, hub
from mlrsnet.functional import paper_gamma, stage_gamma
from mlrsnet.lab import baselines, metrics, probing
from mlrsnet.lab import tasks as task_registry
from mlrsnet.lab.meta_training import MetaTraining
from mlrsnet.lab.protocol import StepResult, TrainingMethod
from mlrsnet.lab.rundir import CHECKPOINT_FILE, RunDir, versions
from mlrsnet.lab.tasks.types import Task, call_model
from mlrsnet.meta import MetaTrainer
from mlrsnet.net import MLRSNet
from mlrsnet.scheduler import MLRSNetLR

__all__ = ["PROBE", "TEST_EVALS", "RunConfig", "run", "resolve_device"]

logger = logging.getLogger(__name__)

#: The paper meta-updates every 300 of 383 iterations per epoch: about 0.78 epochs.
PAPER_META_INTERVAL_EPOCHS = 300 / 383
#: The largest learning rate or weight decay a run takes: the largest float32.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
#: The ``lr`` that asks for the library's range test (:mod:`mlrsnet.lab.probing`).
PROBE = "probe"
#: When a run evaluates its test split (:attr:`RunConfig.test_eval`).
TEST_EVALS = ("epoch", "end")


@dataclasses.dataclass
class RunConfig:
    """What to run. ``None`` means: the task's default (or the paper's rule).

    Attributes:
        task: A name from :func:`mlrsnet.lab.tasks.names`.
        out: The run directory.
        schedule: For ``train``: a name from :func:`mlrsnet.lab.baselines.names`, or
            ``mlrsnet:NAME_OR_PATH`` for a shipped or saved schedule network.
        epochs, batch_size: Training length and batch size.
        lr: Base learning rate, or ``"probe"`` (:data:`PROBE`) for a baseline schedule:
            the library's range test on the run's model picks it before training
            (:func:`mlrsnet.lab.probing.probe_task`). For MLR-SNet the scale ``γ`` (default:
            the paper's rule from the initial training loss), which the probe does not give.
        momentum, weight_decay: SGD settings (MLR-SNet defaults to momentum 0,
            as in the authors' scripts; baselines to the task's momentum).
        seed: Seed of the model, data order, augmentation and meta split.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        data_dir: Data root (else ``$MLRSNET_DATA`` or the default places).
        train_fraction, noise, noise_rate, num_meta: Task variants.
        options: Schedule-specific options (see ``baselines.default_options``).
        meta_interval: Steps between meta updates (default: the paper's
            300-of-383, i.e. about 0.78 epochs).
        meta_lr, meta_weight_decay: Adam settings of the schedule network (1e-3, 1e-4).
        save_epochs: Epochs at which meta-training saves snapshots (default
            1, E/2 and E — the paper's 1, 100, 200 of 200).
        checkpoint_every: Also checkpoint every this many steps (0: epoch ends only).
        label: Display name in reports (default: the schedule).
        command: The command line, recorded in the summary and manifest.
        gamma_batches: Batches used to estimate the training loss for the scale rule.
        validation: Also evaluate the held-out (meta / validation) split at every epoch end:
            each epoch record gets ``val_loss`` and ``val_metric``, and the summary the final
            ones and ``val_selected_test_metric``, the test metric at the epoch with the best
            validation metric (early stopping on the clean validation split).
        test_eval: When the test split is evaluated: ``"epoch"``, at every epoch's end;
            ``"end"``, only after the last epoch, and (with ``validation``) on the weights of
            the epoch with the best validation metric, kept in the run's state and checkpoint.
            Both give the same ``final_test_metric`` and ``val_selected_test_metric``;
            ``"end"`` costs one or two test passes instead of one an epoch (on 5,700 training
            images, a test pass of 10,000 costs about as much as the epoch's training), and
            leaves ``best_test_metric`` (a pick on the test set) ``None``.
        augment: Apply the task's training augmentation (``None``: the task's default; image
            tasks augment, text tasks have none).
    """

    task: str
    out: str
    schedule: str = "fixed"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    train_fraction: float = 1.0
    noise: str | None = None
    noise_rate: float = 0.0
    num_meta: int | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    meta_interval: int | None = None
    meta_lr: float = 1e-3
    meta_weight_decay: float = 1e-4
    save_epochs: list[int] | None = None
    checkpoint_every: int = 0
    label: str | None = None
    command: str = ""
    gamma_batches: int = 20
    validation: bool = False
    test_eval: str = "epoch"
    augment: bool | None = None

    def validate(self, kind: str) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if kind not in ("train", "meta-train"):
            raise ValueError(f"kind must be 'train' or 'meta-train', got {kind!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError("task must be a task name")
        if self.task not in task_registry.names():
            raise ValueError(
                f"unknown task {self.task!r}; known: {', '.join(task_registry.names())}"
            )
        if kind == "train":
            if not isinstance(self.schedule, str):
                raise ValueError(f"schedule must be a name, got {self.schedule!r}")
            base = self.schedule.split(":", 1)[0]
            if base not in baselines.names():
                raise ValueError(
                    f"unknown schedule {self.schedule!r}; known: {', '.join(baselines.names())} "
                    "(mlrsnet:NAME_OR_PATH for a schedule network)"
                )
            if base in ("mlrsnet", "mlrsnet-plus") and ":" not in self.schedule:
                raise ValueError(f"schedule {base!r} needs a network: {base}:PATH")
        if isinstance(self.lr, str):
            _check_probe(self, kind)
        for name in ("epochs", "batch_size", "meta_interval"):
            if getattr(self, name) is not None:
                checks.positive_int(name, getattr(self, name))
        checks.positive_int("gamma_batches", self.gamma_batches)
        checks.boolean("validation", self.validation)
        if self.test_eval not in TEST_EVALS:
            raise ValueError(f"test_eval must be 'epoch' or 'end', got {self.test_eval!r}")
        if self.augment is not None:
            checks.boolean("augment", self.augment)
        checks.non_negative_int("seed", self.seed)
        checks.non_negative_int("checkpoint_every", self.checkpoint_every)
        optional_numbers = {  # the model and optimizers compute in float32: no larger value fits
            "lr": dict(low=0.0, low_open=True, high=FLOAT32_MAX),
            "momentum": dict(low=0.0, high=0.999999),
            "weight_decay": dict(low=0.0, high=FLOAT32_MAX),
        }
        for name, interval in optional_numbers.items():
            value = getattr(self, name)
            if value is not None and not (name == "lr" and value == PROBE):
                checks.number(name, value, **interval)
        checks.number("train_fraction", self.train_fraction, 0.0, 1.0, low_open=True)
        checks.number("noise_rate", self.noise_rate, 0.0, 1.0)
        checks.number("meta_lr", self.meta_lr, 0.0, FLOAT32_MAX, low_open=True)
        checks.number("meta_weight_decay", self.meta_weight_decay, 0.0, FLOAT32_MAX)
        if self.noise not in (None, "uniform", "symmetric", "pairflip"):
            raise ValueError(f"noise must be 'uniform' or 'pairflip', got {self.noise!r}")
        if self.save_epochs is not None:
            checks.require(
                isinstance(self.save_epochs, list)
                and bool(self.save_epochs)
                and all(checks.is_int(e) and e >= 1 for e in self.save_epochs),
                "save_epochs", self.save_epochs, "positive integers",
            )  # fmt: skip
            checks.require(
                sorted(set(self.save_epochs)) == list(self.save_epochs),
                "save_epochs", self.save_epochs, "strictly increasing",
            )  # fmt: skip
            if self.epochs is not None and self.save_epochs[-1] > self.epochs:
                raise ValueError(f"save_epochs {self.save_epochs} go past epochs={self.epochs}")
        resolve_device(self.device)


def _check_probe(config: RunConfig, kind: str) -> None:
    """Refuse a string ``lr`` other than ``"probe"``, and ``"probe"`` where it has no meaning.

    Raises:
        ValueError: Naming the problem.
    """
    if config.lr != PROBE:
        raise ValueError(f"lr must be a number or {PROBE!r} (the library's range test), "
                         f"got {config.lr!r}")  # fmt: skip
    if kind == "meta-train":
        raise ValueError(
            f"lr={PROBE!r} is for training with a baseline schedule; the lr of meta-training is "
            "the scale gamma of the network it learns: give a number, or none for the paper's rule"
        )
    base = config.schedule.split(":", 1)[0]
    if base == "mlrsnet":
        raise ValueError(
            f"lr={PROBE!r} does not apply to {config.schedule}: the lr of a faithful MLR-SNet "
            "is its scale gamma; give a number, or none for the paper's rule"
        )
    if baselines.base_rate_optimizer(base) is None:
        probed = [n for n in baselines.names() if baselines.base_rate_optimizer(n) is not None]
        raise ValueError(
            f"lr={PROBE!r} needs a schedule whose lr is a base rate of SGD or AdamW; that of "
            f"{base!r} is not one the probe measures (give a number; probed: {', '.join(probed)})"
        )


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available; anything else must name a usable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}")
    return device


# -- the parts of a run --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """A configuration with the task's defaults filled in."""

    kind: str
    epochs: int
    batch_size: int
    steps_per_epoch: int
    momentum: float
    weight_decay: float
    meta_interval: int
    save_epochs: list[int]
    learned: bool  # the lr comes from a schedule network: gamma, loss_scale, momentum 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def _settings(config: RunConfig, kind: str, task: Task, device: torch.device) -> Settings:
    epochs = config.epochs or task.epochs
    batch_size = config.batch_size or task.batch_size
    steps_per_epoch = len(task.train_loader(batch_size, epoch=0, seed=config.seed, device=device))
    learned = kind == "meta-train" or config.schedule.startswith("mlrsnet:")
    momentum = config.momentum
    if momentum is None:  # the authors' MLR-SNet scripts train with plain SGD
        momentum = 0.0 if learned else task.momentum
        if learned:
            logger.info("MLR-SNet runs SGD without momentum, as the paper (--momentum to change)")
    elif learned and momentum > 0:
        logger.warning(
            "MLR-SNet with momentum %g: the paper's networks and scale rule were made for SGD "
            "without momentum; each step moves about %.3gx as far",
            momentum, 1 / (1 - momentum),
        )  # fmt: skip
    return Settings(
        kind=kind,
        epochs=epochs,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        momentum=momentum,
        weight_decay=config.weight_decay if config.weight_decay is not None else task.weight_decay,
        meta_interval=config.meta_interval
        or max(1, round(PAPER_META_INTERVAL_EPOCHS * steps_per_epoch)),
        save_epochs=config.save_epochs or sorted({1, max(1, epochs // 2), epochs}),
        learned=learned,
    )


def _fingerprint(config: RunConfig, s: Settings) -> dict[str, Any]:
    """The settings a checkpoint must share with the run that resumes it."""
    return {
        "kind": s.kind,
        "task": config.task,
        "schedule": "mlrsnet-meta-train" if s.kind == "meta-train" else config.schedule,
        "seed": config.seed,
        "epochs": s.epochs,
        "batch_size": s.batch_size,
        "lr": config.lr,
        "momentum": s.momentum,
        "weight_decay": s.weight_decay,
        "train_fraction": config.train_fraction,
        "noise": config.noise,
        "noise_rate": config.noise_rate,
        "options": json.dumps(config.options, sort_keys=True, default=str),
        "meta_interval": config.meta_interval,
        "meta_lr": config.meta_lr,
        "save_epochs": config.save_epochs,
        **({"validation": True} if config.validation else {}),  # absent in older checkpoints
        **_more_fingerprint(config, s),
    }


#: Settings the fingerprint gained after checkpoints were first written, with the value an
#: older checkpoint (which does not record them) had: it resumes when they are unchanged.
_FINGERPRINT_DEFAULTS = {"num_meta": None, "data_dir": None, "meta_weight_decay": 1e-4,
                         "gamma_batches": 20, "test_eval": "epoch", "augment": None}  # fmt: skip


def _more_fingerprint(config: RunConfig, s: Settings) -> dict[str, Any]:
    """The rest of what changes a run: the meta set, the data, the network's weight decay,
    the scale rule's batches, the steps an epoch has (which the data decides), when the test
    split is evaluated and whether the training data is augmented."""
    return {
        "num_meta": config.num_meta,
        "data_dir": None if config.data_dir is None else os.path.abspath(config.data_dir),
        "meta_weight_decay": config.meta_weight_decay,
        "gamma_batches": config.gamma_batches,
        "steps_per_epoch": s.steps_per_epoch,
        "test_eval": config.test_eval,
        "augment": config.augment,
    }


def _differs(saved: dict[str, Any], fingerprint: dict[str, Any]) -> list[str]:
    """The settings in which a checkpoint's fingerprint differs from this run's."""
    missing = object()
    differs = []
    for key, value in fingerprint.items():
        old = saved.get(key, _FINGERPRINT_DEFAULTS.get(key, missing))
        if old is not missing and old != value:
            differs.append(key)
    return sorted(differs)


def _checked_checkpoint(checkpoint: dict[str, Any], path: Any) -> dict[str, Any]:
    """A run checkpoint whose parts have the types the runner reads (else a ValueError)."""
    kinds = {"fingerprint": dict, "state": dict, "model": dict, "method": dict}
    for key, kind in kinds.items():
        if not isinstance(checkpoint.get(key), kind):
            found = type(checkpoint.get(key)).__name__
            raise ValueError(f"{path}: '{key}' is a {found}, not a {kind.__name__}: not a run "
                             "checkpoint; remove it to start the run afresh")  # fmt: skip
    return checkpoint


class MetaBatches:
    """The run's held-out batches, drawn lazily (only methods that use them draw) and counted,
    so a resumed run continues the same stream."""

    def __init__(self, task: Task, model: nn.Module, config: RunConfig, s: Settings,
                 device: torch.device, served: int) -> None:  # fmt: skip
        self.task, self.model, self.served = task, model, served
        self._open = lambda: task.meta_loader(s.batch_size, seed=config.seed, device=device,
                                              start=served)  # fmt: skip
        self._stream: Any = None

    def batch(self) -> Any:
        """The next held-out batch, as the model takes it."""
        if self._stream is None:
            self._stream = self._open()
        inputs, targets = next(self._stream)
        self.served += 1
        return self.task.batch(inputs, targets)

    def loss(self) -> Tensor:
        """The model's loss (eval mode, with its graph) on the next held-out batch."""
        inputs, targets = self.batch()
        self.model.eval()
        try:
            return self.task.loss_fn(call_model(self.model, inputs), targets)
        finally:
            self.model.train()


@dataclasses.dataclass
class RunState:
    """Where a run is: everything the loop changes, checkpointed as one dict."""

    epoch: int = 0
    batch_index: int = 0
    global_step: int = 0
    meta_served: int = 0
    carry: Any = None
    loss_sum: float = 0.0
    loss_count: int = 0
    elapsed: float = 0.0
    best_metric: float | None = None
    test_metric: float | None = None
    best_val_metric: float | None = None
    val_selected_test_metric: float | None = None
    best_val_model: dict[str, Tensor] | None = None  # test_eval="end": the weights it tests
    nonfinite_steps: int = 0
    gamma: float | None = None
    probe: dict[str, Any] | None = None  # lr="probe": the probe's lr, steps and seconds

    def add_step(self, loss: float, result: StepResult) -> None:
        self.global_step += 1
        self.batch_index += 1
        if not result.skipped:  # the epoch's training loss is that of the steps taken
            self.loss_sum += loss
            self.loss_count += 1
        self.nonfinite_steps += result.skipped

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch_index = 0
        self.loss_sum, self.loss_count = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        carry = self.carry
        state["carry"] = None if carry is None else tuple(h.detach().cpu() for h in carry)
        if self.best_val_model is not None:
            state["best_val_model"] = {k: v.cpu() for k, v in self.best_val_model.items()}
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> RunState:
        run_state = cls(
            **{f.name: state[f.name] for f in dataclasses.fields(cls) if f.name in state}
        )
        if run_state.carry is not None:
            run_state.carry = tuple(h.to(device) for h in run_state.carry)
        kept = run_state.best_val_model
        if kept is not None:
            run_state.best_val_model = {k: v.to(device) for k, v in kept.items()}
        return run_state


def _loss_scale(task: Task) -> float:
    """What a schedule network's input is divided by: the authors' language models feed it
    loss / ln(V), the loss of a uniform guess; classifiers the loss itself."""
    return math.log(task.num_classes) if task.language_model else 1.0


def _gamma(config: RunConfig, s: Settings, task: Task, model: nn.Module,
           device: torch.device) -> float | None:  # fmt: skip
    """The scale γ of a schedule network: the given lr, or the paper's rule."""
    if not s.learned:
        return None
    if config.lr is not None:
        return float(config.lr)
    initial = task.mean_train_loss(model, batch_size=s.batch_size, device=device,
                                   max_batches=config.gamma_batches, seed=config.seed)  # fmt: skip
    gamma = paper_gamma(initial, task.num_classes, language_model=task.language_model)
    logger.info("initial training loss %.4f -> paper gamma %.4f", initial, gamma)
    return gamma


def _with_task_optimizer(name: str, options: dict[str, Any], task: Task) -> dict[str, Any]:
    """``options`` with the task's optimizer where schedule ``name`` has an ``optimizer``
    option that is not given."""
    if "optimizer" in baselines.default_options(name) and "optimizer" not in options:
        return {**options, "optimizer": task.optimizer}
    return dict(options)


def _probe_optimizer(config: RunConfig, task: Task) -> str:
    """The optimizer the schedule trains with, which ``lr="probe"`` probes
    (:func:`baselines.base_rate_optimizer`); an ``optimizer`` option defaults to the task's
    optimizer, as :func:`_build_method` sets it."""
    name = config.schedule.split(":", 1)[0]
    optimizer = baselines.base_rate_optimizer(
        name, _with_task_optimizer(name, config.options, task)
    )
    checks.require(optimizer in baselines.SHAPE_OPTIMIZERS, "optimizer", optimizer,
                   f"one of {baselines.SHAPE_OPTIMIZERS}")  # fmt: skip
    return optimizer


def _probe(config: RunConfig, s: Settings, task: Task, model: nn.Module) -> dict[str, Any]:
    """The library's range test on the run's model, with the optimizer, batch size, momentum
    and weight decay the run trains with and the run's seed; the model and RNG are left as
    they were. Returns ``{"lr", "steps", "seconds"}``."""
    optimizer = _probe_optimizer(config, task)
    started = time.perf_counter()
    result = probing.probe_task(task, model, optimizer, config.seed, batch_size=s.batch_size,
                                momentum=s.momentum, weight_decay=s.weight_decay,
                                nesterov=bool(config.options.get("nesterov", False)),
                                augment=config.augment)  # fmt: skip
    seconds = time.perf_counter() - started
    logger.info("probe (%s): base rate %.4g after %d steps (%.1f s)", optimizer, result.lr,
                result.steps, seconds)  # fmt: skip
    return {"lr": float(result.lr), "steps": int(result.steps), "seconds": seconds}


def _checked_probe(probe: Any, path: Any) -> dict[str, Any]:
    """The probe a checkpoint of an ``lr="probe"`` run recorded: a rate above 0, its steps and
    seconds (else a ValueError)."""
    ok = (
        isinstance(probe, dict)
        and checks.is_real(probe.get("lr")) and probe["lr"] > 0
        and checks.is_int(probe.get("steps")) and probe["steps"] >= 0
        and checks.is_real(probe.get("seconds")) and probe["seconds"] >= 0
    )  # fmt: skip
    if not ok:
        raise ValueError(f"{path}: records no probe rate, steps and seconds for this lr='probe' "
                         f"run (found {probe!r}); remove it to start the run afresh")  # fmt: skip
    return probe


def _build_method(config: RunConfig, s: Settings, task: Task, model: nn.Module,
                  gamma: float | None, lr: float | None, device: torch.device,
                  on_snapshot: Callable[[dict[str, MLRSNet], int], None]) -> TrainingMethod:  # fmt: skip
    """The method the run trains with: a baseline, a transferred network, or meta-training.

    ``lr`` is the base rate (``config.lr``, or the probe's); ``gamma`` a network's scale.
    """
    loss_scale = _loss_scale(task)
    if s.kind == "meta-train":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            net = MLRSNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=gamma, momentum=s.momentum,
                                    weight_decay=s.weight_decay)  # fmt: skip
        meta_optimizer = torch.optim.Adam(
            net.parameters(), lr=config.meta_lr, weight_decay=config.meta_weight_decay
        )
        trainer = MetaTrainer(model, optimizer, MLRSNetLR(optimizer, net, loss_scale=loss_scale),
                              meta_optimizer, task.loss_fn, meta_interval=s.meta_interval,
                              grad_clip=task.grad_clip)  # fmt: skip
        return MetaTraining(trainer, save_epochs=s.save_epochs, on_snapshot=on_snapshot)

    options, name = dict(config.options), config.schedule
    if name.startswith("mlrsnet-plus:"):
        name, options["network"] = name.split(":", 1)
    if s.learned:
        name, lr = "mlrsnet", gamma
        options["network"] = hub.resolve(config.schedule.split(":", 1)[1])
        options.setdefault("loss_scale", loss_scale)
        if "stage_scale" in options:  # a named policy of the scheduler's own
            options.setdefault("num_classes", task.num_classes)
            options.setdefault("language_model", task.language_model)
        elif config.lr is None:

            def stage_hook(index: int, scheduler: MLRSNetLR) -> float:
                # as the authors: the rule of the training loss of the whole model (eval mode)
                loss = task.mean_train_loss(
                    model,
                    batch_size=s.batch_size,
                    device=device,
                    max_batches=config.gamma_batches,
                    seed=config.seed,
                )
                new_gamma, note = stage_gamma(
                    "paper",
                    float(scheduler.base_lrs[0]),
                    loss,
                    task.num_classes,
                    language_model=task.language_model,
                )
                logger.info(
                    "stage %d: training loss %.4f -> gamma %.4f%s",
                    index,
                    loss,
                    new_gamma,
                    f" ({note})" if note else "",
                )
                return new_gamma

            options.setdefault("on_stage_start", stage_hook)
    options = _with_task_optimizer(name, options, task)  # the task's optimizer by default ...
    if lr is None and baselines.base_rate_optimizer(name, options) == task.optimizer:
        lr = task.lr  # ... at the task's rate (the schedule's default is a generic SGD rate)
    return baselines.build(
        name, model.parameters(), lr=lr, momentum=s.momentum, weight_decay=s.weight_decay,
        total_steps=s.total_steps, steps_per_epoch=s.steps_per_epoch, grad_clip=task.grad_clip,
        **options,
    )  # fmt: skip


# -- the run ------------------------------------------------------------------------


StepCallback = Callable[[dict[str, Any]], None]


def run(
    config: RunConfig,
    *,
    kind: str = "train",
    on_step: StepCallback | None = None,
    on_epoch: StepCallback | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train (or meta-train) as configured, resuming from ``config.out`` when it holds a checkpoint.

    Args:
        config: The run.
        kind: ``"train"`` or ``"meta-train"``.
        on_step: Called after every step with ``{"step", "total_steps", "epoch", "loss", "lr"}``.
        on_epoch: Called with each epoch's metrics record.
        stop_after_steps: Stop (checkpointed, not completed) after this many
            steps in this call — for tests and chunked runs.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        ValueError: For a bad configuration (the message names the field), or a
            checkpoint that belongs to another configuration.
        FileNotFoundError: When the task's data is missing (the message says how to get it).
    """
    config.validate(kind)
    run_dir = RunDir(config.out)
    with run_dir.lock():  # one process per run directory
        return _run(config, run_dir, kind, on_step, on_epoch, stop_after_steps)


def _run(config: RunConfig, run_dir: RunDir, kind: str, on_step: StepCallback | None,
         on_epoch: StepCallback | None, stop_after_steps: int | None) -> dict[str, Any]:  # fmt: skip
    """:func:`run`, holding the run directory's lock: set the run up (or resume it), then train.

    The loop: a step per batch (logged, and checkpointed every ``checkpoint_every`` steps),
    and at each epoch's end an evaluation, the epoch's record, a checkpoint and the summary.
    """
    run_dir.prepare()
    device = resolve_device(config.device)
    task = _build_task(config)
    s = _settings(config, kind, task, device)
    fingerprint = _fingerprint(config, s)
    checkpoint = run_dir.load_checkpoint()
    if checkpoint is not None:
        summary = _check_resumable(checkpoint, fingerprint, run_dir)
        if summary is not None:  # the run was complete
            return summary
    r = _start(config, kind, run_dir, device, task, s, fingerprint, checkpoint)
    model, method, state = r.model, r.method, r.state
    steps_this_call = 0
    while state.epoch < s.epochs:
        loader = task.train_loader(s.batch_size, epoch=state.epoch, seed=config.seed,
                                   device=device, start=state.batch_index,
                                   **_augment(config))  # fmt: skip
        if state.batch_index == 0:
            state.carry = None
        for inputs, targets in loader:
            outputs = call_model(model, task.model_inputs(inputs, state.carry))
            loss = task.loss_fn(outputs, targets)
            result = method.step(loss, meta_loss=r.meta.loss, meta_batch=r.meta.batch)
            state.carry = task.next_carry(outputs)
            r.log_step(float(loss.detach()), result, on_step)
            steps_this_call += 1
            mid_epoch = state.batch_index < s.steps_per_epoch
            if (
                config.checkpoint_every
                and state.global_step % config.checkpoint_every == 0
                and mid_epoch
            ):
                r.save_checkpoint()
            if stop_after_steps is not None and steps_this_call >= stop_after_steps and mid_epoch:
                r.save_checkpoint()
                return r.write_summary(completed=False)
        # -- epoch end: evaluate, let the method end its epoch, log, checkpoint ----------
        record = r.evaluate()
        run_dir.log_epoch(record)
        state.end_epoch()
        if on_epoch is not None:
            on_epoch(record)
        r.save_checkpoint(completed=state.epoch >= s.epochs)
        r.write_summary(completed=state.epoch >= s.epochs)
        if (
            stop_after_steps is not None
            and steps_this_call >= stop_after_steps
            and state.epoch < s.epochs
        ):
            return r.write_summary(completed=False)
    return r.write_summary(completed=True)


def _augment(config: RunConfig) -> dict[str, bool]:
    """The training loader's ``augment`` argument: the task's default unless the run says."""
    return {} if config.augment is None else {"augment": config.augment}


def _build_task(config: RunConfig) -> Task:
    """The run's task, with the variant ``config`` asks for.

    Raises:
        ValueError: If ``config.validation`` asks for a held-out split the task does not have.
    """
    task = task_registry.get(config.task, data_dir=config.data_dir, seed=config.seed,
                             train_fraction=config.train_fraction, noise=config.noise,
                             noise_rate=config.noise_rate, num_meta=config.num_meta)  # fmt: skip
    if config.validation and getattr(task, "num_meta", 1) == 0:
        raise ValueError("validation=True needs a held-out split: num_meta must be at least 1")
    return task


def _check_resumable(checkpoint: dict[str, Any], fingerprint: dict[str, Any],
                     run_dir: RunDir) -> dict[str, Any] | None:  # fmt: skip
    """Check that ``checkpoint`` is this run's; returns the summary when the run is complete.

    Raises:
        ValueError: If the checkpoint is not a run checkpoint, belongs to a run with other
            settings, or (completed) its logs were cut or changed.
    """
    _checked_checkpoint(checkpoint, run_dir.path / CHECKPOINT_FILE)
    differs = _differs(checkpoint["fingerprint"], fingerprint)
    if differs:
        raise ValueError(
            f"{run_dir.path} holds a run with other settings ({', '.join(differs)}); "
            "use another --out or the same settings to resume"
        )
    if not checkpoint.get("completed"):
        return None
    run_dir.check_logs(checkpoint)  # a cut or changed log is refused here too
    summary = _completed_summary(run_dir)
    if summary is not None:
        logger.info("%s: run already completed", run_dir.path)
        return summary
    # killed between the last checkpoint and its summary: the loop has nothing left to
    # train and writes the summary from the checkpoint
    logger.warning("%s: the run is complete but its summary is not; rewriting it",
                   run_dir.path)  # fmt: skip
    return None


def _start(config: RunConfig, kind: str, run_dir: RunDir, device: torch.device, task: Task,
           s: Settings, fingerprint: dict[str, Any],
           checkpoint: dict[str, Any] | None) -> _Run:  # fmt: skip
    """The run's model, method and state: new (gamma and the probe found), or as
    ``checkpoint`` left them (the RNG included); the logs opened, the clock started."""
    torch.manual_seed(config.seed)
    model = task.build_model(seed=config.seed, device=device)
    model.train()
    state = _initial_state(config, s, task, model, device, checkpoint, run_dir)
    probed = state.probe if config.lr == PROBE else None
    lr = probed["lr"] if probed is not None else config.lr
    summary_base = _summary_base(config, kind, s, task, state, fingerprint, device, probed)

    def save_snapshots(snapshots: dict[str, MLRSNet], epoch: int) -> None:
        run_dir.save_schedule(snapshots, len(s.save_epochs), {
            **summary_base, "epochs_trained": epoch, "save_epochs": s.save_epochs,
            "metrics": {"final_test_metric": state.test_metric, "best_test_metric": state.best_metric},
        })  # fmt: skip

    method = _build_method(config, s, task, model, state.gamma, lr, device, save_snapshots)
    if checkpoint is not None:
        _restore(lambda: _load_checkpoint(checkpoint, model, method, device), run_dir)
        logger.info("%s: resuming at epoch %d, batch %d (step %d)", run_dir.path,
                    state.epoch + 1, state.batch_index, state.global_step)  # fmt: skip
    run_dir.open_logs(checkpoint)
    meta = MetaBatches(task, model, config, s, device, served=state.meta_served)
    return _Run(config=config, run_dir=run_dir, device=device, task=task, s=s,
                fingerprint=fingerprint, summary_base=summary_base, model=model, method=method,
                state=state, meta=meta, started=time.perf_counter())  # fmt: skip


def _initial_state(config: RunConfig, s: Settings, task: Task, model: nn.Module,
                   device: torch.device, checkpoint: dict[str, Any] | None,
                   run_dir: RunDir) -> RunState:  # fmt: skip
    """A new run's state (its gamma and, with ``lr="probe"``, its probe), or the checkpoint's."""
    if checkpoint is None:
        state = RunState()
        state.gamma = _gamma(config, s, task, model, device)
        if config.lr == PROBE:
            state.probe = _probe(config, s, task, model)
        return state
    state = _restore(lambda: RunState.from_state_dict(checkpoint["state"], device), run_dir)
    if config.lr == PROBE:
        _checked_probe(state.probe, run_dir.path / CHECKPOINT_FILE)
        logger.info("probe: base rate %.4g from the checkpoint", state.probe["lr"])
    return state


def _load_checkpoint(checkpoint: dict[str, Any], model: nn.Module, method: TrainingMethod,
                     device: torch.device) -> None:  # fmt: skip
    """Load the checkpoint's model, method and RNG states."""
    model.load_state_dict(checkpoint["model"])
    method.load_state_dict(checkpoint["method"])
    torch.set_rng_state(checkpoint["rng_cpu"])
    if device.type == "cuda" and checkpoint.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(checkpoint["rng_cuda"], device)


def _summary_base(config: RunConfig, kind: str, s: Settings, task: Task, state: RunState,
                  fingerprint: dict[str, Any], device: torch.device,
                  probed: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """What every summary of the run (and its schedule files' manifests) records."""
    summary_base = {
        "task": config.task, "schedule": fingerprint["schedule"],
        "label": config.label or fingerprint["schedule"], "kind": kind, "seed": config.seed,
        "metric": task.metric, "epochs": s.epochs, "steps": s.total_steps,
        "batch_size": s.batch_size, "momentum": s.momentum, "weight_decay": s.weight_decay,
        "gamma": state.gamma,
        "loss_scale": _loss_scale(task) if s.learned else None,
        "lr": config.lr, "train_fraction": config.train_fraction, "noise": config.noise,
        "noise_rate": config.noise_rate,
        "realised_noise_rate": getattr(task, "realised_noise_rate", 0.0),
        "meta_interval": s.meta_interval if kind == "meta-train" else None,
        "versions": versions(), "command": config.command, "device": str(device),
        "test_eval": config.test_eval,
    }  # fmt: skip
    if probed is not None:  # the rate it found and its cost (not in wall_seconds)
        summary_base.update(probe_lr=probed["lr"], probe_steps=probed["steps"],
                            probe_seconds=probed["seconds"])  # fmt: skip
    return summary_base


@dataclasses.dataclass
class _Run:
    """A started run: what its loop drives, and how the run logs, checkpoints and sums up."""

    config: RunConfig
    run_dir: RunDir
    device: torch.device
    task: Task
    s: Settings
    fingerprint: dict[str, Any]
    summary_base: dict[str, Any]
    model: nn.Module
    method: TrainingMethod
    state: RunState
    meta: MetaBatches
    started: float  # time.perf_counter() when this call's training began

    def wall_seconds(self) -> float:
        """Seconds the run has trained, in this call and the calls before."""
        return self.state.elapsed + (time.perf_counter() - self.started)

    def log_step(self, loss: float, result: StepResult, on_step: StepCallback | None) -> None:
        """Count the step taken, log its learning rate and loss, and tell ``on_step``."""
        self.state.add_step(loss, result)
        self.run_dir.log_step(self.state.global_step, result.lr, loss)
        if on_step is not None:
            on_step({"step": self.state.global_step, "total_steps": self.s.total_steps,
                     "epoch": self.state.epoch + 1, "loss": loss, "lr": result.lr})  # fmt: skip

    def save_checkpoint(self, completed: bool = False) -> None:
        """Checkpoint the state, the model, the method and the RNG."""
        state, device = self.state, self.device
        state.meta_served = self.meta.served
        saved = state.state_dict()
        saved["elapsed"] = self.wall_seconds()
        self.run_dir.save_checkpoint({
            "fingerprint": self.fingerprint, "completed": completed, "state": saved,
            "model": self.model.state_dict(), "method": self.method.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        })  # fmt: skip

    def write_summary(self, completed: bool) -> dict[str, Any]:
        """Write the summary (``summary.json``) from the last epoch's record; returns it."""
        state = self.state
        last = (self.run_dir.read_metrics() or [{}])[-1]
        summary = {
            **self.summary_base, "final_test_metric": last.get("test_metric"),
            "final_test_loss": last.get("test_loss"), "best_test_metric": state.best_metric,
            "wall_seconds": self.wall_seconds(),
            "nonfinite_steps_skipped": state.nonfinite_steps, "completed": completed,
            **self.method.summary(),
        }  # fmt: skip
        if self.config.validation:
            summary.update(final_val_metric=last.get("val_metric"),
                           final_val_loss=last.get("val_loss"),
                           val_selected_test_metric=state.val_selected_test_metric)  # fmt: skip
        self.run_dir.write_summary(summary)
        return summary

    def evaluate(self) -> dict[str, Any]:
        """Evaluate at an epoch's end and let the method end its epoch; returns the epoch's
        record (the best metrics so far updated).

        With ``test_eval="end"`` the test split is evaluated after the last epoch only, and
        the weights of the best validation epoch (copied while the method's evaluation
        weights are in place, e.g. Schedule-Free's average) are tested then."""
        task, state, method, config = self.task, self.state, self.method, self.config
        last = state.epoch + 1 >= self.s.epochs
        test_now = config.test_eval == "epoch" or last
        method.eval()
        result = task.evaluate(self.model, device=self.device) if test_now else None
        val = (
            task.evaluate(self.model, device=self.device, split="meta")
            if method.needs_val_loss or config.validation
            else None
        )
        if result is not None:
            state.test_metric = metrics.reported(task.metric, result["metric"])
            if config.test_eval == "epoch" and metrics.is_better(
                task.metric, state.test_metric, state.best_metric
            ):
                state.best_metric = state.test_metric
        validation = self._validation(val) if config.validation else {}
        if config.test_eval == "end" and last and state.best_val_model is not None:
            state.val_selected_test_metric = self._test_best_val_model()
        method.train()
        test = {"test_loss": None if result is None else result["loss"],  # null: not tested
                "test_metric": state.test_metric if test_now else None}  # fmt: skip
        return {
            "epoch": state.epoch + 1, "step": state.global_step,
            "train_loss": state.loss_sum / state.loss_count if state.loss_count else math.nan,
            **test, **validation, "lr": method.lr,
            "wall_seconds": round(self.wall_seconds(), 3),
            **method.epoch_end(val_loss=None if val is None else val["loss"]),
        }  # fmt: skip

    def _validation(self, val: dict[str, float]) -> dict[str, float]:
        """The epoch's validation loss and metric; the test metric at the best validation
        metric so far is kept (early stopping on the clean validation split) — or, with
        ``test_eval="end"``, the weights to test at the end."""
        state, last = self.state, self.state.epoch + 1 >= self.s.epochs
        val_metric = metrics.reported(self.task.metric, val["metric"])
        if metrics.is_better(self.task.metric, val_metric, state.best_val_metric):
            state.best_val_metric = val_metric
            if self.config.test_eval == "epoch" or last:  # tested now
                state.val_selected_test_metric = state.test_metric
                state.best_val_model = None
            else:
                state.best_val_model = {k: v.detach().clone()
                                        for k, v in self.model.state_dict().items()}  # fmt: skip
        return {"val_loss": val["loss"], "val_metric": val_metric}

    def _test_best_val_model(self) -> float:
        """The test metric of the best validation epoch's weights (a copy of the model)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.state.best_val_model)  # type: ignore[arg-type]
        result = self.task.evaluate(model, device=self.device)
        self.state.best_val_model = None
        return metrics.reported(self.task.metric, result["metric"])


def _completed_summary(run_dir: RunDir) -> dict[str, Any] | None:
    """The summary of a completed run, or ``None`` if it is missing, damaged or not complete."""
    try:
        summary = run_dir.read_summary()
    except (OSError, ValueError):
        return None
    return summary if summary.get("completed") is True else None


def _restore(restore: Callable[[], Any], run_dir: RunDir) -> Any:
    """Run ``restore`` (loading a checkpoint's parts); what fails there is the checkpoint's."""
    try:
        return restore()
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
        message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"{run_dir.path / CHECKPOINT_FILE}: cannot be resumed ({type(err).__name__}: "
            f"{message}); remove it to start the run afresh"
        ) from err
