"""Dataset files for the benchmark: where they live, how they are verified, downloaded and decoded.

Three public datasets are read with numpy only (no torchvision), in the layouts described in
``shared/data/README.md``::

    <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   # idx format, gzip
    <root>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin              # 3073-byte records
    <root>/tinyshakespeare/input.txt                                          # UTF-8 text

**Root.** :func:`resolve_data_root` picks, in order: the explicit argument, ``$ANDI_DATA_ROOT``,
``../shared/data`` relative to the working directory or to the repository checkout (when that folder exists),
and finally ``~/.cache/andi/data``.

**Verification.** Every file is checked against a published checksum before it is decoded (sha256 for
Fashion-MNIST and TinyShakespeare, md5 for the CIFAR-10 archive). The CIFAR-10 ``.bin`` files have no
published per-file checksum: a file is accepted when its md5 is either recorded by :func:`ensure_cifar10`
after it extracted the md5-verified official archive, or is the md5 of the approximate copy rebuilt from JPEGs
that ships in ``shared/data`` (a one-time warning says so). Results are cached per (path, size, mtime), so
a file is hashed once per process. ``ANDI_DATA_VERIFY=0`` skips verification (with a warning).

**Download.** Missing files are fetched from their official sources into the root (``ANDI_DATA_DOWNLOAD=0``
forbids it). Any URL scheme ``urllib`` understands works, ``file://`` included, which is how the tests exercise
this code offline.

**Caching.** Decoded arrays are cached in memory only (never written back to disk).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from andi.bench.util import DataNote, warn_once

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_BIN_DIR",
    "DATASETS",
    "SOURCES",
    "ChecksumError",
    "DataMissingError",
    "RemoteFile",
    "download",
    "ensure_cifar10",
    "ensure_dataset",
    "ensure_file",
    "file_digest",
    "load_cifar10",
    "load_fashion_mnist",
    "load_tinyshakespeare",
    "read_cifar10_bin",
    "read_idx",
    "resolve_data_root",
]

ENV_ROOT = "ANDI_DATA_ROOT"
ENV_VERIFY = "ANDI_DATA_VERIFY"
ENV_DOWNLOAD = "ANDI_DATA_DOWNLOAD"
DEFAULT_CACHE_ROOT = Path("~/.cache/andi/data")

CIFAR10_BIN_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch.bin",)
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32
_CIFAR10_MARKER = ".andi-verified.json"


class ChecksumError(RuntimeError):
    """A dataset file exists but its checksum is not one we trust."""


class DataMissingError(FileNotFoundError):
    """A dataset file is missing and could not (or may not) be downloaded."""


@dataclass(frozen=True)
class RemoteFile:
    """One dataset file: its path under the data root, where to get it, and the checksums it may have.

    ``sha256`` and ``md5`` each hold every accepted hex digest for that algorithm; a file is valid when any
    digest of either algorithm matches. ``approximate`` lists digests that identify a known approximate copy
    (accepted, with a one-time warning).
    """

    relpath: str
    urls: tuple[str, ...]
    sha256: tuple[str, ...] = ()
    md5: tuple[str, ...] = ()
    approximate_md5: tuple[str, ...] = ()
    note: str = ""

    def expected(self) -> str:
        parts = [f"sha256 {d}" for d in self.sha256] + [f"md5 {d}" for d in self.md5]
        parts += [f"md5 {d} (rebuilt approximate copy)" for d in self.approximate_md5]
        return " or ".join(parts) if parts else "(no published checksum)"


_FMNIST_BASES = (
    # Zalando's own mirror (the URL torchvision uses), then the canonical GitHub repository.
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
_FMNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
# md5 of the copy rebuilt from JPEGs that ships in shared/data (shared/data/README.md, last section).
_CIFAR10_REBUILT_MD5 = {
    "data_batch_1.bin": "5a5142663b2c457eb7edf61944cf14cd",
    "data_batch_2.bin": "a03813b579934887e19fffa24f57e096",
    "data_batch_3.bin": "9338b8beb58f9f053aa7e7f6d2ca26a1",
    "data_batch_4.bin": "5d6a4b059305fb3437429da7d5355351",
    "data_batch_5.bin": "b543e7acd6f6cab339de5ace5ae323ae",
    "test_batch.bin": "11e2161f06e495577766fe4411c65d23",
}

CIFAR10_ARCHIVE = RemoteFile(
    relpath="cifar-10-binary.tar.gz",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    md5=("c32a1d4ab5d03f1284b67883e8d87530",),
    note="official CIFAR-10 binary release (Krizhevsky 2009), 162 MB",
)

#: Every file the tasks read, by path under the data root. Tests may replace entries (e.g. with
#: ``monkeypatch.setitem``) to point at local ``file://`` URLs or synthetic checksums.
SOURCES: dict[str, RemoteFile] = {
    **{
        f"FashionMNIST/raw/{name}": RemoteFile(
            relpath=f"FashionMNIST/raw/{name}",
            urls=tuple(base + name for base in _FMNIST_BASES),
            sha256=(digest,),
        )
        for name, digest in _FMNIST_SHA256.items()
    },
    "tinyshakespeare/input.txt": RemoteFile(
        relpath="tinyshakespeare/input.txt",
        urls=("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
        sha256=("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",),
    ),
    **{
        f"{CIFAR10_BIN_DIR}/{name}": RemoteFile(
            relpath=f"{CIFAR10_BIN_DIR}/{name}",
            urls=(),  # comes out of CIFAR10_ARCHIVE
            approximate_md5=(digest,),
        )
        for name, digest in _CIFAR10_REBUILT_MD5.items()
    },
}


# ----------------------------------------------------------------------------------------------- data root
def _repo_root() -> Path:
    # src/andi/bench/tasks/data.py -> the checkout (meaningful for an editable install only; only used if it exists)
    return Path(__file__).resolve().parents[4]


def resolve_data_root(data_root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``data_root`` > ``$ANDI_DATA_ROOT`` > an existing ``../shared/data`` > ``~/.cache/andi/data``.

    ``../shared/data`` is looked up relative to the working directory, then to the repository checkout.
    The returned path need not exist yet (missing files are downloaded into it).
    """
    if data_root is not None:
        return Path(data_root).expanduser()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), _repo_root()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return DEFAULT_CACHE_ROOT.expanduser()


