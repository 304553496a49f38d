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

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mlrsnet import jsonio
from mlrsnet.atomic import atomic_write
from mlrsnet.net import MLRSNet

__all__ = [
    "AUTHORS_CHECKPOINTS",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_PARAMETERS",
    "ScheduleBundle",
    "save_schedule",
    "load_schedule",
    "pretrained",
    "pretrained_names",
    "resolve",
]

logger = logging.getLogger(__name__)

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

    Each file is replaced atomically (a temporary file, fsync, a rename), the weights
    first. The manifest records the SHA-256 of the weights it describes
    (``weights_sha256``), so a manifest that outlived a crash between the two renames is
    recognised by :func:`load_schedule` and not used: the pair is never mixed. The manifest
    is strict JSON (non-finite numbers are written as ``null``).

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
    weights = save(tensors, metadata=metadata)
    full_manifest = {
        **dict(manifest),
        "snapshots": names,
        "fractions": [float(f) for f in fractions],
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    manifest_bytes = (jsonio.dumps(full_manifest, indent=2) + "\n").encode()
    atomic_write(path, weights)
    atomic_write(path.with_suffix(".json"), manifest_bytes)
    return path


#: The authors' released checkpoints (meta-training epochs 1, 100, 200), in stage order.
AUTHORS_CHECKPOINTS = ("mlr_snet_1.pth", "mlr_snet_100.pth", "mlr_snet_200.pth")


#: The largest schedule network a file may describe (parameters per snapshot): the paper's
#: has 11,776; this bound keeps what a file can make the loader allocate at 64 MiB per
#: snapshot, whatever its header says.
MAX_PARAMETERS = 2**24
#: The tensor dtypes a schedule file may hold (safetensors names): floating point only.
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def _metadata_json(path: Path, metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except KeyError:
        raise ValueError(f"{path}: the header has no {key!r}") from None
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the header's {key!r} is not JSON ({err})") from None


def _checked_header(path: Path, metadata: Mapping[str, str]) -> tuple[dict, list, list]:
    """``(config, names, fractions)`` of a header, checked before anything is allocated."""
    config = _metadata_json(path, metadata, "config")
    keys = ("hidden_size", "num_layers", "projection_size")
    if not isinstance(config, dict) or set(config) - set(keys):
        raise ValueError(f"{path}: config {config!r} must hold only {', '.join(keys)}")
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{path}: config {key} must be a positive integer, got {value!r}")
    size = MLRSNet.parameter_count(**config)
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"{path}: config {config} describes a network of {size} parameters; "
            f"a schedule network may have at most {MAX_PARAMETERS}"
        )
    names = _metadata_json(path, metadata, "snapshots")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n and "." not in n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(f"{path}: snapshots must be a list of distinct names, got {names!r}")
    fractions = _metadata_json(path, metadata, "fractions")
    if (
        not isinstance(fractions, list)
        or len(fractions) != len(names)
        or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f)
            for f in fractions
        )
    ):
        raise ValueError(
            f"{path}: fractions must be {len(names)} finite numbers, one per snapshot, "
            f"got {fractions!r}"
        )
    return config, names, [float(f) for f in fractions]


def load_schedule(path: str | os.PathLike[str]) -> ScheduleBundle:
    """Load a schedule saved by :func:`save_schedule` (or an authors' ``.pth`` checkpoint).

    A folder holding the authors' three released checkpoints (:data:`AUTHORS_CHECKPOINTS`)
    loads as the paper's transfer protocol: the three as stages switching at 1/3 and 2/3.

    The header is checked before any tensor is read or network built: the format and
    version, a network of at most :data:`MAX_PARAMETERS` parameters, and every tensor's
    name, shape and dtype (floating point only: :data:`FLOAT_DTYPES`) against that network.
    The weights must be finite. A manifest beside the file whose ``weights_sha256`` names
    other weights (left by a crash between the two writes of :func:`save_schedule`) is not
    used: a warning says so, and the bundle's manifest is empty.

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
        handle = safe_open(str(path), framework="pt")
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: not a safetensors file ({err})") from err
    with handle as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path}: not an mlrsnet schedule (format {metadata.get('format')!r})")
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: schedule format version {metadata.get('format_version')!r}; "
                f"this mlrsnet reads version {FORMAT_VERSION!r}"
            )
        config, names, fractions = _checked_header(path, metadata)
        shapes = MLRSNet.parameter_shapes(**config)
        expected = {f"{n}.{k}": shape for n in names for k, shape in shapes.items()}
        problems = [f"missing {k}" for k in expected if k not in f.keys()]  # noqa: SIM118
        for key in f.keys():  # noqa: SIM118 - safe_open API
            if key not in expected:
                problems.append(f"unexpected {key}")
                continue
            header = f.get_slice(key)
            shape, dtype = tuple(header.get_shape()), header.get_dtype()
            if shape != expected[key]:
                problems.append(f"{key}: shape {shape} in the file, {expected[key]} in the network")
            elif dtype not in FLOAT_DTYPES:
                problems.append(f"{key}: dtype {dtype}; floating point expected")
        if problems:
            raise ValueError(
                f"{path} does not fit MLRSNet({config}): "
                + "; ".join(problems[:10])
                + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
            )
        tensors = {k: f.get_tensor(k) for k in expected}
    nets = []
    for name in names:
        net = MLRSNet(**config)
        prefix = name + "."
        net.load_checked(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
            source=f"{path} snapshot {name!r}",
        )
        nets.append(net)
    return ScheduleBundle(nets, names, fractions, _read_manifest(path), str(path))


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest beside ``path``: ``{}`` if absent or if it describes other weights."""
    manifest_path = path.with_suffix(".json")
    if not manifest_path.is_file():
        return {}
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest_path}: the manifest is not JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: the manifest must be a JSON object")
    recorded = manifest.get("weights_sha256")
    if recorded is not None and recorded != hashlib.sha256(path.read_bytes()).hexdigest():
        logger.warning(
            "%s describes other weights than %s (a write interrupted between the two files?); "
            "not used", manifest_path, path.name,
        )  # fmt: skip
        return {}
    return manifest


def shipped_dir(*subfolders: str) -> Path:
    """The package's folder of shipped networks (``mlrsnet/pretrained``, or a subfolder)."""
    return Path(str(resources.files("mlrsnet").joinpath("pretrained", *subfolders)))


def shipped_names(folder: Path) -> list[str]:
    """The names (stems) of the ``.safetensors`` files in ``folder``; none if it is absent."""
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def _pretrained_dir() -> Path:
    return shipped_dir()


def pretrained_names() -> list[str]:
    """Names of the schedule networks shipped inside the package.

    Example:
        >>> isinstance(pretrained_names(), list)
        True
    """
    return shipped_names(_pretrained_dir())


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
