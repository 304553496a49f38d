"""The ``mlrsnet`` command: train, meta-train, compare, demo.

Every subcommand has ``--help``. Settings can come from a TOML file
(``--config FILE``; keys are the long option names, with ``-`` or ``_``), and
flags given on the command line override it. Bad arguments end in a one-line
error and exit status 2, without a traceback; so do damaged run folders. What the
machine refuses (a full or read-only disk, a run directory another process is
running in) ends in a one-line error and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

logger = logging.getLogger("mlrsnet")


class CommandError(Exception):
    """A problem with what the user asked for: reported in one line."""


# -- argument types -----------------------------------------------------------------


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    parse.__name__ = f"{what} integer"
    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


#: The ``--lr`` that asks for the library's range test: :data:`mlrsnet.lab.runner.PROBE`
#: (not imported: the parser imports nothing heavy).
_PROBE = "probe"


def _learning_rate(text: str) -> float | str:
    """A finite number, or ``"probe"``."""
    if text == _PROBE:
        return text
    try:
        float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number or {_PROBE!r}, got {text!r}") from None
    return _finite_float(text)


def _epoch_list(text: Any) -> list[int]:
    if isinstance(text, list):
        items = text
    else:
        items = [t for t in str(text).replace(" ", "").split(",") if t]
    try:
        values = [int(t) for t in items]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated epochs like 1,50,100, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive epochs, got {text!r}")
    return values


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(f"bad option name {key!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


# -- the parser ---------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML file with settings (flags override it)")
    p.add_argument("--task", help="task name (see `mlrsnet tasks`)")
    p.add_argument("--epochs", type=_positive_int, help="training epochs (default: the task's)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size (default: the task's)")
    p.add_argument(
        "--lr",
        type=_learning_rate,
        help=(
            "learning rate, or 'probe' for the library's range test on the run's model before "
            "training (baseline schedules; default: the task's rate where the schedule's lr is "
            "a rate of the task's optimizer, else the schedule's own); for MLR-SNet the scale "
            "gamma (default: paper rule)"
        ),
    )
    p.add_argument("--momentum", type=_finite_float, help="SGD momentum")
    p.add_argument("--weight-decay", type=_finite_float, help="weight decay")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--out", help="run directory (required); an existing run there is resumed")
    p.add_argument("--data-dir", help="data root (default: $MLRSNET_DATA or the standard places)")
    p.add_argument(
        "--train-fraction",
        type=_finite_float,
        default=1.0,
        help="keep this fraction of the training set",
    )
    p.add_argument(
        "--noise", choices=["uniform", "pairflip"], help="label noise on the training split"
    )
    p.add_argument("--noise-rate", type=_finite_float, default=0.0, help="label noise rate")
    p.add_argument("--num-meta", type=_positive_int, help="meta-set size (default: the task's)")
    p.add_argument(
        "--no-augment", action="store_true", help="train on the images without augmentation"
    )
    p.add_argument(
        "--checkpoint-every",
        type=_non_negative_int,
        default=0,
        help="also checkpoint every N steps",
    )
    p.add_argument(
        "--stop-after-steps",
        type=_positive_int,
        help="stop after N steps of this call, checkpointed (run the same command again to continue)",
    )
    p.add_argument("--label", help="display name in reports")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch CPU threads (results on CPU depend on it; recorded for reproducibility)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument(
        "--tensorboard", action="store_true", help="log to DIR/tensorboard (needs tensorboard)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlrsnet``."""
    parser = argparse.ArgumentParser(
        prog="mlrsnet",
        description="MLR-SNet: meta-learned, transferable learning-rate schedules.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a task with one schedule",
        description="Train a task with one schedule.",
    )
    _common(train)
    train.add_argument(
        "--schedule", help="a baseline name or mlrsnet:NAME_OR_PATH (see `mlrsnet schedules`)"
    )
    train.add_argument(
        "--validation",
        action="store_true",
        help="also evaluate the validation (meta) split each epoch; the summary adds the test "
        "metric of the best validation epoch (early stopping)",
    )
    train.add_argument(
        "--test-eval",
        choices=["epoch", "end"],
        default="epoch",
        help="evaluate the test split every epoch (default) or only at the end, and with "
        "--validation on the best validation epoch's weights (same metrics, less time)",
    )
    train.add_argument(
        "--option",
        type=_option,
        action="append",
        metavar="KEY=VALUE",
        help="schedule option (repeatable)",
    )

    meta = sub.add_parser(
        "meta-train",
        help="meta-train a schedule network on a task",
        description="Meta-train a schedule network on a task with its held-out meta split.",
    )
    _common(meta)
    meta.add_argument(
        "--meta-interval",
        type=_positive_int,
        help="steps between meta updates (default: the paper's ratio)",
    )
    meta.add_argument(
        "--meta-lr", type=_finite_float, default=1e-3, help="Adam lr of the network (default 1e-3)"
    )
    meta.add_argument(
        "--meta-weight-decay",
        type=_finite_float,
        default=1e-4,
        help="its weight decay (default 1e-4)",
    )
    meta.add_argument(
        "--save-epochs", type=_epoch_list, help="epochs to save snapshots at, e.g. 1,100,200"
    )

    compare = sub.add_parser(
        "compare",
        help="tables and plots from run directories",
        description="Compare runs: a markdown/CSV table (mean ± std over seeds) and PNG plots.",
    )
    compare.add_argument(
        "runs", nargs="+", metavar="DIR", help="run directories or folders of them"
    )
    compare.add_argument("--out", help="where to write the report (default: ./comparison)")
    compare.add_argument("--title", default="Comparison", help="report title")

    demo = sub.add_parser(
        "demo",
        help="meta-train, transfer and compare on scikit-learn's digits",
        description=(
            "The main job on the embedded data: meta-train a schedule network on digits (MLP), "
            "transfer it to a digits CNN, run baselines, and write a report with plots."
        ),
    )
    demo.add_argument(
        "--out", default="mlrsnet-demo", help="output directory (default ./mlrsnet-demo)"
    )
    demo.add_argument("--quick", action="store_true", help="a smaller demo (for CI)")
    demo.add_argument("--seeds", type=_positive_int, help="seeds per method")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--quiet", action="store_true")

    tasks_parser = sub.add_parser(
        "tasks",
        help="list the tasks",
        description="List the tasks and whether their data is present.",
    )
    tasks_parser.add_argument(
        "--data-dir", help="data root to look in (default: $MLRSNET_DATA, standard places)"
    )
    sub.add_parser(
        "schedules",
        help="list the schedules",
        description="List baseline schedules and shipped networks.",
    )
    return parser