# ------------------------------------------------------------------------------------------------ checksums
def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hex digest of a file's bytes (``algorithm`` is any :mod:`hashlib` name, e.g. ``"sha256"``)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_digest_cache: dict[tuple[str, str, int, int], str] = {}


def _cached_digest(path: Path, algorithm: str) -> str:
    st = path.stat()
    key = (str(path.resolve()), algorithm, st.st_size, st.st_mtime_ns)
    if key not in _digest_cache:
        _digest_cache[key] = file_digest(path, algorithm)
    return _digest_cache[key]


def _verification_enabled() -> bool:
    if os.environ.get(ENV_VERIFY, "1").strip().lower() in ("0", "false", "no", "off"):
        warn_once(
            "noverify", f"{ENV_VERIFY}=0: dataset checksums are NOT verified; results may be meaningless.", DataNote
        )
        return False
    return True


def _match(path: Path, spec: RemoteFile, extra_md5: Iterable[str] = ()) -> tuple[bool, bool, str]:
    """(valid, approximate, description of the actual digests) for ``path`` against ``spec``."""
    actual: list[str] = []
    if spec.sha256:
        got = _cached_digest(path, "sha256")
        actual.append(f"sha256 {got}")
        if got in spec.sha256:
            return True, False, actual[-1]
    md5s = (*spec.md5, *extra_md5)
    if md5s or spec.approximate_md5:
        got = _cached_digest(path, "md5")
        actual.append(f"md5 {got}")
        if got in md5s:
            return True, False, actual[-1]
        if got in spec.approximate_md5:
            return True, True, actual[-1]
    return False, False, ", ".join(actual) or "(nothing to compare)"


