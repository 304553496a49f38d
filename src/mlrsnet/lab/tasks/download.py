"""Optional, checksum-verified downloads of the image datasets.

Nothing here runs unless asked for (``download=True`` in :func:`mlrsnet.lab.tasks.get` or the
loaders in :mod:`mlrsnet.lab.tasks.datasets`, or :func:`fetch` directly). Every file is streamed
into a temporary file next to its destination, hashed on the way, and moved into place with
:func:`os.replace` only when the checksum matches, so an interrupted or corrupted download
never leaves a file that looks complete. Archives are extracted with path checks (no absolute
paths, no ``..``, no links or devices) into a temporary folder that is then moved into place.

Checksums are the published ones (MD5, as the dataset authors and torchvision publish them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RESOURCES",
    "ChecksumError",
    "DatasetResources",
    "Resource",
    "download_file",
    "download_files",
    "extract_tar",
    "fetch",
    "file_digest",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file's checksum differs from the published one."""


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    Attributes:
        filename: File name, appended to the base URL and used as the local name.
        checksum: Expected hex digest.
        algorithm: Hash name understood by :mod:`hashlib` (``"sha256"`` or ``"md5"``).
    """

    filename: str
    checksum: str
    algorithm: str = "sha256"


@dataclass(frozen=True)
class DatasetResources:
    """Where a dataset is published and how it lands on disk.

    Attributes:
        base_url: URL prefix of the files.
        files: The files to fetch.
        subdir: Folder under the download root that receives the files (or, for archives,
            the folder the archive contains).
        archive: Whether the files are ``.tar.gz`` archives to extract into the root.
    """

    base_url: str
    files: tuple[Resource, ...]
    subdir: str
    archive: bool = False


#: Published locations and checksums, keyed by dataset name.
RESOURCES: dict[str, DatasetResources] = {
    "fashion-mnist": DatasetResources(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files=(
            Resource("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "md5"),
            Resource("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", "md5"),
            Resource("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", "md5"),
            Resource("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", "md5"),
        ),
        subdir="fashion-mnist",
    ),
    "cifar10": DatasetResources(
        base_url="https://www.cs.toronto.edu/~kriz/",
        files=(Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "md5"),),
        subdir="cifar-10-batches-py",
        archive=True,
    ),
    "cifar100": DatasetResources(
        base_url="https://www.cs.toronto.edu/~kriz/",
        files=(Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "md5"),),
        subdir="cifar-100-python",
        archive=True,
    ),
    "svhn": DatasetResources(
        base_url="http://ufldl.stanford.edu/housenumbers/",
        files=(
            Resource("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", "md5"),
            Resource("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", "md5"),
        ),
        subdir="svhn",
    ),
}


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks.

    Args:
        path: File to hash.
        algorithm: :mod:`hashlib` algorithm name.

    Returns:
        The lowercase hex digest.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = p.write_bytes(b"abc")
        >>> file_digest(p)[:8]
        'ba7816bf'
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be downloaded, got {url!r}")


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    checksum: str,
    algorithm: str = "sha256",
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its checksum.

    If ``dest`` already exists with the right checksum nothing is fetched. Otherwise the body is
    streamed into a hidden temporary file in ``dest``'s folder while being hashed, and moved
    onto ``dest`` with :func:`os.replace` only when the digest matches.

    Args:
        url: ``http://`` or ``https://`` URL.
        dest: Destination file; its folder is created if needed.
        checksum: Expected hex digest (case-insensitive).
        algorithm: Hash algorithm of ``checksum`` (``"sha256"``, or ``"md5"`` where that is
            what is published).
        timeout: Socket timeout in seconds.

    Returns:
        ``Path(dest)``.

    Raises:
        ChecksumError: On a digest mismatch; no file is left behind (a pre-existing ``dest``
            with a wrong digest is left untouched).
        OSError: If the download fails (HTTP error, connection refused, ...).
        ValueError: On a non-HTTP URL or an unknown algorithm.

    Example:
        >>> download_file("https://example.org/f.bin", "/tmp/f.bin",
        ...               checksum="0" * 64)  # doctest: +SKIP
    """
    _check_url(url)
    dest = Path(dest)
    expected = checksum.strip().lower()
    hashlib.new(algorithm)  # raises ValueError for an unknown algorithm
    if dest.is_file() and file_digest(dest, algorithm) == expected:
        logger.info("%s already present with the right %s, not downloading", dest, algorithm)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.new(algorithm)
    logger.info("downloading %s -> %s", url, dest)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as exc:
                raise OSError(f"download of {url} failed: {exc}") from exc
            with response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {url}: expected {algorithm} {expected}, got {actual}; "
                f"nothing was written to {dest}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s (%s ok)", dest, algorithm)
    return dest


