"""Fixtures for the benchmark tests: small synthetic datasets in the exact on-disk formats, no network.

``synthetic_data_root`` is a data root with Fashion-MNIST (idx gz), CIFAR-10 (binary batches) and
TinyShakespeare-like text files, a few hundred examples each, whose checksums are registered as trusted for
the duration of the test. Pass it as ``data_root`` to :func:`andi.bench.tasks.get_task` or
:func:`andi.bench.execution.runner.run`. Every test in this folder runs with ``ANDI_DATA_DOWNLOAD=0``.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from andi.bench.tasks import data

FASHION_TRAIN, FASHION_TEST = 600, 120
CIFAR_PER_BATCH, CIFAR_TEST = 60, 120
TEXT_CHARS = 30_000


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in idx format (gzip-compressed when ``path`` ends in ``.gz``)."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload, mtime=0))
    else:
        path.write_bytes(payload)


def cifar_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The 3073-byte CIFAR-10 binary records of ``images`` (N, 3, 32, 32) uint8 and ``labels`` (N,)."""
    rec = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    return rec.tobytes()


def synthetic_text(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = ["thou", "art", "the", "king", "of", "rome", "and", "speak", "now", "First Citizen:\n", "ay,"]
    out: list[str] = []
    size = 0
    while size < n:
        w = words[rng.integers(len(words))] + (" " if rng.random() < 0.8 else ".\n")
        out.append(w)
        size += len(w)
    return "".join(out)[:n]


def build_synthetic_data(root: Path, seed: int = 0) -> dict[str, str]:
    """Write all synthetic dataset files under ``root``; return {relpath: sha256}."""
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    for prefix, n in (("train", FASHION_TRAIN), ("t10k", FASHION_TEST)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        # class-dependent mean intensity so that there is something to learn
        images = np.clip(rng.normal(20.0 * labels[:, None, None], 40.0, (n, 28, 28)), 0, 255).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    folder = root / data.CIFAR10_BIN_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*data.CIFAR10_TRAIN_FILES, *data.CIFAR10_TEST_FILES):
        n = CIFAR_TEST if name.startswith("test") else CIFAR_PER_BATCH
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        (folder / name).write_bytes(cifar_records(images, labels))
    (root / "tinyshakespeare").mkdir(parents=True, exist_ok=True)
    (root / "tinyshakespeare" / "input.txt").write_text(synthetic_text(TEXT_CHARS), encoding="utf-8")
    return {rel: data.file_digest(root / rel, "sha256") for rel in data.SOURCES if (root / rel).exists()}


@pytest.fixture
def writers() -> SimpleNamespace:
    """The file writers above, for tests that build their own files (``writers.idx(path, array)``...)."""
    return SimpleNamespace(idx=write_idx, cifar_records=cifar_records, text=synthetic_text)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads are forbidden in the benchmark tests unless a test re-enables them (with file:// URLs)."""
    monkeypatch.setenv(data.ENV_DOWNLOAD, "0")
    monkeypatch.delenv(data.ENV_VERIFY, raising=False)


@pytest.fixture(scope="session")
def _synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("andi-synthetic-data")
    return root, build_synthetic_data(root)


@pytest.fixture
def synthetic_data_root(_synthetic_data: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root of tiny synthetic datasets whose checksums are trusted during the test."""
    root, digests = _synthetic_data
    for rel, digest in digests.items():
        spec = data.SOURCES[rel]
        monkeypatch.setitem(data.SOURCES, rel, dataclasses.replace(spec, sha256=(digest,), md5=(), approximate_md5=()))
    return root
