"""Training runs that write metrics, survive interruption and resume exactly.

:func:`run` trains one task with one schedule (``kind="train"``) or meta-trains a
schedule network on a task (``kind="meta-train"``). A run directory holds:

- ``metrics.jsonl``: one record per epoch (epoch, step, train loss, test loss,
  test metric — accuracy in percent or perplexity — lr, wall seconds);
- ``lr.csv``: ``step,lr,loss`` for every optimizer step;
- ``summary.json``: task, schedule, seed, final and best test metric, wall time,
  versions, the command line; ``completed`` once the run has finished;
- ``checkpoint.pt``: everything needed to continue (written atomically, loaded
  with ``torch.load(weights_only=True)``);
- for meta-training, ``schedule.safetensors`` + ``schedule.json``: the network's
  snapshots at the chosen epochs (see :mod:`mlrsnet.hub`).

Started again with the same configuration, a run resumes from its last
checkpoint and ends with exactly the metrics and learning-rate trace of an
uninterrupted run: data order and augmentation depend only on (seed, epoch,
batch), the RNG state is checkpointed, and the files are cut back to what the
checkpoint had seen.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import mlrsnet
from mlrsnet import hub
from mlrsnet.lab import baselines
from mlrsnet.lab import tasks as task_registry
from mlrsnet.atomic import atomic_write
from mlrsnet.functional import paper_gamma
from mlrsnet.meta import MetaTrainer
from mlrsnet.net import MLRSNet
from mlrsnet.scheduler import MLRSNetLR

__all__ = ["RunConfig", "run", "resolve_device", "estimate_train_loss"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
#: The paper meta-updates every 300 of 383 iterations per epoch: about 0.78 epochs.
PAPER_META_INTERVAL_EPOCHS = 300 / 383


@dataclasses.dataclass
class RunConfig:
    """What to run. ``None`` means: the task's default (or the paper's rule).

    Attributes:
        task: A name from :func:`mlrsnet.lab.tasks.names`.
        out: The run directory.
        schedule: For ``train``: a name from :func:`mlrsnet.lab.baselines.names`, or
            ``mlrsnet:NAME_OR_PATH`` for a shipped or saved schedule network.
        epochs, batch_size: Training length and batch size.
        lr: Base learning rate; for MLR-SNet the scale ``γ`` (default: the
            paper's rule from the initial training loss).
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
    """

    task: str
    out: str
    schedule: str = "fixed"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
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

    def validate(self, kind: str) -> None:
        """Raise ``ValueError`` naming the first bad field."""

        def positive_int(name: str, value: Any, allow_none: bool = True) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        def number(
            name: str, value: Any, low: float, high: float = math.inf, closed_low: bool = True
        ) -> None:
            if value is None:
                return
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if value < low or (not closed_low and value == low) or value > high:
                raise ValueError(
                    f"{name} must be in {'[' if closed_low else '('}{low}, {high}], got {value!r}"
                )

        if kind not in ("train", "meta-train"):
            raise ValueError(f"kind must be 'train' or 'meta-train', got {kind!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError("task must be a task name")
        if self.task not in task_registry.names():
            raise ValueError(
                f"unknown task {self.task!r}; known: {', '.join(task_registry.names())}"
            )
        if kind == "train":
            base = self.schedule.split(":", 1)[0]
            if base not in baselines.names():
                raise ValueError(
                    f"unknown schedule {self.schedule!r}; known: {', '.join(baselines.names())} "
                    "(mlrsnet:NAME_OR_PATH for a schedule network)"
                )
            if base == "mlrsnet" and ":" not in self.schedule:
                raise ValueError("schedule 'mlrsnet' needs a network: mlrsnet:NAME_OR_PATH")
        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        positive_int("meta_interval", self.meta_interval)
        positive_int("gamma_batches", self.gamma_batches, allow_none=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if (
            isinstance(self.checkpoint_every, bool)
            or not isinstance(self.checkpoint_every, int)
            or self.checkpoint_every < 0
        ):
            raise ValueError(
                f"checkpoint_every must be a non-negative integer, got {self.checkpoint_every!r}"
            )
        number("lr", self.lr, 0.0, closed_low=False)
        number("momentum", self.momentum, 0.0, 0.999999)
        number("weight_decay", self.weight_decay, 0.0)
        number("train_fraction", self.train_fraction, 0.0, 1.0, closed_low=False)
        number("noise_rate", self.noise_rate, 0.0, 1.0)
        number("meta_lr", self.meta_lr, 0.0, closed_low=False)
        number("meta_weight_decay", self.meta_weight_decay, 0.0)
        if self.noise not in (None, "uniform", "symmetric", "pairflip"):
            raise ValueError(f"noise must be 'uniform' or 'pairflip', got {self.noise!r}")
        if self.save_epochs is not None:
            if not self.save_epochs or any(
                isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in self.save_epochs
            ):
                raise ValueError(f"save_epochs must be positive integers, got {self.save_epochs!r}")
            if sorted(set(self.save_epochs)) != list(self.save_epochs):
                raise ValueError(
                    f"save_epochs must be strictly increasing, got {self.save_epochs!r}"
                )
            if self.epochs is not None and self.save_epochs[-1] > self.epochs:
                raise ValueError(f"save_epochs {self.save_epochs} go past epochs={self.epochs}")
        resolve_device(self.device)


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


# -- helpers -------------------------------------------------------------------------


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, tuple):
        return tuple(_detach(t) for t in x)
    return x


@torch.no_grad()
def estimate_train_loss(task: Any, model: nn.Module, *, batch_size: int, device: torch.device,
                        max_batches: int, seed: int) -> float:  # fmt: skip
    """Mean training loss of ``model`` (eval mode, no augmentation) on the first batches.

    The authors compute the scale rule's ``L₀`` on the whole training set; a few
    batches estimate it (``max_batches``).
    """
    was_training = model.training
    model.eval()
    try:
        if task.modality == "text":
            loader = task.train_loader(batch_size, epoch=0, seed=seed, device=device)
        else:
            loader = task.train_loader(batch_size, epoch=0, seed=seed, device=device, augment=False)
        total, count, hidden = 0.0, 0, None
        for i, (inputs, targets) in enumerate(loader):
            if i >= max_batches:
                break
            if task.modality == "text":
                outputs = model(inputs, hidden)
                hidden = outputs[1]
            else:
                outputs = model(inputs)
            total += float(task.loss_fn(outputs, targets))
            count += 1
        return total / max(count, 1)
    finally:
        model.train(was_training)


def _atomic_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def _atomic_json(obj: Any, path: Path) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def _versions() -> dict[str, str]:
    import numpy

    return {
        "mlrsnet": mlrsnet.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
        "platform": platform.platform(),
    }


class _AppendLog:
    """A text file written in append mode whose committed length lives in the checkpoint."""

    def __init__(self, path: Path, header: str | None, committed: int | None) -> None:
        self.path = path
        if committed is None:
            with open(path, "w") as f:
                if header:
                    f.write(header)
        else:
            with open(path, "r+") as f:
                f.truncate(committed)
        self.pending: list[str] = []

    def add(self, line: str) -> None:
        self.pending.append(line)

    def commit(self) -> int:
        with open(self.path, "a") as f:
            f.writelines(self.pending)
            f.flush()
            os.fsync(f.fileno())
        self.pending.clear()
        return self.path.stat().st_size


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
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    task = task_registry.get(
        config.task,
        data_dir=config.data_dir,
        seed=config.seed,
        train_fraction=config.train_fraction,
        noise=config.noise,
        noise_rate=config.noise_rate,
        num_meta=config.num_meta,
    )
    is_text = task.modality == "text"
    epochs = config.epochs or task.epochs
    batch_size = config.batch_size or task.batch_size
    steps_per_epoch = len(task.train_loader(batch_size, epoch=0, seed=config.seed, device=device))
    total_steps = epochs * steps_per_epoch
    schedule_name = "mlrsnet-meta-train" if kind == "meta-train" else config.schedule
    is_mlrsnet = kind == "meta-train" or config.schedule.startswith("mlrsnet:")
    momentum = (
        config.momentum if config.momentum is not None else (0.0 if is_mlrsnet else task.momentum)
    )
    weight_decay = config.weight_decay if config.weight_decay is not None else task.weight_decay
    fingerprint = {
        "kind": kind,
        "task": config.task,
        "schedule": schedule_name,
        "seed": config.seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": config.lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "train_fraction": config.train_fraction,
        "noise": config.noise,
        "noise_rate": config.noise_rate,
        "options": json.dumps(config.options, sort_keys=True, default=str),
        "meta_interval": config.meta_interval,
        "meta_lr": config.meta_lr,
        "save_epochs": config.save_epochs,
    }

    for leftover in out.glob("*.tmp"):  # a write killed half-way; the file it replaces is intact
        leftover.unlink()
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = None
    if checkpoint_path.is_file():
        try:
            checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - named and re-raised
            raise ValueError(
                f"{checkpoint_path}: not a loadable run checkpoint (read with weights_only=True; "
                f"{type(err).__name__}); remove it to start the run afresh"
            ) from err
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{checkpoint_path}: checkpoint format {checkpoint.get('format')!r}, expected {CHECKPOINT_FORMAT}"
            )
        saved = checkpoint["fingerprint"]
        differs = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
        if differs:
            raise ValueError(
                f"{out} holds a run with other settings ({', '.join(differs)}); "
                "use another --out or the same settings to resume"
            )
        if checkpoint.get("completed"):
            logger.info("%s: run already completed", out)
            return json.loads((out / "summary.json").read_text())

    torch.manual_seed(config.seed)
    model = task.build_model(seed=config.seed, device=device)
    model.train()

    # the authors' language models feed the network loss / ln(V), the loss of a uniform guess
    loss_scale = math.log(task.num_classes) if is_text else 1.0
    gamma: float | None = None
    if is_mlrsnet:
        if checkpoint is not None:
            gamma = float(checkpoint["gamma"])
        elif config.lr is not None:
            gamma = float(config.lr)
        else:
            initial = estimate_train_loss(task, model, batch_size=batch_size, device=device,
                                          max_batches=config.gamma_batches, seed=config.seed)  # fmt: skip
            gamma = paper_gamma(initial, task.num_classes, language_model=is_text)
            logger.info("initial training loss %.4f -> paper gamma %.4f", initial, gamma)

    def stage_hook(index: int, scheduler: MLRSNetLR) -> float:
        loss = estimate_train_loss(task, model, batch_size=batch_size, device=device,
                                   max_batches=config.gamma_batches, seed=config.seed)  # fmt: skip
        with (
            warnings.catch_warnings()
        ):  # below L*C = 1 the rule takes |.|, as the authors' transfer code
            warnings.simplefilter("ignore", RuntimeWarning)
            new_gamma = paper_gamma(loss, task.num_classes, language_model=is_text)
        logger.info("stage %d: training loss %.4f -> gamma %.4f", index, loss, new_gamma)
        return new_gamma

    trainer: MetaTrainer | None = None
    schedule: baselines.Schedule | None = None
    snapshots: dict[str, MLRSNet] = {}
    save_epochs = config.save_epochs or sorted({1, max(1, epochs // 2), epochs})
    meta_interval = config.meta_interval or max(
        1, round(PAPER_META_INTERVAL_EPOCHS * steps_per_epoch)
    )
    if kind == "meta-train":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            net = MLRSNet()
        optimizer = torch.optim.SGD(
            model.parameters(), lr=gamma, momentum=momentum, weight_decay=weight_decay
        )
        scheduler = MLRSNetLR(optimizer, net, loss_scale=loss_scale)
        meta_optimizer = torch.optim.Adam(
            net.parameters(), lr=config.meta_lr, weight_decay=config.meta_weight_decay
        )
        trainer = MetaTrainer(model, optimizer, scheduler, meta_optimizer, task.loss_fn,
                              meta_interval=meta_interval, grad_clip=task.grad_clip)  # fmt: skip
    else:
        options = dict(config.options)
        lr = gamma if is_mlrsnet else config.lr
        name = config.schedule
        if is_mlrsnet:
            name = "mlrsnet"
            options["network"] = hub.resolve(config.schedule.split(":", 1)[1])
            options.setdefault("loss_scale", loss_scale)
            if config.lr is None:
                options.setdefault("on_stage_start", stage_hook)
        schedule = baselines.build(
            name, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
            total_steps=total_steps, steps_per_epoch=steps_per_epoch, grad_clip=task.grad_clip, **options,
        )  # fmt: skip

    # -- state: fresh or from the checkpoint ---------------------------------------------
    epoch, batch_index, global_step = 0, 0, 0
    meta_served, hidden = 0, None
    loss_sum, loss_count, meta_loss_sum, meta_count = 0.0, 0, 0.0, 0
    elapsed, best_metric, nonfinite_steps = 0.0, None, 0
    lr_log_offset = metrics_offset = None
    if checkpoint is not None:
        if trainer is not None:
            trainer.load_state_dict(checkpoint["trainer"])
            schedule_file = out / "schedule.safetensors"
            if schedule_file.is_file():
                bundle = hub.load_schedule(schedule_file)
                snapshots = dict(zip(bundle.snapshots, bundle.nets, strict=True))
        else:
            model.load_state_dict(checkpoint["model"])
            assert schedule is not None
            schedule.load_state_dict(checkpoint["schedule"])
        epoch, batch_index, global_step = (
            checkpoint["epoch"],
            checkpoint["batch_index"],
            checkpoint["global_step"],
        )
        meta_served = checkpoint["meta_served"]
        hidden = checkpoint.get("hidden")
        if hidden is not None:
            hidden = tuple(h.to(device) for h in hidden)
        loss_sum, loss_count = checkpoint["loss_sum"], checkpoint["loss_count"]
        meta_loss_sum, meta_count = checkpoint["meta_loss_sum"], checkpoint["meta_count"]
        elapsed, best_metric = checkpoint["elapsed"], checkpoint["best_metric"]
        nonfinite_steps = checkpoint.get("nonfinite_steps", 0)
        lr_log_offset, metrics_offset = checkpoint["lr_log_offset"], checkpoint["metrics_offset"]
        torch.set_rng_state(checkpoint["rng_cpu"])
        if device.type == "cuda" and checkpoint.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(checkpoint["rng_cuda"], device)
        logger.info(
            "%s: resuming at epoch %d, batch %d (step %d)", out, epoch + 1, batch_index, global_step
        )
    lr_log = _AppendLog(out / "lr.csv", "step,lr,loss\n", lr_log_offset)
    metrics_log = _AppendLog(out / "metrics.jsonl", None, metrics_offset)

    meta_stream: Iterator[Any] | None = None
    if trainer is not None or (schedule is not None and schedule.requires_meta_loss):
        meta_stream = task.meta_loader(
            batch_size, seed=config.seed, device=device, start=meta_served
        )

    def next_meta_batch() -> Any:
        nonlocal meta_served
        assert meta_stream is not None
        inputs, targets = next(meta_stream)
        meta_served += 1
        return ((inputs, None), targets) if is_text else (inputs, targets)

    def save_checkpoint(completed: bool = False) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "completed": completed,
            "epoch": epoch,
            "batch_index": batch_index,
            "global_step": global_step,
            "meta_served": meta_served,
            "hidden": None if hidden is None else tuple(h.detach().cpu() for h in hidden),
            "loss_sum": loss_sum,
            "loss_count": loss_count,
            "meta_loss_sum": meta_loss_sum,
            "meta_count": meta_count,
            "elapsed": elapsed + (time.perf_counter() - started),
            "best_metric": best_metric,
            "nonfinite_steps": nonfinite_steps,
            "gamma": gamma,
            "lr_log_offset": lr_log.commit(),
            "metrics_offset": metrics_log.commit(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        if trainer is not None:
            state["trainer"] = trainer.state_dict()
        else:
            assert schedule is not None
            state["model"] = model.state_dict()
            state["schedule"] = schedule.state_dict()
        _atomic_save(state, checkpoint_path)

    summary_base = {
        "task": config.task,
        "schedule": schedule_name,
        "label": config.label or schedule_name,
        "kind": kind,
        "seed": config.seed,
        "metric": task.metric,
        "epochs": epochs,
        "steps": total_steps,
        "batch_size": batch_size,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "gamma": gamma,
        "loss_scale": loss_scale if is_mlrsnet else None,
        "lr": config.lr,
        "train_fraction": config.train_fraction,
        "noise": config.noise,
        "noise_rate": config.noise_rate,
        "realised_noise_rate": getattr(task, "realised_noise_rate", 0.0),
        "meta_interval": meta_interval if kind == "meta-train" else None,
        "versions": _versions(),
        "command": config.command,
        "device": str(device),
    }

    def write_summary(completed: bool) -> dict[str, Any]:
        records = [
            json.loads(line)
            for line in (out / "metrics.jsonl").read_text().splitlines()
            if line.strip()
        ]
        last = records[-1] if records else {}
        summary = {
            **summary_base,
            "final_test_metric": last.get("test_metric"),
            "final_test_loss": last.get("test_loss"),
            "best_test_metric": best_metric,
            "wall_seconds": elapsed + (time.perf_counter() - started),
            "nonfinite_steps_skipped": nonfinite_steps,
            "completed": completed,
        }
        if kind == "meta-train":
            summary["schedule_file"] = "schedule.safetensors" if snapshots else None
            if trainer is not None:
                summary["num_meta_steps"] = trainer.num_meta_steps
                summary["num_skipped_meta_steps"] = trainer.num_skipped_meta_steps
        _atomic_json(summary, out / "summary.json")
        return summary

    def evaluate() -> dict[str, float]:
        if schedule is not None:
            schedule.eval()
        result = task.evaluate(model, device=device)
        if schedule is not None:
            schedule.train()
        return result

    def meta_loss_closure() -> Tensor:
        inputs, targets = next_meta_batch()
        model.eval()
        try:
            return task.loss_fn(_call(model, inputs), targets)
        finally:
            model.train()

    started = time.perf_counter()
    steps_this_call = 0
    higher_is_better = task.metric == "accuracy"
    while epoch < epochs:
        loader = task.train_loader(
            batch_size, epoch=epoch, seed=config.seed, device=device, start=batch_index
        )
        if batch_index == 0:
            hidden = None
        for inputs, targets in loader:
            model_inputs = (inputs, hidden) if is_text else inputs
            if trainer is not None:
                stats = trainer.step(
                    (model_inputs, targets),
                    meta_batch=next_meta_batch if trainer.is_meta_step() else None,
                )
                loss_value = float(stats["loss"])
                lr_value = float(stats["lr"])
                nonfinite_steps += bool(stats.get("skipped"))
                if "meta_loss" in stats:
                    meta_loss_sum += float(stats["meta_loss"])
                    meta_count += 1
                outputs = stats["outputs"]
            else:
                assert schedule is not None
                outputs = _call(model, model_inputs)
                loss = task.loss_fn(outputs, targets)
                schedule.step(
                    loss, meta_loss=meta_loss_closure if schedule.requires_meta_loss else None
                )
                loss_value = float(loss.detach())
                lr_value = float(schedule.lr)
            if is_text:
                hidden = _detach(outputs[1])
            global_step += 1
            batch_index += 1
            loss_sum += loss_value
            loss_count += 1
            lr_log.add(f"{global_step},{lr_value!r},{loss_value!r}\n")
            if on_step is not None:
                on_step({"step": global_step, "total_steps": total_steps, "epoch": epoch + 1,
                         "loss": loss_value, "lr": lr_value})  # fmt: skip
            steps_this_call += 1
            if (
                config.checkpoint_every
                and global_step % config.checkpoint_every == 0
                and batch_index < steps_per_epoch
            ):
                save_checkpoint()
            if (
                stop_after_steps is not None
                and steps_this_call >= stop_after_steps
                and batch_index < steps_per_epoch
            ):
                save_checkpoint()
                return write_summary(completed=False)
        # -- epoch end ----------------------------------------------------------------
        result = evaluate()
        test_metric = result["metric"] * 100.0 if task.metric == "accuracy" else result["metric"]
        if best_metric is None or (
            test_metric > best_metric if higher_is_better else test_metric < best_metric
        ):
            best_metric = test_metric
        if schedule is not None:
            val_loss = None
            if schedule.interval == "plateau":
                schedule.eval()
                val_loss = task.evaluate(model, device=device, split="meta")["loss"]
                schedule.train()
            schedule.epoch_end(val_loss=val_loss)
        record = {
            "epoch": epoch + 1,
            "step": global_step,
            "train_loss": loss_sum / max(loss_count, 1),
            "test_loss": result["loss"],
            "test_metric": test_metric,
            "lr": lr_value,
            "wall_seconds": round(elapsed + (time.perf_counter() - started), 3),
        }
        if kind == "meta-train":
            record["meta_loss"] = meta_loss_sum / meta_count if meta_count else None
            record["meta_steps"] = trainer.num_meta_steps if trainer is not None else 0
        metrics_log.add(json.dumps(record) + "\n")
        epoch += 1
        batch_index = 0
        loss_sum, loss_count, meta_loss_sum, meta_count = 0.0, 0, 0.0, 0
        if trainer is not None and epoch in save_epochs:
            snapshots[f"epoch_{epoch}"] = _copy_net(trainer.scheduler.net)
            _save_snapshots(out / "schedule.safetensors", snapshots, len(save_epochs), {
                **summary_base, "epochs_trained": epoch, "save_epochs": save_epochs,
                "metrics": {"final_test_metric": test_metric, "best_test_metric": best_metric},
            })  # fmt: skip
        if on_epoch is not None:
            on_epoch(record)
        save_checkpoint(completed=epoch >= epochs)
        write_summary(completed=epoch >= epochs)
        if stop_after_steps is not None and steps_this_call >= stop_after_steps and epoch < epochs:
            return write_summary(completed=False)
    return write_summary(completed=True)


def _copy_net(net: MLRSNet) -> MLRSNet:
    copy = MLRSNet(**net.config())
    copy.load_checked({k: v.detach().cpu().float() for k, v in net.state_dict().items()})
    return copy


def _save_snapshots(
    path: Path, snapshots: dict[str, MLRSNet], planned: int, manifest: dict[str, Any]
) -> None:
    fractions = [i / planned for i in range(len(snapshots))]
    hub.save_schedule(path, snapshots, manifest, fractions=fractions)
