"""Save, load and ship schedule networks: safetensors weights with a JSON manifest.

A *schedule* file holds one or more snapshots of an :class:`~mlrsnet.MLRSNet`
(the paper's transfer protocol uses three: meta-training epochs 1, 100 and 200,
switched in at 0, 1/3 and 2/3 of the new run). ``NAME.safetensors`` stores the
weights as ``{snapshot}.{parameter}`` with the format, version, network config
and snapshot list in its metadata; ``NAME.json`` beside it is the manifest
(source task, epochs, seed, the exact command, metrics, library version).
safetensors files hold tensors only, so loading one never runs code.

Example:
    >>> import tempfile, pathlib, mlrsnet
    >>> from mlrsnet.hub import save_schedule, load_schedule
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mine.safetensors"
    >>> _ = save_schedule(path, {"epoch_1": mlrsnet.MLRSNet()}, {"task": "demo"})
    >>> load_schedule(path).snapshots
    ['epoch_1']
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mlrsnet.atomic import atomic_write
from mlrsnet.net import MLRSNet

__all__ = [
    "AUTHORS_CHECKPOINTS",
    "FORMAT",
    "FORMAT_VERSION",
    "ScheduleBundle",
    "save_schedule",
    "load_schedule",
    "pretrained",
    "pretrained_names",
    "resolve",
]

FORMAT = "mlrsnet-schedule"
FORMAT_VERSION = "1"


@dataclass
class ScheduleBundle:
    """Snapshots of a schedule network and where each starts in a new run.

    Attributes:
        nets: One network per snapshot, in order.
        snapshots: Their names (e.g. ``["epoch_1", "epoch_100", "epoch_200"]``).
        fractions: Fraction of the new run at which each snapshot takes over.
        manifest: The manifest (empty for the authors' ``.pth`` files).
        source: Where it came from.
    """

    nets: list[MLRSNet]
    snapshots: list[str]
    fractions: list[float]
    manifest: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def stages(self) -> list[tuple[float, MLRSNet]]:
        """``[(fraction, net), ...]`` for :class:`~mlrsnet.MLRSNetLR`'s ``stages``."""
        return list(zip(self.fractions, self.nets, strict=True))


def save_schedule(
    path: str | os.PathLike[str],
    nets: Mapping[str, MLRSNet],
    manifest: Mapping[str, Any],
    *,
    fractions: Sequence[float] | None = None,
) -> Path:
    """Write ``nets`` to ``path`` (safetensors) and the manifest to ``path`` with ``.json``.

    Both files are written atomically (a temporary file, then a rename).

    Args:
        path: Target ``.safetensors`` file.
        nets: ``{snapshot name: network}``, in switch-in order; all of one shape.
        manifest: JSON-serialisable description (task, epochs, seed, command, ...).
        fractions: Where each snapshot takes over in a new run; default evenly
            spaced from 0 (``[0, 1/3, 2/3]`` for three, as in the paper).

    Returns:
        The path of the weights file.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_schedule: {path} must end in .safetensors")
    if not nets:
        raise ValueError("save_schedule: no networks to save")
    names = list(nets)
    configs = {json.dumps(n.config(), sort_keys=True) for n in nets.values()}
    if len(configs) != 1:
        raise ValueError(f"save_schedule: snapshots differ in shape: {sorted(configs)}")
    if fractions is None:
        fractions = [i / len(names) for i in range(len(names))]
    if len(fractions) != len(names):
        raise ValueError(f"save_schedule: {len(fractions)} fractions for {len(names)} snapshots")
    tensors = {}
    for name, net in nets.items():
        if "." in name:
            raise ValueError(f"save_schedule: snapshot name {name!r} must not contain '.'")
        for key, value in net.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu", torch.float32).contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": next(iter(configs)),
        "snapshots": json.dumps(names),
        "fractions": json.dumps([float(f) for f in fractions]),
    }
    full_manifest = {
        **dict(manifest),
        "snapshots": names,
        "fractions": [float(f) for f in fractions],
    }
    atomic_write(path.with_suffix(".json"), (json.dumps(full_manifest, indent=2) + "\n").encode())
    atomic_write(path, save(tensors, metadata=metadata))
    return path


#: The authors' released checkpoints (meta-training epochs 1, 100, 200), in stage order.
AUTHORS_CHECKPOINTS = ("mlr_snet_1.pth", "mlr_snet_100.pth", "mlr_snet_200.pth")


def load_schedule(path: str | os.PathLike[str]) -> ScheduleBundle:
    """Load a schedule saved by :func:`save_schedule` (or an authors' ``.pth`` checkpoint).

    A folder holding the authors' three released checkpoints (:data:`AUTHORS_CHECKPOINTS`)
    loads as the paper's transfer protocol: the three as stages switching at 1/3 and 2/3.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a schedule file of a known format version, or
            its tensors do not fit the recorded network (the message says what).
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir() and all((path / name).is_file() for name in AUTHORS_CHECKPOINTS):
        nets = [MLRSNet.from_original(path / name) for name in AUTHORS_CHECKPOINTS]
        stems = [Path(name).stem for name in AUTHORS_CHECKPOINTS]
        return ScheduleBundle(nets, stems, [0.0, 1 / 3, 2 / 3], {}, str(path))
    if not path.is_file():
        raise FileNotFoundError(f"schedule file not found: {path}")
    if path.suffix == ".pth":
        net = MLRSNet.from_original(path)
        return ScheduleBundle([net], [path.stem], [0.0], {}, str(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: not a safetensors file ({err})") from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not an mlrsnet schedule (format {metadata.get('format')!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: schedule format version {metadata.get('format_version')!r}; "
            f"this mlrsnet reads version {FORMAT_VERSION!r}"
        )
    config = json.loads(metadata["config"])
    names = json.loads(metadata["snapshots"])
    fractions = [float(x) for x in json.loads(metadata["fractions"])]
    nets = []
    for name in names:
        net = MLRSNet(**config)
        prefix = name + "."
        net.load_checked(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
            source=f"{path} snapshot {name!r}",
        )
        nets.append(net)
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return ScheduleBundle(nets, names, fractions, manifest, str(path))


def _pretrained_dir() -> Path:
    return Path(str(resources.files("mlrsnet") / "pretrained"))


def pretrained_names() -> list[str]:
    """Names of the schedule networks shipped inside the package.

    Example:
        >>> isinstance(pretrained_names(), list)
        True
    """
    folder = _pretrained_dir()
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def pretrained(name: str) -> ScheduleBundle:
    """Load a shipped schedule network by name (see :func:`pretrained_names`).

    Raises:
        ValueError: If no shipped schedule has that name (the message lists them).
    """
    path = _pretrained_dir() / f"{name}.safetensors"
    if not path.is_file():
        known = ", ".join(pretrained_names()) or "none"
        raise ValueError(f"no shipped schedule network named {name!r}; shipped: {known}")
    return load_schedule(path)


def resolve(spec: str) -> ScheduleBundle:
    """A shipped name, or a path to a ``.safetensors`` schedule or an authors' ``.pth``."""
    if spec in pretrained_names():
        return pretrained(spec)
    path = Path(spec).expanduser()
    if path.suffix in (".safetensors", ".pth") or path.exists():
        if path.is_dir() and not all((path / n).is_file() for n in AUTHORS_CHECKPOINTS):
            path = path / "schedule.safetensors"
        return load_schedule(path)
    known = ", ".join(pretrained_names()) or "none"
    raise ValueError(f"{spec!r} is neither a shipped schedule network ({known}) nor a file")
