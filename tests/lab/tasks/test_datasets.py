"""Raw loaders: published counts, strict IDX parsing, safe pickles, tiny-file round trips."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mlrsnet.lab.tasks import datasets as D

# ----------------------------------------------------------------------------- IDX helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fmnist(folder: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    """Tiny but well-formed Fashion-MNIST IDX files (gzipped) in ``folder``."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, arr in arrays.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    return arrays


def test_read_idx_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a.gz"), arr)


def _corrupt(kind: str) -> bytes:
    arr = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
    good = idx_bytes(arr)
    if kind == "payload_truncated":
        return gzip.compress(good[: len(good) - 100])
    if kind == "payload_trailing":
        return gzip.compress(good + b"\x00" * 3)
    if kind == "header_truncated":
        return gzip.compress(good[:10])
    if kind == "bad_magic":
        return gzip.compress(b"\x00\x00\x0d\x03" + good[4:])
    gz = gzip.compress(good)
    if kind == "gzip_truncated":
        return gz[: len(gz) // 2]
    if kind == "gzip_corrupted":
        body = bytearray(gz)
        for i in range(len(body) // 3, len(body) // 3 + 16):
            body[i] ^= 0xFF
        return bytes(body)
    if kind == "not_gzip":
        return good  # raw bytes under a .gz name
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("payload_truncated", "truncated IDX file"),
        ("payload_trailing", "trailing bytes"),
        ("header_truncated", "truncated IDX header"),
        ("bad_magic", "bad IDX magic number"),
        ("gzip_truncated", "gzip"),
        ("gzip_corrupted", "gzip"),
        ("not_gzip", "not gzip data"),
    ],
)
def test_corrupted_or_truncated_idx_raises_naming_the_file(
    tmp_path: Path, kind: str, phrase: str
) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_corrupt(kind))
    with pytest.raises(ValueError, match=phrase) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_file_fails_the_whole_load_and_is_not_cached(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros((20, 28, 28), np.uint8))[:-1]))
    with pytest.raises(ValueError, match="truncated") as info:
        D.load_fashion_mnist(tmp_path)
    assert str(bad) in str(info.value)
    write_fmnist(tmp_path)  # repaired: loads now
    assert D.load_fashion_mnist(tmp_path).train_images.shape == (20, 1, 28, 28)


def test_fashion_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(9, np.uint8))))
    with pytest.raises(ValueError, match="expected 10 labels") as info:
        D.load_fashion_mnist(tmp_path)
    assert str(labels) in str(info.value)


def test_fashion_mnist_published_counts(fashion_mnist_dir: Path) -> None:
    ds = D.load_fashion_mnist(fashion_mnist_dir)
    assert ds.train_images.shape == (60_000, 1, 28, 28)
    assert ds.test_images.shape == (10_000, 1, 28, 28)
    assert ds.train_images.dtype == torch.uint8 and ds.test_images.dtype == torch.uint8
    assert torch.bincount(ds.train_labels).tolist() == [6_000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1_000] * 10
    assert len(ds.classes) == 10 and ds.classes[9] == "Ankle boot"
    assert D.load_fashion_mnist(fashion_mnist_dir) is ds  # cached per process


def test_fashion_mnist_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        D.load_fashion_mnist(tmp_path)
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg
    assert str(tmp_path) in msg


def test_env_var_root_and_subfolder_layout(tmp_path: Path, monkeypatch) -> None:
    arrays = write_fmnist(tmp_path / "fashion-mnist", n_train=30)
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    ds = D.load_fashion_mnist()
    assert ds.train_images.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert D.search_dirs("fashion-mnist")[0] == tmp_path
    assert D.default_download_root() == tmp_path


def test_explicit_data_dir_is_the_only_place_searched(tmp_path: Path) -> None:
    assert D.search_dirs("fashion-mnist", tmp_path) == [
        tmp_path,
        tmp_path / "fashion-mnist",
        tmp_path / "fashion_mnist",
        tmp_path / "FashionMNIST/raw",
    ]


def test_digits_fixed_balanced_split() -> None:
    ds = D.load_digits()
    assert ds.train_images.shape == (1_297, 1, 8, 8) and ds.test_images.shape == (500, 1, 8, 8)
    assert ds.train_images.dtype == torch.uint8 and int(ds.train_images.max()) == 16
    assert torch.bincount(ds.test_labels).tolist() == [50] * 10
    from sklearn.datasets import load_digits

    total = np.bincount(load_digits().target)
    counts = torch.bincount(ds.train_labels) + torch.bincount(ds.test_labels)
    assert counts.tolist() == total.tolist()
    other = D.load_digits(split_seed=1)
    assert not torch.equal(other.test_labels, ds.test_labels) or not torch.equal(
        other.test_images, ds.test_images
    )


# ----------------------------------------------------------------------------- CIFAR / SVHN


def test_cifar10_tiny_round_trip(tiny_image_root: dict) -> None:
    train_x, train_y, test_x, test_y = tiny_image_root["cifar10"]
    ds = D.load_cifar10(tiny_image_root["root"])
    assert ds.train_images.shape == (40, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.train_images.numpy(), train_x)
    np.testing.assert_array_equal(ds.train_labels.numpy(), train_y)
    np.testing.assert_array_equal(ds.test_images.numpy(), test_x)
    np.testing.assert_array_equal(ds.test_labels.numpy(), test_y)
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    # the batch folder itself works as data_dir too
    again = D.load_cifar10(tiny_image_root["root"] / "cifar-10-batches-py")
    assert torch.equal(again.train_images, ds.train_images)