def _version() -> str:
    from mlrsnet import __version__

    return __version__


def _config_text(path: Path, key: str, value: Any, action: argparse.Action) -> str:
    """A TOML value as the text its flag would have been given, so that it goes through the
    flag's own checks (a TOML ``lr = inf`` meets the same error as ``--lr inf``)."""

    def scalar(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float, str)):
            return str(item)
        raise CommandError(f"{path}: {key}: expected a single value, got {item!r}")

    if isinstance(value, list):
        if action.type is not _epoch_list:
            raise CommandError(f"{path}: {key}: expected a single value, got {value!r}")
        return ",".join(scalar(item) for item in value)
    return scalar(value)


def _config_value(path: Path, key: str, value: Any, action: argparse.Action) -> Any:
    """Check one setting of a config file as its flag is checked; the parsed value."""
    if action.dest == "option":
        if not isinstance(value, dict):
            raise CommandError(f"{path}: 'option' must be a table of schedule options")
        bad = [k for k in value if not k.isidentifier()]
        if bad:
            raise CommandError(f"{path}: option: bad option name {bad[0]!r}")
        return list(value.items())
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise CommandError(f"{path}: {key} must be true or false, got {value!r}")
        return value
    if action.type is None:  # a string flag: a file name, a device, a task name, ...
        if not isinstance(value, str):
            raise CommandError(f"{path}: {key}: expected a string, got {value!r}")
        parsed: Any = value
    else:
        try:
            parsed = action.type(_config_text(path, key, value, action))
        except argparse.ArgumentTypeError as err:
            raise CommandError(f"{path}: {key}: {err}") from None
    if action.choices is not None and parsed not in action.choices:
        raise CommandError(f"{path}: {key} must be one of {', '.join(map(str, action.choices))}")
    return parsed