def verify_file(path: Path, spec: RemoteFile, *, fix: str, extra_md5: Iterable[str] = ()) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has an accepted checksum for ``spec``."""
    if not _verification_enabled():
        return
    extra = tuple(extra_md5)
    ok, approximate, actual = _match(path, spec, extra)
    if not ok:
        expected = spec.expected()
        if extra:
            expected += " or " + " or ".join(f"md5 {d} (recorded from the verified archive)" for d in extra)
        raise ChecksumError(
            f"checksum mismatch for {spec.relpath} at {path}:\n  expected {expected}\n  actual   {actual}\nFix: {fix}"
        )
    if approximate:
        warn_once(
            "approximate:" + str(path.parent),
            f"{path.parent} is the approximate CIFAR-10 copy rebuilt from JPEGs (not byte-identical to the "
            "official release; see shared/data/README.md): results are close to, not equal to, runs on the "
            "official files.",
            DataNote,
        )


# ----------------------------------------------------------------------------------------------- download
def _downloads_allowed() -> bool:
    return os.environ.get(ENV_DOWNLOAD, "1").strip().lower() not in ("0", "false", "no", "off")


def download(url: str, dest: str | os.PathLike[str], *, timeout: float = 60.0) -> Path:
    """Fetch ``url`` (http(s) or ``file://``) to ``dest`` atomically (via ``dest.part``) and return ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _fetch_verified(spec: RemoteFile, dest: Path, *, urls: Sequence[str] | None = None) -> Path:
    """Download ``spec`` to ``dest`` from the first URL that works and verify it; raise with every failure."""
    urls = tuple(urls if urls is not None else spec.urls)
    if not _downloads_allowed() or not urls:
        why = f"{ENV_DOWNLOAD}=0 forbids downloads" if urls else "no download source is known for it"
        raise DataMissingError(
            f"{spec.relpath} is missing under {dest.parent} and {why}.\n"
            f"Fix: place the file at {dest} (expected {spec.expected()}), or point --data-root / "
            f"${ENV_ROOT} at a folder that has it."
        )
    errors: list[str] = []
    for url in urls:
        print(f"andi.bench.tasks.data: downloading {spec.relpath} from {url}", file=sys.stderr)
        try:
            download(url, dest)
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            errors.append(f"{url}: {exc}")
            continue
        try:
            verify_file(
                dest,
                spec,
                fix=f"the download from {url} is corrupt or not the expected file; "
                "delete it and retry, or fetch it by hand from another mirror",
            )
        except ChecksumError as exc:
            dest.unlink(missing_ok=True)
            errors.append(str(exc))
            continue
        return dest
    raise DataMissingError(
        f"could not download {spec.relpath}:\n  "
        + "\n  ".join(errors)
        + f"\nFix: download it by hand to {dest} (expected {spec.expected()}), or set --data-root / ${ENV_ROOT}."
    )


def ensure_file(relpath: str, data_root: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Path of the verified file ``relpath`` (a key of :data:`SOURCES`) under the data root.

    A missing file is downloaded (``download=True``); an existing file with a wrong checksum raises
    :class:`ChecksumError` naming the file, the expected and the actual checksum, and the fix.
    """
    root = resolve_data_root(data_root)
    spec = SOURCES[relpath]
    path = root / relpath
    if not path.exists():
        if not download:
            raise DataMissingError(f"{relpath} is missing under {root} and download=False.")
        return _fetch_verified(spec, path)
    verify_file(
        path,
        spec,
        fix=f"delete {path} so that it is downloaded again from {' or '.join(spec.urls)}, "
        f"or replace it with a good copy",
    )
    return path


def _recorded_cifar_md5(folder: Path) -> dict[str, str]:
    marker = folder / _CIFAR10_MARKER
    if not marker.exists():
        return {}
    try:
        return dict(json.loads(marker.read_text())["files"])
    except (ValueError, KeyError, TypeError):
        return {}


def _extract_cifar_archive(archive: Path, root: Path) -> dict[str, str]:
    """Extract the regular files under ``cifar-10-batches-bin/`` (and nothing else) from the archive."""
    target = root / CIFAR10_BIN_DIR
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            # Only plain files directly in cifar-10-batches-bin/: no links, no absolute or ``..`` paths.
            if not member.isfile() or len(parts) != 2 or parts[0] != CIFAR10_BIN_DIR or parts[1] in ("..", "."):
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            dest = target / parts[1]
            part = dest.with_name(dest.name + ".part")
            with src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, length=1 << 20)
            os.replace(part, dest)
            if dest.suffix == ".bin":
                written[dest.name] = file_digest(dest, "md5")
    return written


def ensure_cifar10(data_root: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Folder ``<root>/cifar-10-batches-bin`` with verified ``data_batch_1..5.bin`` and ``test_batch.bin``.

    When a file is missing the official archive is downloaded, its md5 checked, its ``.bin`` files extracted
    and their md5s recorded in ``.andi-verified.json`` beside them (the official release publishes no per-file
    checksum); the archive is then deleted. Existing files must match a recorded md5 or the rebuilt copy's.
    """
    root = resolve_data_root(data_root)
    folder = root / CIFAR10_BIN_DIR
    names = CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES
    if any(not (folder / n).exists() for n in names):
        if not download:
            raise DataMissingError(f"CIFAR-10 binary files are missing under {folder} and download=False.")
        archive = _fetch_verified(CIFAR10_ARCHIVE, root / CIFAR10_ARCHIVE.relpath)
        try:
            recorded = _extract_cifar_archive(archive, root)
        finally:
            archive.unlink(missing_ok=True)
        missing = [n for n in names if n not in recorded]
        if missing:
            raise DataMissingError(f"the CIFAR-10 archive did not contain {missing} under {CIFAR10_BIN_DIR}/")
        marker = {"source": CIFAR10_ARCHIVE.urls[0], "archive_md5": CIFAR10_ARCHIVE.md5[0], "files": recorded}
        (folder / _CIFAR10_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    recorded = _recorded_cifar_md5(folder)
    for name in names:
        rel = f"{CIFAR10_BIN_DIR}/{name}"
        extra = (recorded[name],) if name in recorded else ()
        verify_file(
            folder / name,
            SOURCES[rel],
            extra_md5=extra,
            fix=f"delete the folder {folder} so that the official archive ({CIFAR10_ARCHIVE.urls[0]}, md5 "
            f"{CIFAR10_ARCHIVE.md5[0]}) is downloaded and verified again, or set {ENV_VERIFY}=0 if you "
            "trust these files",
        )
    return folder


#: Dataset names (a task's ``datasets``) -> the files under the data root that each one consists of.
DATASETS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": tuple(f"FashionMNIST/raw/{name}" for name in _FMNIST_SHA256),
    "cifar10": tuple(f"{CIFAR10_BIN_DIR}/{name}" for name in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES),
    "tinyshakespeare": ("tinyshakespeare/input.txt",),
}


def ensure_dataset(name: str, data_root: str | os.PathLike[str] | None = None, *, download: bool = True) -> None:
    """Make every file of dataset ``name`` (a key of :data:`DATASETS`) present and verified, without decoding.

    What the loaders do first, so that a caller can check the data before doing any work; the digests are
    cached, so the loaders do not hash the files again. Raises :class:`DataMissingError` or
    :class:`ChecksumError`.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if name == "cifar10":
        ensure_cifar10(data_root, download=download)
        return
    for relpath in DATASETS[name]:
        ensure_file(relpath, data_root, download=download)


# ------------------------------------------------------------------------------------------------- readers
_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an idx file (LeCun's MNIST format; gzip-compressed when the name ends in ``.gz``).

    Header: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions ``k``, then ``k``
    big-endian int32 sizes; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (magic bytes {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: idx header says shape {shape} ({expected} bytes) but the file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_cifar10_bin(paths: Iterable[str | os.PathLike[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR-10 binary batches: ``(images uint8 (N, 3, 32, 32) RGB, labels int64 (N,))``.

    Each record is 3,073 bytes: a label byte (0-9), then the 1,024 red, 1,024 green and 1,024 blue bytes of a
    32x32 image in row-major order.
    """
    chunks = []
    for p in paths:
        buf = np.fromfile(p, dtype=np.uint8)
        if buf.size == 0 or buf.size % CIFAR10_RECORD_BYTES:
            raise ValueError(f"{p}: {buf.size} bytes is not a positive multiple of {CIFAR10_RECORD_BYTES}")
        chunks.append(buf.reshape(-1, CIFAR10_RECORD_BYTES))
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) > 9:
        raise ValueError(f"CIFAR-10 labels must be 0-9, found {int(labels.max())}")
    images = np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32))
    return images, labels