def test_cifar_pixel_layout_is_rgb_planes(tiny_image_root: dict) -> None:
    batch = D.read_cifar_pickle(tiny_image_root["root"] / "cifar-10-batches-py" / "test_batch")
    flat = batch["data"]
    ds = D.load_cifar10(tiny_image_root["root"])
    c, i, j = 2, 5, 7  # blue plane, row 5, column 7
    assert int(ds.test_images[3, c, i, j]) == int(flat[3, c * 1024 + i * 32 + j])


def test_cifar100_tiny_round_trip(tiny_image_root: dict) -> None:
    train_x, train_y, test_x, test_y = tiny_image_root["cifar100"]
    ds = D.load_cifar100(tiny_image_root["root"])
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.train_images.numpy(), train_x)
    np.testing.assert_array_equal(ds.train_labels.numpy(), train_y)
    np.testing.assert_array_equal(ds.test_labels.numpy(), test_y)


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), like the original CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def test_python2_style_cifar_pickle(tmp_path: Path) -> None:
    import io

    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({b"data": data, b"labels": [3, 4]})
    assert b"_codecs" not in buf.getvalue()
    (tmp_path / "batch").write_bytes(buf.getvalue())
    batch = D.read_cifar_pickle(tmp_path / "batch")
    np.testing.assert_array_equal(batch["data"], data)
    assert batch["labels"] == [3, 4]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(D.UnsafePickleError, match="refusing to load") as info:
        D.read_cifar_pickle(path)
    assert str(path) in str(info.value) and "system" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not marker.exists()


def test_malicious_batch_fails_the_cifar_loader(tmp_path: Path, tiny_image_root: dict) -> None:
    import shutil

    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(tiny_image_root["root"] / "cifar-10-batches-py", folder)
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Evil(marker)}, protocol=4))
    with pytest.raises(D.UnsafePickleError):
        D.load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar_bad_shape_names_file(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(ValueError, match="3072") as info:
        D._cifar_arrays(path, "labels", 10)
    assert str(path) in str(info.value)


def test_svhn_tiny_round_trip(tiny_image_root: dict) -> None:
    pytest.importorskip("scipy")
    ds = D.load_svhn(tiny_image_root["root"])
    x, y = tiny_image_root["svhn_train"]
    np.testing.assert_array_equal(ds.train_images.numpy(), x)
    np.testing.assert_array_equal(ds.train_labels.numpy(), y)  # file label 10 -> class 0
    assert int(ds.train_labels.min()) == 0 and int(ds.train_labels.max()) == 9
    x, y = tiny_image_root["svhn_test"]
    np.testing.assert_array_equal(ds.test_images.numpy(), x)


def test_svhn_corrupted_mat_names_file(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="train_32x32.mat"):
        D.load_svhn(tmp_path)


def test_missing_cifar_and_svhn_say_how_to_get_them(tmp_path: Path) -> None:
    for loader, hint in (
        (D.load_cifar10, "cifar-10-python.tar.gz"),
        (D.load_cifar100, "cifar-100-python.tar.gz"),
        (D.load_svhn, "train_32x32.mat"),
    ):
        with pytest.raises(FileNotFoundError, match="download=True") as info:
            loader(tmp_path)
        assert hint in str(info.value)
    assert not D.is_available("cifar10", tmp_path)
    assert D.is_available("digits")


# ----------------------------------------------------------------------------- text


def test_ptb_published_token_counts(shared_data: Path) -> None:
    corpus = D.load_ptb(shared_data)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert corpus.vocab_size == 10_000
    assert corpus.train.dtype == torch.long and int(corpus.train.max()) == 9_999
    assert "<eos>" in corpus.vocab and "<unk>" in corpus.vocab
    eos = corpus.vocab.index("<eos>")
    assert int((corpus.train == eos).sum()) == 42_068  # one per line of ptb.train.txt


def test_tiny_shakespeare_char_counts(shared_data: Path) -> None:
    corpus = D.load_tiny_shakespeare(shared_data)
    sizes = (len(corpus.train), len(corpus.valid), len(corpus.test))
    assert sum(sizes) == 1_115_394
    assert sizes == (1_003_854, 55_769, 55_771)  # contiguous 90 / 5 / 5
    assert corpus.vocab_size == 65
    assert corpus.decode(corpus.train[:14]) == "First Citizen:"


def test_text_plain_and_gzip_agree_and_oov_is_an_error(tmp_path: Path) -> None:
    text = {"train": "a b c\nb c\n", "valid": "c a\n", "test": "b\n"}
    plain, gz = tmp_path / "plain" / "ptb", tmp_path / "gz" / "ptb"
    plain.mkdir(parents=True)
    gz.mkdir(parents=True)
    for split, body in text.items():
        (plain / f"ptb.{split}.txt").write_text(body)
        (gz / f"{split}.txt.gz").write_bytes(gzip.compress(body.encode()))
    a, b = D.load_ptb(tmp_path / "plain"), D.load_ptb(tmp_path / "gz")
    assert a.vocab == b.vocab == ("a", "b", "c", "<eos>")
    assert a.train.tolist() == b.train.tolist() == [0, 1, 2, 3, 1, 2, 3]
    assert a.decode(a.valid) == "c a <eos>"
    (plain / "ptb.test.txt").write_text("zebra\n")
    with pytest.raises(ValueError, match="zebra") as info:
        D.load_ptb(tmp_path / "plain")
    assert "ptb.test.txt" in str(info.value)


def test_missing_text_data_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ptb"):
        D.load_ptb(tmp_path)
    with pytest.raises(FileNotFoundError, match="input.txt"):
        D.load_tiny_shakespeare(tmp_path)


def test_load_by_name() -> None:
    assert D.load("digits").num_classes == 10
    with pytest.raises(ValueError, match="known"):
        D.load("imagenet")
