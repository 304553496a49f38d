"""Raw dataset loaders: files on disk -> uint8 image tensors / token-id streams.

Datasets and the files each loader reads:

=================  =====================================================================
``fashion-mnist``  ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (IDX format)
``digits``         scikit-learn's bundled ``load_digits`` (no files needed)
``cifar10``        ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles)
``cifar100``       ``cifar-100-python/{train,test}`` (python pickles)
``svhn``           ``train_32x32.mat``, ``test_32x32.mat`` (MATLAB; needs scipy)
``ptb``            ``{ptb.,}{train,valid,test}.txt[.gz]`` (Mikolov's word-level PTB)
``tinyshakespeare`` ``input.txt[.gz]`` (character level)
=================  =====================================================================

Where files are looked for (first match wins; see :func:`search_dirs`): an explicit
``data_dir`` *only*, otherwise ``$MLRSNET_DATA``, then the system folder of the dataset
(``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist`` package), then
the download cache ``$XDG_CACHE_HOME/mlrsnet/data`` (``~/.cache/mlrsnet/data``). Each of those
roots is searched both directly and in the dataset's standard subfolder (``fashion-mnist/``,
``cifar-10-batches-py/``, ``cifar-100-python/``, ``svhn/``, ``ptb/``, ``tinyshakespeare/``).

Parsing is strict: a corrupted or truncated file raises :class:`ValueError` naming it, never a
silently partial dataset. Loaded datasets are cached per process (keyed by resolved path, size
and modification time), so building several tasks on the same data is cheap; the cached tensors
are shared and must not be modified in place.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .splits import meta_split

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "ImageDataset",
    "TextCorpus",
    "UnsafePickleError",
    "clear_cache",
    "default_download_root",
    "is_available",
    "load",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_fashion_mnist",
    "load_ptb",
    "load_svhn",
    "load_tiny_shakespeare",
    "locate",
    "read_cifar_pickle",
    "read_idx",
    "search_dirs",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the data root (overridden by an explicit ``data_dir``).
ENV_VAR = "MLRSNET_DATA"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# ----------------------------------------------------------------------------- containers


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset with its standard train/test split.

    Attributes:
        name: Dataset name (a key of :data:`DATASETS`).
        train_images: ``uint8[N, C, H, W]`` training images (raw pixel values).
        train_labels: ``int64[N]`` training labels in ``[0, num_classes)``.
        test_images: ``uint8[M, C, H, W]`` test images.
        test_labels: ``int64[M]`` test labels.
        num_classes: Number of classes.
        classes: Class names.
        files: Files the data was read from (empty for bundled data).
    """

    name: str
    train_images: Tensor = field(repr=False)
    train_labels: Tensor = field(repr=False)
    test_images: Tensor = field(repr=False)
    test_labels: Tensor = field(repr=False)
    num_classes: int
    classes: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """A tokenised language-modelling corpus: three 1-D token-id streams and a vocabulary.

    Attributes:
        name: Corpus name (a key of :data:`DATASETS`).
        train: ``int64[L_train]`` training token ids.
        valid: ``int64[L_valid]`` validation token ids.
        test: ``int64[L_test]`` test token ids.
        vocab: ``vocab[i]`` is the word (or character) with id ``i``.
        files: Files the corpus was read from.
    """

    name: str
    train: Tensor = field(repr=False)
    valid: Tensor = field(repr=False)
    test: Tensor = field(repr=False)
    vocab: tuple[str, ...] = field(repr=False)
    files: tuple[Path, ...] = ()

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens."""
        return len(self.vocab)

    def decode(self, ids: Tensor | list[int], sep: str | None = None) -> str:
        """Turn token ids back into text (words joined by spaces, characters by nothing).

        Example:
            >>> corpus = TextCorpus("toy", torch.tensor([0, 1]), torch.tensor([0]),
            ...                     torch.tensor([1]), ("to", "be"))
            >>> corpus.decode([1, 0])
            'be to'
        """
        if sep is None:
            sep = "" if all(len(tok) == 1 for tok in self.vocab) else " "
        ids = ids.tolist() if isinstance(ids, Tensor) else ids
        return sep.join(self.vocab[i] for i in ids)


# ----------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class _Layout:
    subdirs: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    howto: str


def _gz(*names: str) -> tuple[str, ...]:
    return tuple(n for name in names for n in (name, name + ".gz"))


_LAYOUTS: dict[str, _Layout] = {
    "fashion-mnist": _Layout(
        subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
        files={
            "train_images": _gz("train-images-idx3-ubyte"),
            "train_labels": _gz("train-labels-idx1-ubyte"),
            "test_images": _gz("t10k-images-idx3-ubyte"),
            "test_labels": _gz("t10k-labels-idx1-ubyte"),
        },
        howto=(
            "Install them with `sudo apt-get install dataset-fashion-mnist` (puts them in "
            "/usr/share/datasets/fashion-mnist), or pass download=True to fetch them into "
            "{root}/fashion-mnist, or point data_dir / ${env} at a folder holding the four .gz "
            "files (directly or in a fashion-mnist/ subfolder)."
        ),
    ),
    "cifar10": _Layout(
        subdirs=("cifar-10-batches-py",),
        files={
            **{f"data_batch_{i}": (f"data_batch_{i}",) for i in range(1, 6)},
            "test_batch": ("test_batch",),
        },
        howto=(
            "Pass download=True to fetch and extract cifar-10-python.tar.gz into {root}, or "
            "download it from https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and "
            "point data_dir / ${env} at the folder containing cifar-10-batches-py/."
        ),
    ),
    "cifar100": _Layout(
        subdirs=("cifar-100-python",),
        files={"train": ("train",), "test": ("test",)},
        howto=(
            "Pass download=True to fetch and extract cifar-100-python.tar.gz into {root}, or "
            "download it from https://www.cs.toronto.edu/~kriz/cifar.html, extract it, and "
            "point data_dir / ${env} at the folder containing cifar-100-python/."
        ),
    ),
    "svhn": _Layout(
        subdirs=("svhn", "SVHN"),
        files={"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
        howto=(
            "Pass download=True to fetch train_32x32.mat and test_32x32.mat into {root}/svhn, "
            "or download them from http://ufldl.stanford.edu/housenumbers/ and point "
            "data_dir / ${env} at their folder (directly or in an svhn/ subfolder). Reading "
            "them needs scipy."
        ),
    ),
    "ptb": _Layout(
        subdirs=("ptb", "penn-treebank", "simple-examples/data"),
        files={
            split: _gz(f"ptb.{split}.txt", f"{split}.txt") for split in ("train", "valid", "test")
        },
        howto=(
            "Put Mikolov's word-level Penn Treebank files ptb.{{train,valid,test}}.txt (from "
            "simple-examples.tgz, data/; names train.txt etc. and .gz also work) in a ptb/ "
            "folder under data_dir or ${env}. There is no automatic download."
        ),
    ),
    "tinyshakespeare": _Layout(
        subdirs=("tinyshakespeare", "tiny-shakespeare", "shakespeare"),
        files={"text": _gz("input.txt", "tinyshakespeare.txt")},
        howto=(
            "Put Karpathy's char-rnn tinyshakespeare input.txt (or input.txt.gz) in a "
            "tinyshakespeare/ folder under data_dir or ${env}. There is no automatic download."
        ),
    ),
}

_SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


def default_download_root() -> Path:
    """Root that ``download=True`` writes into when no ``data_dir`` is given.

    ``$MLRSNET_DATA`` if set, else ``$XDG_CACHE_HOME/mlrsnet/data`` (``~/.cache/mlrsnet/data``).

    Example:
        >>> default_download_root().name in ("data",) or True
        True
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "mlrsnet" / "data"