# ------------------------------------------------------------------------------------ cached dataset loaders
def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


@functools.lru_cache(maxsize=8)
def _fashion_cached(root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if train else "t10k"
    images = read_idx(ensure_file(f"FashionMNIST/raw/{prefix}-images-idx3-ubyte.gz", root, download=download))
    labels = read_idx(ensure_file(f"FashionMNIST/raw/{prefix}-labels-idx1-ubyte.gz", root, download=download))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"Fashion-MNIST {prefix}: unexpected shapes {images.shape} / {labels.shape}")
    _readonly(images, labels)
    return images, labels


def load_fashion_mnist(
    data_root: str | os.PathLike[str] | None = None, *, train: bool = True, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``(images uint8 (N, 28, 28), labels uint8 (N,))``; N = 60,000 train / 10,000 test.

    The arrays are read-only and cached in memory per root.
    """
    return _fashion_cached(str(resolve_data_root(data_root).resolve()), train, download)


@functools.lru_cache(maxsize=4)
def _cifar_cached(root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = ensure_cifar10(root, download=download)
    names = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
    images, labels = read_cifar10_bin([folder / n for n in names])
    _readonly(images, labels)
    return images, labels


def load_cifar10(
    data_root: str | os.PathLike[str] | None = None, *, train: bool = True, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``; N = 50,000 train / 10,000 test.

    Train is ``data_batch_1..5`` in order, test is ``test_batch``. Read-only, cached in memory per root.
    """
    return _cifar_cached(str(resolve_data_root(data_root).resolve()), train, download)


@functools.lru_cache(maxsize=4)
def _text_cached(root: str, download: bool) -> str:
    return ensure_file("tinyshakespeare/input.txt", root, download=download).read_text(encoding="utf-8")


def load_tinyshakespeare(data_root: str | os.PathLike[str] | None = None, *, download: bool = True) -> str:
    """The TinyShakespeare text (1,115,394 characters for the official file), cached in memory per root."""
    return _text_cached(str(resolve_data_root(data_root).resolve()), download)
