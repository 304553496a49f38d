"""Shared fixtures: locations of the real datasets (tests skip when they are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``shared/`` beside the repository checkout: ``shared/data/{ptb,tinyshakespeare}``.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Debian's ``dataset-fashion-mnist`` package installs the IDX files here.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data root holding ``ptb/`` and ``tinyshakespeare/``; skips if absent."""
    if not (SHARED_DATA / "ptb").is_dir() or not (SHARED_DATA / "tinyshakespeare").is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} (ptb/, tinyshakespeare/) not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """Folder of the Fashion-MNIST IDX files; skips if the Debian package is not installed."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST not installed in {FASHION_MNIST_DIR} "
            "(apt-get install dataset-fashion-mnist)"
        )
    return FASHION_MNIST_DIR


def _write_cifar(path: Path, images, labels, label_key: bytes, protocol: int) -> None:
    """A CIFAR python batch: dict with byte keys, ``data`` uint8 [N, 3072] (R, G, B planes)."""
    import pickle

    batch = {
        b"batch_label": b"tiny batch",
        label_key: [int(v) for v in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.fixture(scope="session")
def tiny_image_root(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A data root with tiny CIFAR-10, CIFAR-100 and (if scipy is installed) SVHN files.

    Returns ``{"root": Path, "cifar10": (train_x, train_y, test_x, test_y), ...}``, images as
    uint8 ``[N, 3, 32, 32]`` arrays exactly as the loaders should return them.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("tiny_images")
    out: dict = {"root": root}

    def images(n: int):
        return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)

    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    train_y = np.tile(np.arange(10), 4)  # 40 images, 4 per class, 8 per batch file
    train_x, test_x, test_y = images(40), images(20), np.tile(np.arange(10), 2)
    for i in range(5):
        part = slice(8 * i, 8 * i + 8)
        _write_cifar(folder / f"data_batch_{i + 1}", train_x[part], train_y[part], b"labels", 2)
    _write_cifar(folder / "test_batch", test_x, test_y, b"labels", 4)
    out["cifar10"] = (train_x, train_y, test_x, test_y)

    folder = root / "cifar-100-python"
    folder.mkdir()
    train_y, test_y = np.tile(np.arange(100), 2), np.arange(100)
    train_x, test_x = images(200), images(100)
    _write_cifar(folder / "train", train_x, train_y, b"fine_labels", 4)
    _write_cifar(folder / "test", test_x, test_y, b"fine_labels", 5)
    out["cifar100"] = (train_x, train_y, test_x, test_y)

    try:
        from scipy.io import savemat
    except ImportError:
        return out
    folder = root / "svhn"
    folder.mkdir()
    for split, n in (("train", 30), ("test", 10)):
        x, y = images(n), np.arange(n) % 10
        # SVHN stores X as [32, 32, 3, N] and digit 0 as label 10.
        mat_y = np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": mat_y})
        out[f"svhn_{split}"] = (x, y)
    return out