def search_dirs(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for ``dataset``'s files, in order.

    Args:
        dataset: A key of :data:`DATASETS` that reads files.
        data_dir: Explicit root; when given, only it (and its standard subfolders) is searched.

    Returns:
        Candidate folders: every root, each followed by its standard subfolders.

    Example:
        >>> [str(p) for p in search_dirs("svhn", "/data")]
        ['/data', '/data/svhn', '/data/SVHN']
    """
    layout = _layout(dataset)
    if data_dir is not None:
        roots = [Path(data_dir).expanduser()]
    else:
        roots = []
        env = os.environ.get(ENV_VAR)
        if env:
            roots.append(Path(env).expanduser())
        roots.extend(_SYSTEM_DIRS.get(dataset, ()))
        roots.append(default_download_root())
    dirs: list[Path] = []
    for root in roots:
        for folder in (root, *(root / sub for sub in layout.subdirs)):
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def _layout(dataset: str) -> _Layout:
    if dataset not in _LAYOUTS:
        raise ValueError(f"dataset {dataset!r} reads no files; file-based: {sorted(_LAYOUTS)}")
    return _LAYOUTS[dataset]


def _display(names: tuple[str, ...]) -> str:
    plain = [n for n in names if not n.endswith(".gz")]
    return " or ".join(f"{n}[.gz]" if n + ".gz" in names else n for n in plain)


def locate(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Find the files of ``dataset`` (the first folder of :func:`search_dirs` holding all).

    Args:
        dataset: A key of :data:`DATASETS` other than ``"digits"``.
        data_dir: Explicit root, see :func:`search_dirs`.

    Returns:
        ``{role: path}``, e.g. ``{"train_images": Path(...), ...}``.

    Raises:
        FileNotFoundError: Saying where it looked and how to get the files.

    Example:
        >>> locate("fashion-mnist")["train_images"].name  # doctest: +SKIP
        'train-images-idx3-ubyte.gz'
    """
    layout = _layout(dataset)
    dirs = search_dirs(dataset, data_dir)
    for folder in dirs:
        found: dict[str, Path] = {}
        for role, names in layout.files.items():
            for name in names:
                if (folder / name).is_file():
                    found[role] = folder / name
                    break
        if len(found) == len(layout.files):
            return found
    wanted = ", ".join(_display(names) for names in layout.files.values())
    where = ", ".join(str(d) for d in dirs)
    root = Path(data_dir).expanduser() if data_dir is not None else default_download_root()
    howto = layout.howto.replace("${env}", f"${ENV_VAR}").format(root=root)
    raise FileNotFoundError(
        f"{dataset} files not found (need {wanted}; looked in {where}). {howto}"
    )


def _locate_or_download(
    dataset: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> dict[str, Path]:
    try:
        return locate(dataset, data_dir)
    except FileNotFoundError:
        if not download:
            raise
    from .download import fetch

    root = Path(data_dir).expanduser() if data_dir is not None else default_download_root()
    logger.info("%s not found locally; downloading into %s", dataset, root)
    fetch(dataset, root)
    return locate(dataset, root)


def is_available(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``dataset`` can be loaded without downloading.

    Example:
        >>> is_available("digits")
        True
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    if dataset not in _LAYOUTS:
        return True
    try:
        locate(dataset, data_dir)
    except FileNotFoundError:
        return False
    return dataset != "svhn" or _has_scipy()


# ----------------------------------------------------------------------------- cache

_CACHE: dict[tuple[Any, ...], Any] = {}


def _file_key(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    key = []
    for path in paths:
        st = path.stat()
        key.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(key)


def _cached(kind: str, paths: list[Path], build: Callable[[], Any], *extra: Any) -> Any:
    key = (kind, _file_key(paths), *extra)
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every dataset loaded so far in this process.

    Example:
        >>> clear_cache()
    """
    _CACHE.clear()


# ----------------------------------------------------------------------------- raw readers


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file is gzip data; errors name the file."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupted or truncated gzip data ({exc})") from exc
    if path.suffix == ".gz":
        raise ValueError(f"{path}: not gzip data (bad gzip magic number)")
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an unsigned-byte IDX file (MNIST / Fashion-MNIST format), gzipped or not.

    The magic number must be ``0x00000801`` .. ``0x000008FF`` (unsigned bytes, 1..255 dims) and
    the payload length must equal the product of the header dims exactly.

    Args:
        path: The ``.gz`` or raw IDX file.

    Returns:
        A read-only ``uint8`` array with the header's shape.

    Raises:
        ValueError: Naming the file, on a bad magic number, a truncated header, a payload of
            the wrong length, or corrupted / truncated gzip data.

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
        ... # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    if raw[0:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] == 0:
        magic = int.from_bytes(raw[:4], "big")
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x000008NN: unsigned bytes, "
            "NN dimensions); not an uncorrupted IDX file"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(raw) - header
    if actual != expected:
        state = "truncated" if actual < expected else "corrupted (trailing bytes)"
        raise ValueError(
            f"{path}: {state} IDX file: header dims {tuple(dims)} need {expected} payload "
            f"bytes, found {actual}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_images(arr: np.ndarray, path: Path, hw: tuple[int, int]) -> None:
    if arr.ndim != 3 or tuple(arr.shape[1:]) != hw:
        raise ValueError(f"{path}: expected images of shape [N, {hw[0]}, {hw[1]}], got {arr.shape}")


def _check_labels(arr: np.ndarray, path: Path, n: int, num_classes: int) -> None:
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{path}: expected {n} labels, got an array of shape {arr.shape}")
    if n and int(arr.max()) >= num_classes:
        raise ValueError(f"{path}: label {int(arr.max())} out of range for {num_classes} classes")


def _labels_tensor(arr: np.ndarray) -> Tensor:
    return torch.from_numpy(np.asarray(arr, dtype=np.int64).copy())


def _images_tensor(arr: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8).copy())


# ----------------------------------------------------------------------------- image loaders


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageDataset:
    """Fashion-MNIST (60,000 train / 10,000 test 28x28 grey images, 10 balanced classes).

    Args:
        data_dir: Folder holding the IDX files (directly or in ``fashion-mnist/``); default
            search: ``$MLRSNET_DATA``, ``/usr/share/datasets/fashion-mnist``, the cache.
        download: Fetch the files (MD5-verified) if they are not found.

    Returns:
        An :class:`ImageDataset` with ``uint8[N, 1, 28, 28]`` images.

    Raises:
        FileNotFoundError: If the files are missing (the message says how to get them).
        ValueError: If a file is corrupted or truncated (naming it).

    Example:
        >>> ds = load_fashion_mnist()  # doctest: +SKIP
        >>> ds.train_images.shape, ds.test_images.shape  # doctest: +SKIP
        (torch.Size([60000, 1, 28, 28]), torch.Size([10000, 1, 28, 28]))
    """
    files = _locate_or_download("fashion-mnist", data_dir, download)

    def build() -> ImageDataset:
        arrays = {role: read_idx(path) for role, path in files.items()}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            _check_images(images, files[f"{split}_images"], (28, 28))
            _check_labels(labels, files[f"{split}_labels"], images.shape[0], 10)
        logger.info("loaded Fashion-MNIST from %s", files["train_images"].parent)
        return ImageDataset(
            name="fashion-mnist",
            train_images=_images_tensor(arrays["train_images"][:, None]),
            train_labels=_labels_tensor(arrays["train_labels"]),
            test_images=_images_tensor(arrays["test_images"][:, None]),
            test_labels=_labels_tensor(arrays["test_labels"]),
            num_classes=10,
            classes=FASHION_MNIST_CLASSES,
            files=tuple(files.values()),
        )

    return _cached("fashion-mnist", list(files.values()), build)


def load_digits(*, test_size: int = 500, split_seed: int = 0) -> ImageDataset:
    """scikit-learn's digits (1,797 8x8 images, pixel values 0..16) with a fixed test split.

    The test split is class-balanced (``test_size // 10`` per class) and depends only on
    ``split_seed`` (default 0), so every task sees the same 1,297 / 500 train / test split.

    Args:
        test_size: Test-set size.
        split_seed: Seed of the train/test split.

    Returns:
        An :class:`ImageDataset` with ``uint8[N, 1, 8, 8]`` images (values 0..16).

    Example:
        >>> ds = load_digits()
        >>> len(ds.train_labels), len(ds.test_labels)
        (1297, 500)
    """

    def build() -> ImageDataset:
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        train_idx, test_idx = meta_split(labels, test_size, seed=split_seed, num_classes=10)
        return ImageDataset(
            name="digits",
            train_images=images[train_idx].contiguous(),
            train_labels=labels[train_idx].contiguous(),
            test_images=images[test_idx].contiguous(),
            test_labels=labels[test_idx].contiguous(),
            num_classes=10,
            classes=tuple(str(i) for i in range(10)),
        )

    key = ("digits", (), test_size, split_seed)
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle referenced something other than numpy array reconstruction."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}
    allowed[("numpy", "dtype")] = np.dtype
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    # Python 3 writes ``bytes`` in protocol-2 pickles as _codecs.encode(str, "latin1").
    import _codecs

    allowed[("_codecs", "encode")] = _codecs.encode
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array / dtype reconstruction globals."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refusing to load {module}.{name} from a dataset pickle; CIFAR "
                "pickles may only contain dicts of numpy arrays, lists, strings and numbers"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path}: refusing a persistent id in a dataset pickle")


def _str_key(key: Any) -> Any:
    return key.decode("latin1") if isinstance(key, bytes) else key


def read_cifar_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Safely read one CIFAR python batch (a pickled dict of numpy arrays and lists).

    Uses a restricted unpickler: only numpy's array/dtype reconstruction functions can be
    referenced, so a malicious pickle (e.g. one whose ``__reduce__`` calls ``os.system``) is
    refused before anything runs. Byte-string keys (Python 2 pickles) become ``str``.

    Args:
        path: The batch file (``data_batch_1``, ``test_batch``, ``train``, ...).

    Returns:
        The dict, keys as ``str``.

    Raises:
        UnsafePickleError: (also a :class:`ValueError`) if the pickle references anything else.
        ValueError: If the file is not a valid pickle of a dict.

    Example:
        >>> read_cifar_pickle("cifar-10-batches-py/test_batch")["data"].shape  # doctest: +SKIP
        (10000, 3072)
    """
    path = Path(path)
    raw = _read_bytes(path)
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), path).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # pickle raises many types on corrupted input
        raise ValueError(f"{path}: corrupted or truncated pickle ({exc!r})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {_str_key(k): v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: missing 'data' or '{label_key}' (keys: {sorted(batch)})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: 'data' must be a uint8 [N, 3072] array")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' has {data.shape[1]} columns, expected 3072")
    labels = np.asarray(batch[label_key])
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: '{label_key}' must hold integers, got {labels.dtype}")
    _check_labels(labels, path, data.shape[0], num_classes)
    if labels.size and int(labels.min()) < 0:
        raise ValueError(f"{path}: negative label in '{label_key}'")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dataset(
    name: str, files: dict[str, Path], train_roles: list[str], label_key: str, num_classes: int
) -> ImageDataset:
    train = [_cifar_arrays(files[r], label_key, num_classes) for r in train_roles]
    test_role = "test_batch" if "test_batch" in files else "test"
    test_x, test_y = _cifar_arrays(files[test_role], label_key, num_classes)
    classes: tuple[str, ...] = tuple(str(i) for i in range(num_classes))
    if name == "cifar10":
        classes = CIFAR10_CLASSES
    else:
        meta = files[test_role].parent / "meta"
        if meta.is_file():
            names = read_cifar_pickle(meta).get("fine_label_names", ())
            if len(names) == num_classes:
                classes = tuple(_str_key(n) for n in names)
    logger.info("loaded %s from %s", name, files[test_role].parent)
    return ImageDataset(
        name=name,
        train_images=_images_tensor(np.concatenate([x for x, _ in train])),
        train_labels=_labels_tensor(np.concatenate([y for _, y in train])),
        test_images=_images_tensor(test_x),
        test_labels=_labels_tensor(test_y),
        num_classes=num_classes,
        classes=classes,
        files=tuple(files.values()),
    )


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageDataset:
    """CIFAR-10 from the python batches (``cifar-10-batches-py/``): 50,000 / 10,000 images.

    Args:
        data_dir: Folder containing ``cifar-10-batches-py/`` (or the batches themselves).
        download: Fetch and extract the MD5-verified archive if the files are not found.

    Returns:
        An :class:`ImageDataset` with ``uint8[N, 3, 32, 32]`` images.

    Raises:
        FileNotFoundError: If the files are missing (the message says how to get them).
        ValueError: On a corrupted batch (naming it); :class:`UnsafePickleError` on a pickle
            referencing anything but numpy arrays.

    Example:
        >>> load_cifar10("~/data").num_classes  # doctest: +SKIP
        10
    """
    files = _locate_or_download("cifar10", data_dir, download)
    roles = [f"data_batch_{i}" for i in range(1, 6)]
    return _cached(
        "cifar10",
        list(files.values()),
        lambda: _cifar_dataset("cifar10", files, roles, "labels", 10),
    )


def load_cifar100(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageDataset:
    """CIFAR-100 (fine labels) from ``cifar-100-python/{train,test}``: 50,000 / 10,000 images.

    Args:
        data_dir: Folder containing ``cifar-100-python/`` (or ``train`` / ``test`` themselves).
        download: Fetch and extract the MD5-verified archive if the files are not found.

    Returns:
        An :class:`ImageDataset` with ``uint8[N, 3, 32, 32]`` images and 100 classes.

    Raises:
        FileNotFoundError: If the files are missing (the message says how to get them).
        ValueError: On a corrupted file (naming it) or an unsafe pickle.

    Example:
        >>> load_cifar100("~/data").num_classes  # doctest: +SKIP
        100
    """
    files = _locate_or_download("cifar100", data_dir, download)
    return _cached(
        "cifar100",
        list(files.values()),
        lambda: _cifar_dataset("cifar100", files, ["train"], "fine_labels", 100),
    )


def _has_scipy() -> bool:
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        return False
    return True


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise ImportError(
            "reading SVHN .mat files needs scipy: `pip install scipy` "
            "(or `pip install mlrsnet[test]`)"
        ) from exc
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types on bad input
        raise ValueError(f"{path}: corrupted or unreadable .mat file ({exc!r})") from exc
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: expected variables 'X' and 'y'")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise ValueError(f"{path}: 'X' must be uint8 [32, 32, 3, N], got {x.dtype} {x.shape}")
    if y.shape[0] != x.shape[3] or y.dtype.kind not in "iuf":
        raise ValueError(f"{path}: 'y' must hold {x.shape[3]} numeric labels")
    y = y.astype(np.int64)
    if y.size and (int(y.min()) < 0 or int(y.max()) > 10):
        raise ValueError(f"{path}: SVHN labels must lie in 0..10, got {y.min()}..{y.max()}")
    return x.transpose(3, 2, 0, 1), y % 10  # label 10 means digit 0


def load_svhn(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageDataset:
    """SVHN cropped digits (``train_32x32.mat`` / ``test_32x32.mat``; ``extra`` is not used).

    Label 10 in the files means digit 0 and becomes class 0. Needs scipy.

    Args:
        data_dir: Folder holding the ``.mat`` files (directly or in ``svhn/``).
        download: Fetch the MD5-verified files if they are not found.

    Returns:
        An :class:`ImageDataset` with ``uint8[N, 3, 32, 32]`` images.

    Raises:
        FileNotFoundError: If the files are missing (the message says how to get them).
        ImportError: If scipy is not installed.
        ValueError: On a corrupted file (naming it).

    Example:
        >>> load_svhn("~/data").num_classes  # doctest: +SKIP
        10
    """
    files = _locate_or_download("svhn", data_dir, download)

    def build() -> ImageDataset:
        train_x, train_y = _read_svhn_mat(files["train"])
        test_x, test_y = _read_svhn_mat(files["test"])
        return ImageDataset(
            name="svhn",
            train_images=_images_tensor(train_x),
            train_labels=_labels_tensor(train_y),
            test_images=_images_tensor(test_x),
            test_labels=_labels_tensor(test_y),
            num_classes=10,
            classes=tuple(str(i) for i in range(10)),
            files=tuple(files.values()),
        )

    return _cached("svhn", list(files.values()), build)


# ----------------------------------------------------------------------------- text loaders


def _read_text(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 text ({exc})") from exc


def _words(text: str) -> list[str]:
    """Whitespace tokens with ``<eos>`` after every line (``word_language_model``)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[str] = []
    for line in lines:
        out.extend(line.split())
        out.append("<eos>")
    return out


def load_ptb(data_dir: str | os.PathLike[str] | None = None) -> TextCorpus:
    """Word-level Penn Treebank (Mikolov's split; what the MLR-SNet paper uses).

    Every line gets an ``<eos>`` token; the vocabulary is built from the training file in order
    of first appearance (10,000 words). Token counts: 929,589 / 73,760 / 82,430.

    Args:
        data_dir: Folder holding ``ptb.{train,valid,test}.txt`` or ``{train,valid,test}.txt``
            (``.gz`` allowed), directly or in ``ptb/``.

    Returns:
        A :class:`TextCorpus`.

    Raises:
        FileNotFoundError: If the files are missing.
        ValueError: On unreadable files or a validation/test word missing from the
            vocabulary (when there is no ``<unk>`` to map it to).

    Example:
        >>> load_ptb("/work/shared/data").vocab_size  # doctest: +SKIP
        10000
    """
    files = locate("ptb", data_dir)

    def build() -> TextCorpus:
        streams = {}
        vocab: dict[str, int] = {}
        for split in ("train", "valid", "test"):
            words = _words(_read_text(files[split]))
            if split == "train":
                for word in words:
                    vocab.setdefault(word, len(vocab))
            unk = vocab.get("<unk>")
            try:
                ids = [vocab[w] for w in words]
            except KeyError as exc:
                if unk is None:
                    raise ValueError(
                        f"{files[split]}: word {exc.args[0]!r} is not in the training vocabulary"
                    ) from None
                ids = [vocab.get(w, unk) for w in words]
            streams[split] = torch.tensor(ids, dtype=torch.long)
        logger.info("loaded PTB from %s (%d words)", files["train"].parent, len(vocab))
        return TextCorpus(
            name="ptb",
            vocab=tuple(vocab),
            files=tuple(files.values()),
            **streams,
        )

    return _cached("ptb", list(files.values()), build)


def load_tiny_shakespeare(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> TextCorpus:
    """Tiny Shakespeare at character level (1,115,394 characters, 65 symbols).

    The text is split contiguously: the first ``1 - valid_fraction - test_fraction`` (90 %)
    for training, then validation, then test (``int()`` of each fraction times the length for
    the first two parts, the rest for test). The vocabulary is the sorted set of characters of
    the whole text.

    Args:
        data_dir: Folder holding ``input.txt`` (or ``.gz``), directly or in
            ``tinyshakespeare/``.
        valid_fraction: Fraction of characters for validation.
        test_fraction: Fraction of characters for test.

    Returns:
        A :class:`TextCorpus` whose vocabulary entries are single characters.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: On unreadable files or fractions that leave no training text.

    Example:
        >>> c = load_tiny_shakespeare("/work/shared/data")  # doctest: +SKIP
        >>> len(c.train) + len(c.valid) + len(c.test)  # doctest: +SKIP
        1115394
    """
    if not (
        0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise ValueError("valid_fraction and test_fraction must be in (0, 1) and sum below 1")
    files = locate("tinyshakespeare", data_dir)

    def build() -> TextCorpus:
        text = _read_text(files["text"])
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        symbols, ids = np.unique(codes, return_inverse=True)
        ids = torch.from_numpy(ids.astype(np.int64).reshape(-1))
        n = ids.numel()
        n_train = int(n * (1.0 - valid_fraction - test_fraction))
        n_valid = int(n * valid_fraction)
        return TextCorpus(
            name="tinyshakespeare",
            train=ids[:n_train].clone(),
            valid=ids[n_train : n_train + n_valid].clone(),
            test=ids[n_train + n_valid :].clone(),
            vocab=tuple(chr(int(s)) for s in symbols),
            files=(files["text"],),
        )

    return _cached(
        "tinyshakespeare", [files["text"]], build, float(valid_fraction), float(test_fraction)
    )


#: ``name -> loader(data_dir=None, download=False)`` for every dataset.
DATASETS: dict[str, Callable[..., ImageDataset | TextCorpus]] = {
    "fashion-mnist": load_fashion_mnist,
    "digits": lambda data_dir=None, download=False: load_digits(),
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "ptb": lambda data_dir=None, download=False: load_ptb(data_dir),
    "tinyshakespeare": lambda data_dir=None, download=False: load_tiny_shakespeare(data_dir),
}


def load(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> ImageDataset | TextCorpus:
    """Load a dataset by name (see :data:`DATASETS`).

    Example:
        >>> load("digits").num_classes
        10
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](data_dir=data_dir, download=download)