def download_files(
    base_url: str,
    files: tuple[Resource, ...] | list[Resource],
    dest_dir: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
) -> list[Path]:
    """Download several files from one base URL into ``dest_dir`` (see :func:`download_file`).

    Args:
        base_url: URL prefix; a missing trailing slash is added.
        files: Files to fetch, each with its checksum.
        dest_dir: Destination folder.
        timeout: Socket timeout in seconds per request.

    Returns:
        The local paths, in the order of ``files``.

    Example:
        >>> download_files("https://example.org/data/",
        ...                [Resource("a.gz", "0" * 64)], "/tmp/data")  # doctest: +SKIP
    """
    if not base_url.endswith("/"):
        base_url += "/"
    paths = []
    for res in files:
        url = urllib.parse.urljoin(base_url, urllib.parse.quote(res.filename))
        paths.append(
            download_file(
                url,
                Path(dest_dir) / res.filename,
                checksum=res.checksum,
                algorithm=res.algorithm,
                timeout=timeout,
            )
        )
    return paths


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or not (member.isfile() or member.isdir()):
        raise ValueError(f"{archive}: refusing to extract unsafe member {name!r}")


def extract_tar(archive: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> None:
    """Extract a (gzipped) tar archive safely into ``dest_dir``.

    Only regular files and folders with relative, ``..``-free names are accepted. Members are
    extracted into a temporary folder inside ``dest_dir``; each top-level entry is then moved
    into place with :func:`os.replace` (an existing folder of the same name is replaced).

    Args:
        archive: Path of the ``.tar`` / ``.tar.gz`` file.
        dest_dir: Destination folder (created if needed).

    Raises:
        ValueError: On an unsafe member or a corrupted archive (naming the file).

    Example:
        >>> extract_tar("cifar-10-python.tar.gz", "/data")  # doctest: +SKIP
    """
    archive = Path(archive)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                tar.extractall(tmp, members=members, **_tar_filter_kwargs())
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValueError(f"{archive}: corrupted or truncated archive ({exc})") from exc
        for entry in tmp.iterdir():
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tar_filter_kwargs() -> dict[str, str]:
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def fetch(dataset: str, root: str | os.PathLike[str], *, timeout: float = 60.0) -> Path:
    """Download (and extract) one of :data:`RESOURCES` under ``root``.

    Args:
        dataset: ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"`` or ``"svhn"``.
        root: Data root; files land in ``root / RESOURCES[dataset].subdir``.
        timeout: Socket timeout in seconds per request.

    Returns:
        The folder holding the dataset's files.

    Raises:
        ValueError: For a dataset without published files (e.g. Penn Treebank).

    Example:
        >>> fetch("fashion-mnist", "~/.cache/mlrsnet/data")  # doctest: +SKIP
    """
    if dataset not in RESOURCES:
        raise ValueError(
            f"no download is available for {dataset!r}; downloadable: {sorted(RESOURCES)}"
        )
    spec = RESOURCES[dataset]
    root = Path(root).expanduser()
    folder = root / spec.subdir
    if not spec.archive:
        download_files(spec.base_url, spec.files, folder, timeout=timeout)
        return folder
    for path in download_files(spec.base_url, spec.files, root, timeout=timeout):
        extract_tar(path, root)
    return folder
