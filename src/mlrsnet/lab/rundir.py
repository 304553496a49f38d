"""The run-directory format: the one owner of the files a run writes and a report reads.

A run directory holds:

- ``metrics.jsonl``: one JSON record per epoch (``epoch``, ``step``, ``train_loss``,
  ``test_loss``, ``test_metric`` — accuracy in percent or perplexity —, ``lr``,
  ``wall_seconds``; meta-training adds ``meta_loss`` and ``meta_steps``);
- ``lr.csv``: ``step,lr,loss`` for every optimizer step;
- ``summary.json``: task, schedule, seed, final and best test metric, wall time, versions,
  the command line; ``completed`` once the run has finished;
- ``checkpoint.pt``: everything needed to continue (written atomically, read with
  ``torch.load(weights_only=True)``), including how many bytes of each log it had seen and
  their SHA-256, so that a resumed run refuses a log that was cut short or changed;
- for meta-training, ``schedule.safetensors`` + ``schedule.json``: the network's snapshots
  (see :mod:`mlrsnet.hub`);
- ``.lock`` while a process runs there: it holds an exclusive ``flock`` on it for the run's
  life (the operating system releases it when the process dies), so a second process on the
  same folder is refused (:class:`RunInUseError`) instead of corrupting the run.

JSON files are strict JSON: a non-finite number (a diverged loss) is written as ``null``.

:class:`RunDir` writes them for :mod:`mlrsnet.lab.runner`; :func:`read_summary`,
:func:`read_metrics` and :func:`read_lr` read them for :mod:`mlrsnet.lab.report` and the
benchmarks.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import platform
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mlrsnet
from mlrsnet import hub, jsonio
from mlrsnet.atomic import atomic_write
from mlrsnet.lab.metrics import HIGHER_IS_BETTER
from mlrsnet.net import MLRSNet

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "LOCK_FILE",
    "LR_FILE",
    "METRICS_FILE",
    "SCHEDULE_FILE",
    "SUMMARY_FILE",
    "RunDir",
    "RunInUseError",
    "is_run",
    "read_lr",
    "read_metrics",
    "read_summary",
    "versions",
]

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
LR_FILE = "lr.csv"
CHECKPOINT_FILE = "checkpoint.pt"
SCHEDULE_FILE = "schedule.safetensors"
LOCK_FILE = ".lock"
#: The checkpoint layout: 2 holds the model and the method's state side by side.
CHECKPOINT_FORMAT = 2

_SUMMARY_NUMBERS = ("final_test_metric", "best_test_metric", "final_test_loss", "wall_seconds")
_SUMMARY_INTS = ("seed", "epochs", "steps")
_METRICS_REQUIRED = ("epoch", "train_loss", "test_metric")
_METRICS_NUMBERS = ("step", "train_loss", "test_loss", "test_metric", "lr", "wall_seconds")


def versions() -> dict[str, str]:
    """The versions and machine a run records in its summary."""
    return {
        "mlrsnet": mlrsnet.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
        "platform": platform.platform(),
    }


class RunInUseError(OSError):
    """Another process is running in this run directory (it holds the folder's lock)."""


def _check_lr_text(text: str) -> str | None:
    """What is wrong with a committed ``lr.csv``, or ``None``: header, three numbers a row."""
    lines = text.split("\n")[:-1]
    if not lines or lines[0] != "step,lr,loss":
        return "line 1 is not the header 'step,lr,loss'"
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        try:
            ok = len(cells) == 3 and float(cells[0]).is_integer() and [float(c) for c in cells]
        except ValueError:
            ok = False
        if not ok:
            return f"line {lineno} is not 'step,lr,loss': {line[:60]!r}"
    return None


def _check_metrics_text(text: str) -> str | None:
    """What is wrong with a committed ``metrics.jsonl``, or ``None``: one object a line."""
    for lineno, line in enumerate(text.split("\n")[:-1], start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            return f"line {lineno}: {err.msg}"
        if not isinstance(record, dict) or "epoch" not in record:
            return f"line {lineno} is not an epoch record"
    return None


def _committed_bytes(
    path: Path, committed: int, digest: str | None, check: Callable[[str], str | None] | None
) -> bytes:
    """The first ``committed`` bytes of the log ``path``, checked against the checkpoint."""
    afresh = (
        f"restore it, or start the run afresh (remove {path.parent / CHECKPOINT_FILE}, "
        "or use another --out)"
    )
    if not isinstance(committed, int) or isinstance(committed, bool) or committed < 0:
        raise ValueError(f"{path}: the checkpoint's committed length {committed!r} is "
                         "not a byte count")  # fmt: skip
    if not path.is_file():
        raise ValueError(f"{path}: missing, but the checkpoint committed {committed} "
                         f"bytes of it; {afresh}")  # fmt: skip
    size = path.stat().st_size
    if size < committed:
        raise ValueError(
            f"{path}: {size} bytes, shorter than the {committed} bytes the checkpoint "
            f"committed (the file was cut or replaced); {afresh}"
        )
    with open(path, "rb") as f:
        data = f.read(committed)
    if digest is not None:
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{path}: its first {committed} bytes differ from what the "
                             f"checkpoint committed (the file was changed); {afresh}")  # fmt: skip
        return data
    # a checkpoint of an older version records no digest: check the form of the lines
    try:
        text = data.decode("utf-8")
        problem = None if not text or text.endswith("\n") else "it ends inside a line"
    except UnicodeDecodeError:
        text, problem = "", "it is not UTF-8 text"
    if problem is None and "\x00" in text:
        problem = "it holds NUL bytes"
    if problem is None and check is not None:
        problem = check(text)
    if problem is not None:
        raise ValueError(f"{path}: the {committed} bytes the checkpoint committed are "
                         f"damaged ({problem}); {afresh}")  # fmt: skip
    return data


class _AppendLog:
    """A text file written in append mode whose committed length and SHA-256 live in the checkpoint.

    Resuming, the file must still hold the committed bytes unchanged: a file cut below the
    committed length, or whose committed part changed, is refused (never padded); what was
    written after the commit (by a killed process) is cut off.
    """

    def __init__(
        self,
        path: Path,
        header: str,
        committed: int | None,
        digest: str | None = None,
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        self.path = path
        self.pending: list[str] = []
        if committed is None:
            data = header.encode()
            with open(path, "wb") as f:
                f.write(data)
            self._hash = hashlib.sha256(data)
            self.size = len(data)
            return
        self._hash = hashlib.sha256(_committed_bytes(path, committed, digest, check))
        self.size = committed
        with open(path, "r+b") as f:
            f.truncate(committed)  # only ever shorter: the bytes of a write after the commit

    def add(self, line: str) -> None:
        self.pending.append(line)

    def commit(self) -> int:
        data = "".join(self.pending).encode()
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.pending.clear()
        self._hash.update(data)
        self.size += len(data)
        return self.size

    @property
    def digest(self) -> str:
        """The SHA-256 of the committed bytes."""
        return self._hash.hexdigest()


class RunDir:
    """The files of one run: logs, checkpoint, summary and schedule snapshots.

    Args:
        path: The run directory (created by :meth:`prepare`).

    Example:
        >>> import tempfile
        >>> run_dir = RunDir(tempfile.mkdtemp())
        >>> run_dir.prepare()
        >>> run_dir.open_logs(None)
        >>> run_dir.log_step(1, 0.1, 2.3)
        >>> run_dir.commit_logs()["lr_log_offset"]  # bytes: the header and one row
        23
        >>> read_lr(run_dir.path / LR_FILE)[1]
        array([0.1])
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lr_log: _AppendLog | None = None
        self._metrics_log: _AppendLog | None = None

    def _make_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.path} is a file, not a run directory; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder (created if needed) for the ``with`` block.

        An OS-level ``flock`` on ``.lock`` in the folder, which holds the holder's pid: the
        operating system releases it when the process ends, however it ends. The file is
        removed on a normal release. Where ``fcntl`` is missing (Windows), nothing is locked.

        Raises:
            RunInUseError: If another process holds it (the message names the folder and pid).
            ValueError: If the path is a file.
        """
        self._make_folder()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            logger.warning("%s: no fcntl here; the run directory is not locked", self.path)
            yield
            return
        path = self.path / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunInUseError(
                    f"{self.path} is in use by another run (pid {holder}); wait for it to end, "
                    "or use another --out"
                ) from None
            try:  # the holder we waited for may have removed the file it locked: lock anew
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            path.unlink(missing_ok=True)  # still held: a process waiting on it locks anew
            os.close(fd)

    def prepare(self) -> None:
        """Create the folder; drop temporary files of a write killed half-way (the file
        each one replaces is intact). Run it under :meth:`lock`: the temporary file of a
        write in progress looks the same."""
        self._make_folder()
        for leftover in self.path.glob("*.tmp"):
            leftover.unlink()

    # -- checkpoint ------------------------------------------------------------------

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint, or ``None`` when the run has none yet.

        Raises:
            ValueError: If the file cannot be read safely or has another layout.
        """
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            return None
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - named and re-raised
            raise ValueError(
                f"{path}: not a loadable run checkpoint (read with weights_only=True; "
                f"{type(err).__name__}); remove it to start the run afresh"
            ) from err
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
            raise ValueError(
                f"{path}: checkpoint format {found!r}, expected {CHECKPOINT_FORMAT} "
                "(made by another version); use another --out or remove the folder"
            )
        for key in ("lr_log_offset", "metrics_offset"):
            value = checkpoint.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{path}: {key} must be a byte count, got {value!r}; remove the "
                                 "checkpoint to start the run afresh")  # fmt: skip
        return checkpoint

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Commit the logs, then write ``state`` with the logs' committed lengths, atomically."""
        state = {"format": CHECKPOINT_FORMAT, **state, **self.commit_logs()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.path / CHECKPOINT_FILE, buffer.getvalue())

    # -- logs ------------------------------------------------------------------------

    def open_logs(self, checkpoint: Mapping[str, Any] | None) -> None:
        """Start the logs afresh, or check the folder against ``checkpoint`` and cut the logs
        back to what it had seen.

        Raises:
            ValueError: If a log is shorter than the checkpoint committed, or its committed
                part changed, or the schedule file of the checkpoint's snapshots is missing
                or holds others (the message says what to do).
        """
        if checkpoint is None:
            lr_log = _AppendLog(self.path / LR_FILE, "step,lr,loss\n", None)
            metrics_log = _AppendLog(self.path / METRICS_FILE, "", None)
        else:
            self._check_schedule(checkpoint)
            lr_log = _AppendLog(self.path / LR_FILE, "step,lr,loss\n",
                                checkpoint["lr_log_offset"], checkpoint.get("lr_log_sha256"),
                                _check_lr_text)  # fmt: skip
            metrics_log = _AppendLog(self.path / METRICS_FILE, "", checkpoint["metrics_offset"],
                                     checkpoint.get("metrics_sha256"), _check_metrics_text)  # fmt: skip
        self._lr_log, self._metrics_log = lr_log, metrics_log

    def check_logs(self, checkpoint: Mapping[str, Any]) -> None:
        """Check the logs against ``checkpoint`` without changing them (a completed run's).

        Raises:
            ValueError: As :meth:`open_logs`.
        """
        _committed_bytes(self.path / LR_FILE, checkpoint["lr_log_offset"],
                         checkpoint.get("lr_log_sha256"), _check_lr_text)  # fmt: skip
        _committed_bytes(self.path / METRICS_FILE, checkpoint["metrics_offset"],
                         checkpoint.get("metrics_sha256"), _check_metrics_text)  # fmt: skip

    def _check_schedule(self, checkpoint: Mapping[str, Any]) -> None:
        """A meta-training checkpoint with snapshots needs the schedule file that holds them."""
        method = checkpoint.get("method")
        snapshots = method.get("snapshots") if isinstance(method, Mapping) else None
        if not snapshots:
            return
        path = self.path / SCHEDULE_FILE
        afresh = (f"restore it, or start the run afresh (remove {self.path / CHECKPOINT_FILE}, "
                  "or use another --out)")  # fmt: skip
        if not path.is_file():
            raise ValueError(f"{path}: missing, but the checkpoint holds {len(snapshots)} "
                             f"snapshot(s) written to it; {afresh}")  # fmt: skip
        try:
            saved = hub.load_schedule(path).snapshots
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: unreadable ({err}); {afresh}") from err
        if saved[: len(snapshots)] != list(snapshots):
            raise ValueError(f"{path}: holds snapshots {saved}, the checkpoint "
                             f"{list(snapshots)}; {afresh}")  # fmt: skip

    def log_step(self, step: int, lr: float, loss: float) -> None:
        """Add one optimizer step to ``lr.csv`` (written at the next commit)."""
        assert self._lr_log is not None, "open_logs first"
        self._lr_log.add(f"{step},{lr!r},{loss!r}\n")

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Add one epoch's record to ``metrics.jsonl`` (written at the next commit; strict
        JSON: a non-finite number is written as ``null``)."""
        assert self._metrics_log is not None, "open_logs first"
        self._metrics_log.add(jsonio.dumps(record) + "\n")

    def commit_logs(self) -> dict[str, Any]:
        """Write what the logs hold, synced; their committed lengths and SHA-256, for the
        checkpoint."""
        assert self._lr_log is not None and self._metrics_log is not None, "open_logs first"
        return {
            "lr_log_offset": self._lr_log.commit(),
            "metrics_offset": self._metrics_log.commit(),
            "lr_log_sha256": self._lr_log.digest,
            "metrics_sha256": self._metrics_log.digest,
        }

    # -- summary and schedule --------------------------------------------------------

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json`` atomically (strict JSON: non-finite numbers as ``null``)."""
        atomic_write(self.path / SUMMARY_FILE, (jsonio.dumps(summary, indent=2) + "\n").encode())

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` (see :func:`read_summary`)."""
        return read_summary(self.path / SUMMARY_FILE)

    def read_metrics(self) -> list[dict[str, Any]]:
        """``metrics.jsonl`` (see :func:`read_metrics`)."""
        return read_metrics(self.path / METRICS_FILE)

    def save_schedule(
        self, snapshots: Mapping[str, MLRSNet], planned: int, manifest: Mapping[str, Any]
    ) -> None:
        """Write the schedule snapshots so far; snapshot ``i`` of ``planned`` starts at ``i/planned``."""
        fractions = [i / planned for i in range(len(snapshots))]
        hub.save_schedule(self.path / SCHEDULE_FILE, dict(snapshots), dict(manifest),
                          fractions=fractions)  # fmt: skip


def is_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a run directory (it holds a summary)."""
    return (Path(path) / SUMMARY_FILE).is_file()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's ``summary.json``, checked.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If it is malformed; the message names the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run directory has no {SUMMARY_FILE}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed JSON: {exc}") from exc
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    if not isinstance(summary.get("task"), str) or not summary["task"]:
        raise ValueError(f"{path}: 'task' must be a non-empty string")
    if not (summary.get("schedule") or summary.get("label")):
        raise ValueError(f"{path}: needs a 'schedule' (or 'label')")
    for key in ("schedule", "label"):
        if summary.get(key) is not None and not isinstance(summary[key], str):
            raise ValueError(f"{path}: '{key}' must be a string, got {summary[key]!r}")
    if summary.get("metric") not in HIGHER_IS_BETTER:
        raise ValueError(
            f"{path}: 'metric' must be one of {sorted(HIGHER_IS_BETTER)}, "
            f"got {summary.get('metric')!r}"
        )
    for key in _SUMMARY_NUMBERS:
        value = summary.get(key)
        if value is not None and not _is_number(value):
            raise ValueError(f"{path}: '{key}' must be a number, got {value!r}")
    for key in _SUMMARY_INTS:
        value = summary.get(key)
        if value is not None and not (_is_number(value) and float(value).is_integer()):
            raise ValueError(f"{path}: '{key}' must be an integer, got {value!r}")
    if "completed" in summary and not isinstance(summary["completed"], bool):
        raise ValueError(f"{path}: 'completed' must be true or false")
    return summary


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl``, one dict per epoch; a missing file is logged and empty.

    Raises:
        ValueError: If a line is malformed; the message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        logger.warning("%s: missing; the run has no per-epoch metrics", path)
        return []
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno}: malformed JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {lineno}: expected a JSON object")
            for key in _METRICS_REQUIRED:
                if key not in row:
                    raise ValueError(f"{path}: line {lineno}: missing '{key}'")
            epoch = row["epoch"]
            if not (_is_number(epoch) and float(epoch).is_integer()):
                raise ValueError(f"{path}: line {lineno}: 'epoch' must be an integer")
            for key in _METRICS_NUMBERS:
                value = row.get(key)
                if value is not None and not _is_number(value):
                    raise ValueError(
                        f"{path}: line {lineno}: '{key}' must be a number, got {value!r}"
                    )
            rows.append(row)
    return rows


def read_lr(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's ``lr.csv`` as ``(steps int64, lr float64, loss float64)``; missing: empty.

    Raises:
        ValueError: If a line is malformed; the message names the file and the line.
    """
    path = Path(path)
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if not path.is_file():
        logger.warning("%s: missing; the run has no per-step learning rates", path)
        return empty
    steps: list[int] = []
    lrs: list[float] = []
    losses: list[float] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return empty
        names = [h.strip() for h in header]
        if "step" not in names or "lr" not in names:
            raise ValueError(f"{path}: line 1: header must be 'step,lr,loss', got {header!r}")
        i_step, i_lr = names.index("step"), names.index("lr")
        i_loss = names.index("loss") if "loss" in names else None
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            lineno = reader.line_num
            if len(row) != len(names):
                raise ValueError(
                    f"{path}: line {lineno}: expected {len(names)} fields, got {len(row)}"
                )
            try:
                step = float(row[i_step])
                if not step.is_integer():
                    raise ValueError(f"step {row[i_step]!r} is not an integer")
                steps.append(int(step))
                lrs.append(float(row[i_lr]))
                cell = row[i_loss].strip() if i_loss is not None else ""
                losses.append(float(cell) if cell else math.nan)
            except ValueError as exc:
                raise ValueError(f"{path}: line {lineno}: {exc}") from exc
    return (
        np.asarray(steps, dtype=np.int64),
        np.asarray(lrs, dtype=np.float64),
        np.asarray(losses, dtype=np.float64),
    )
