"""Verified downloads against a local HTTP server (no network access)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import struct
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from mlrsnet.lab.tasks import datasets as D
from mlrsnet.lab.tasks import download as dl


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path):
    """Serve ``tmp_path / "srv"`` on 127.0.0.1 (ephemeral port); yields (base_url, folder, log)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = type("Handler", (_QuietHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_file_verifies_sha256_and_md5(server, tmp_path: Path) -> None:
    base, root, log = server
    body = b"hello mlrsnet\n" * 100
    (root / "f.bin").write_bytes(body)
    dest = tmp_path / "out" / "f.bin"
    assert dl.download_file(base + "f.bin", dest, checksum=_sha256(body)) == dest
    assert dest.read_bytes() == body
    md5 = hashlib.md5(body).hexdigest()
    dest2 = dl.download_file(base + "f.bin", tmp_path / "g.bin", checksum=md5, algorithm="md5")
    assert dest2.read_bytes() == body
    # already present with the right checksum: no new request
    n = len(log)
    dl.download_file(base + "f.bin", dest, checksum=_sha256(body).upper())
    assert len(log) == n


def test_checksum_mismatch_raises_and_leaves_no_file(server, tmp_path: Path) -> None:
    base, root, _ = server
    (root / "f.bin").write_bytes(b"tampered")
    out = tmp_path / "out"
    with pytest.raises(dl.ChecksumError, match="checksum mismatch") as info:
        dl.download_file(base + "f.bin", out / "f.bin", checksum=_sha256(b"original"))
    assert isinstance(info.value, ValueError)
    assert list(out.iterdir()) == []  # neither the file nor a temporary part


def test_mismatch_keeps_an_existing_file_untouched(server, tmp_path: Path) -> None:
    base, root, _ = server
    (root / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old contents")
    with pytest.raises(dl.ChecksumError):
        dl.download_file(base + "f.bin", dest, checksum=_sha256(b"original"))
    assert dest.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "srv"]


def test_http_error_and_bad_url(server, tmp_path: Path) -> None:
    base, _, _ = server
    with pytest.raises(OSError, match="missing.bin"):
        dl.download_file(base + "missing.bin", tmp_path / "m", checksum=_sha256(b""))
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="http"):
        dl.download_file("file:///etc/passwd", tmp_path / "p", checksum=_sha256(b""))
    with pytest.raises(ValueError):
        dl.download_file(base + "x", tmp_path / "x", checksum="0", algorithm="nope")


def test_fetch_fashion_mnist_then_load(server, tmp_path: Path, monkeypatch) -> None:
    """download=True end to end, with RESOURCES pointed at the local server."""
    base, root, _ = server
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.arange(20, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(10, dtype=np.uint8) % 10,
    }
    files = []
    for name, arr in arrays.items():
        data = gzip.compress(idx_bytes(arr))
        (root / name).write_bytes(data)
        files.append(dl.Resource(name, _sha256(data)))
    spec = dl.DatasetResources(base_url=base, files=tuple(files), subdir="fashion-mnist")
    monkeypatch.setitem(dl.RESOURCES, "fashion-mnist", spec)
    data_root = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        D.load_fashion_mnist(data_root)
    ds = D.load_fashion_mnist(data_root, download=True)
    assert (data_root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    np.testing.assert_array_equal(
        ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte.gz"]
    )


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_fetch_archive_extracts_into_root(server, tmp_path: Path, monkeypatch) -> None:
    base, root, _ = server
    archive = _tar_gz({"cifar-10-batches-py/readme.html": b"<p>hi</p>"})
    (root / "cifar-10-python.tar.gz").write_bytes(archive)
    spec = dl.DatasetResources(
        base_url=base,
        files=(dl.Resource("cifar-10-python.tar.gz", _sha256(archive)),),
        subdir="cifar-10-batches-py",
        archive=True,
    )
    monkeypatch.setitem(dl.RESOURCES, "cifar10", spec)
    folder = dl.fetch("cifar10", tmp_path / "data")
    assert folder == tmp_path / "data" / "cifar-10-batches-py"
    assert (folder / "readme.html").read_bytes() == b"<p>hi</p>"
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_extract_tar_refuses_unsafe_members(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar_gz({name: b"x"}))
    with pytest.raises(ValueError, match="unsafe member"):
        dl.extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_extract_tar_corrupted_archive_names_file(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar_gz({"a/b": b"y" * 10_000})[:40])
    with pytest.raises(ValueError, match="bad.tar.gz"):
        dl.extract_tar(archive, tmp_path / "out")


def test_fetch_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="no download"):
        dl.fetch("ptb", "/nonexistent")


def test_published_checksums_are_well_formed() -> None:
    for spec in dl.RESOURCES.values():
        for res in spec.files:
            assert len(res.checksum) == {"md5": 32, "sha256": 64}[res.algorithm]
            int(res.checksum, 16)