def _apply_config_file(
    parser: argparse.ArgumentParser, sub: argparse.ArgumentParser, argv: Sequence[str]
) -> None:
    """Load ``--config FILE`` into ``sub``'s defaults so that flags override it.

    Every value goes through the same checks as the flag of the same name: the same types
    (finite numbers, positive integers, ...) and choices, and the same one-line error,
    naming the file and the key.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    path = Path(known.config)
    if not path.is_file():
        raise CommandError(f"config file not found: {path}")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CommandError(f"{path}: not valid TOML ({err})") from None
    dests = {a.dest: a for a in sub._actions if a.dest not in ("help", "config")}
    values: dict[str, Any] = {}
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest not in dests:
            raise CommandError(
                f"{path}: unknown setting {key!r}; known: {', '.join(sorted(dests))}"
            )
        values[dest] = _config_value(path, key, value, dests[dest])
    sub.set_defaults(**values)


def _command_index(argv: Sequence[str], commands: Any) -> int | None:
    """Where the subcommand is in ``argv``: after the top-level flags (``-v``), which take
    no values, so it is the first word that is not a flag."""
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            return i if word in commands else None
    return None


# -- commands -----------------------------------------------------------------------


def _run_config(args: argparse.Namespace, kind: str):
    from mlrsnet.lab.runner import RunConfig

    if not args.task:
        raise CommandError("--task is required (see `mlrsnet tasks`)")
    if not args.out:
        raise CommandError("--out is required: the run directory")
    fields: dict[str, Any] = dict(
        task=args.task,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        train_fraction=args.train_fraction,
        noise=args.noise,
        noise_rate=args.noise_rate,
        num_meta=args.num_meta,
        checkpoint_every=args.checkpoint_every,
        augment=False if args.no_augment else None,
        label=args.label,
        command=shlex.join(["mlrsnet", *args.argv]),
    )
    if kind == "train":
        if not args.schedule:
            raise CommandError("--schedule is required (see `mlrsnet schedules`)")
        fields["schedule"] = args.schedule
        fields["options"] = dict(args.option or [])
        fields.update(validation=args.validation, test_eval=args.test_eval)
    else:
        fields.update(
            meta_interval=args.meta_interval,
            meta_lr=args.meta_lr,
            meta_weight_decay=args.meta_weight_decay,
            save_epochs=args.save_epochs,
        )
    return RunConfig(**fields)


class _Progress:
    """A tqdm bar over steps, epoch lines, and optional TensorBoard scalars."""

    def __init__(
        self, quiet: bool, out: str | None = None, tensorboard: bool = False, desc: str = ""
    ) -> None:
        self.quiet, self.bar, self.desc = quiet, None, desc
        self._writer: Any = None
        self._open_writer: Any = None
        if tensorboard and out:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise CommandError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            # opened at the first step, so that a run failing at start leaves no files
            self._open_writer = lambda: SummaryWriter(str(Path(out) / "tensorboard"))

    @property
    def writer(self) -> Any:
        if self._writer is None and self._open_writer is not None:
            self._writer = self._open_writer()
        return self._writer

    def step(self, info: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss", info["loss"], info["step"])
            self.writer.add_scalar("train/lr", info["lr"], info["step"])
        if self.quiet:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=info["total_steps"], initial=info["step"] - 1, desc=self.desc, unit="step",
                            dynamic_ncols=True, leave=False)  # fmt: skip
        self.bar.update(1)
        if info["step"] % 10 == 0 or info["step"] == info["total_steps"]:
            self.bar.set_postfix(
                epoch=info["epoch"],
                loss=f"{info['loss']:.4f}",
                lr=f"{info['lr']:.4g}",
                refresh=False,
            )

    def epoch(self, record: dict[str, Any]) -> None:
        if self.writer is not None:
            for key in ("train_loss", "test_loss", "test_metric", "val_loss", "val_metric"):
                if record.get(key) is not None:  # test_eval="end": no test until the last epoch
                    self.writer.add_scalar(f"epoch/{key}", record[key], record["epoch"])
        if self.quiet:
            return
        evaluated = "".join(
            f"  {split} loss {record[f'{split}_loss']:.4f}  {split} metric {record[f'{split}_metric']:.2f}"
            for split in ("test", "val")
            if record.get(f"{split}_metric") is not None
        )
        line = (
            f"{self.desc} epoch {record['epoch']:3d}  step {record['step']:6d}  "
            f"train loss {record['train_loss']:.4f}{evaluated}  lr {record['lr']:.4g}"
        )
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._writer is not None:
            self._writer.close()


def _missing_ancestor(path: Path) -> Path | None:
    """The topmost folder of ``path`` (itself included) that does not exist yet, or None."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_empty_folders(path: Path, top: Path) -> None:
    """Remove ``path`` and its parents up to ``top`` while they are empty (``os.rmdir`` refuses
    a folder that holds anything)."""
    for folder in (path, *path.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return


def _cmd_run(args: argparse.Namespace, kind: str) -> int:
    import torch

    from mlrsnet.lab.rundir import CHECKPOINT_FILE
    from mlrsnet.lab.runner import run

    if args.threads:
        torch.set_num_threads(args.threads)

    config = _run_config(args, kind)
    if not args.quiet:
        _note_plus_base(config.schedule, config.lr)
    out = Path(config.out)
    created = _missing_ancestor(out)  # what the run creates; removed again if it fails empty
    # A checkpoint there means the runner resumes (or, for a finished run, only reads the
    # summary back); it checks the settings first, so the line is printed at the first step.
    resuming = (out / CHECKPOINT_FILE).is_file()
    steps_this_call = 0
    progress = _Progress(args.quiet, config.out, args.tensorboard, desc=f"{config.task}")

    def on_step(info: dict[str, Any]) -> None:
        nonlocal steps_this_call
        steps_this_call += 1
        if resuming and steps_this_call == 1 and not args.quiet:
            print(f"resuming {config.out} at epoch {info['epoch']}, step {info['step'] - 1} "
                  f"of {info['total_steps']}", flush=True)  # fmt: skip
        progress.step(info)

    try:
        summary = run(
            config,
            kind=kind,
            on_step=on_step,
            on_epoch=progress.epoch,
            stop_after_steps=args.stop_after_steps,
        )
    except BaseException:
        if created is not None:
            _remove_empty_folders(out, created)
        raise
    finally:
        progress.close()
    if not summary.get("completed"):
        if not args.quiet:
            _print_probe(summary)
            done = f"after {args.stop_after_steps} steps" if args.stop_after_steps else "early"
            print(f"stopped {done}; run the same command again to continue ({config.out})")
        return 0
    if not args.quiet:
        metric = summary.get("final_test_metric")
        unit = "%" if summary["metric"] == "accuracy" else " perplexity"
        shown = "n/a" if metric is None else f"{metric:.2f}{unit}"
        best = summary.get("best_test_metric")
        best_shown = "n/a" if best is None else f"{best:.2f}"
        if resuming and steps_this_call == 0:
            print(f"{config.out}: run already complete ({summary.get('epochs')} epochs, "
                  f"{summary.get('steps')} steps), nothing to train; final test "
                  f"{summary['metric']} {shown} (best {best_shown})")  # fmt: skip
            return 0
        _print_probe(summary)
        print(f"done: final test {summary['metric']} {shown} (best {best_shown}); "
              f"results in {config.out}")  # fmt: skip
        if kind == "meta-train" and summary.get("schedule_file"):
            print(f"schedule network: {Path(config.out) / 'schedule.safetensors'} "
                  f"(use --schedule mlrsnet:{Path(config.out) / 'schedule.safetensors'})")  # fmt: skip
    return 0


def _note_plus_base(schedule: str, lr: Any) -> None:
    """Say so when an MLR-SNet+ network meta-trained at the rate a user types runs at the
    probe's rate (the benchmark's ablation c for ``v6``: a worse use of it); not for a network
    under the user-rate contract, whose zero-tuning mode that is."""
    if lr != _PROBE or not schedule.startswith("mlrsnet-plus:"):
        return
    from mlrsnet import plus

    try:
        manifest = plus.resolve(schedule.split(":", 1)[1])[1]
    except (FileNotFoundError, ValueError):
        return  # the run reports a bad network with its own error
    if manifest.get("contract") == "user-rate":
        return
    if manifest.get("config", {}).get("base") == "user":
        print(f"note: {schedule} was meta-trained at the rate a user types and is meant to run "
              "without the probe (at the task's rate or your --lr); at the probe's rate the "
              "held-out benchmark measured it worse (docs/plus.md)", file=sys.stderr)  # fmt: skip


def _print_probe(summary: dict[str, Any]) -> None:
    """The base rate an ``--lr probe`` run found, and what the probe cost."""
    if summary.get("probe_lr") is not None:
        print(f"probe: base rate {summary['probe_lr']:.4g} after {summary['probe_steps']} steps "
              f"({summary['probe_seconds']:.1f} s, besides the run's own time)")  # fmt: skip


def _cmd_compare(args: argparse.Namespace) -> int:
    from mlrsnet.lab import report

    runs = report.find_runs([Path(p) for p in args.runs])
    if not runs:
        raise CommandError(f"no runs (summary.json) found under {', '.join(args.runs)}")
    out = Path(args.out or "comparison")
    rows = report.summarize(runs)
    md, csv = report.write_table(rows, out)
    report.plot_runs(runs, out)
    path = report.write_report(runs, out, title=args.title)
    print(f"{len(runs)} runs compared: {path} (table {md}, {csv})")
    return 0


def _cmd_tasks(data_dir: str | None) -> int:
    from mlrsnet.lab import tasks
    from mlrsnet.lab.tasks import datasets

    available = set(tasks.available(data_dir=data_dir))
    missing: dict[str, list[str]] = {}  # dataset -> its tasks
    for name in tasks.names():
        spec = tasks.spec(name)
        if name not in available:
            missing.setdefault(spec.dataset, []).append(name)
        mark = "yes" if name in available else "missing"
        print(f"{name:24s} {getattr(spec, 'description', '')}  [data: {mark}]")
    if not missing:
        return 0
    print("missing data (each folder is searched directly and in the dataset's usual subfolder):")
    for dataset, names in missing.items():
        print(f"  {dataset} ({', '.join(names)}): {_looked_in(datasets, dataset, data_dir)}")
    env = datasets.ENV_VAR
    now = "" if data_dir is not None else f" ({env} is {os.environ.get(env) or 'not set'})"
    print(f"look elsewhere with --data-dir DIR or {env}=DIR{now}; "
          "`mlrsnet train --task NAME` names the files a task needs")  # fmt: skip
    return 0


def _looked_in(datasets: Any, dataset: str, data_dir: str | None) -> str:
    """Where ``dataset``'s files were looked for: the data roots, without their subfolders."""
    try:
        datasets.locate(dataset, data_dir)
    except FileNotFoundError:
        pass
    except ValueError:  # a dataset that reads no files
        return "not available here"
    else:  # the files are there but cannot be read (SVHN without scipy)
        return "files found, but reading them needs scipy (pip install scipy)"
    folders = datasets.search_dirs(dataset, data_dir)
    roots = [f for i, f in enumerate(folders) if not any(f.is_relative_to(r) for r in folders[:i])]
    return "looked in " + ", ".join(str(r) for r in roots)


def _cmd_schedules() -> int:
    from mlrsnet import hub, plus
    from mlrsnet.lab import baselines
    from mlrsnet.lab.benchmark.plan import RECOMMENDED_PLUS, plus_base

    names = [n for n in baselines.names() if n not in ("mlrsnet", "mlrsnet-plus")]
    print("baselines:", ", ".join(names))
    from mlrsnet.lab.plus_training import contract

    base_of = {"probe": "meta-trained at --lr probe", "user": "meta-trained at the task's --lr"}
    plus_names = []
    for name in plus.pretrained_names():
        net, manifest = plus.pretrained(name)
        base = plus_base(name)
        mode = manifest.get("contract") or contract(base, manifest.get("config", {}).get("peak"))
        notes = [f"{mode} mode", base_of[base]]
        if net.prior is not None:
            notes.append("corrects a warmup-stable-decay")
        if net.reads_validation:
            notes.append("reads a validation loss (observe_validation)")
        bound = 2.0 if net.prior is None else net.prior.limit  # the multiplier's own bound
        if net.peak is not None:
            notes.append(f"its rate at most {net.peak:g}x the --lr (declared; --option "
                         "peak=Infinity lifts it)")  # fmt: skip
        else:
            notes.append(f"its rate up to {bound * net.scale('sgd'):.3g}x the --lr with SGD, "
                         f"{bound * net.scale('adaptive'):.3g}x with AdamW "
                         "(--option peak=1: the --lr is the peak)")  # fmt: skip
        if mode == "user-rate":
            notes.append("zero-tuning mode: --lr probe (the probe's rate as the --lr)")
        if name == RECOMMENDED_PLUS:
            notes.append("recommended")
        plus_names.append(f"{name} ({'; '.join(notes)})")
    for kind, shipped in (("mlrsnet", hub.pretrained_names()), ("mlrsnet-plus", plus_names)):
        print(f"{kind} networks (--schedule {kind}:NAME):",
              ", ".join(shipped) if shipped else "none shipped")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlrsnet`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        at = _command_index(argv, subparsers.choices)
        if at is not None:  # also after top-level flags: `mlrsnet -v train --config FILE`
            _apply_config_file(parser, subparsers.choices[argv[at]], argv[at + 1 :])
        args = parser.parse_args(argv)
        args.argv = argv
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if args.command is None:
            parser.print_help()
            return 2
        start = time.perf_counter()
        if args.command in ("train", "meta-train"):
            return _cmd_run(args, args.command)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "demo":
            from mlrsnet.lab.demo import run_demo

            say = None if args.quiet else (lambda line: print(line, flush=True))
            path = run_demo(
                Path(args.out), quick=args.quick, seeds=args.seeds, device=args.device, progress=say
            )
            print(f"demo finished in {time.perf_counter() - start:.0f} s; report: {path}")
            return 0
        if args.command == "tasks":
            return _cmd_tasks(args.data_dir)
        if args.command == "schedules":
            return _cmd_schedules()
        raise CommandError(f"unknown command {args.command!r}")
    except (CommandError, ValueError, TypeError, FileNotFoundError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"mlrsnet: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk, the file system, a run directory in use
        if err.strerror:  # "path: No space left on device"
            where = f"{err.filename}: " if err.filename else ""
            message = f"{where}{err.strerror}"
        else:
            message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"mlrsnet: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlrsnet: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
