"""Dataset readers, data-root resolution, checksum verification and (offline, file://) downloads."""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from andi.bench import util
from andi.bench.tasks import data

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


# ------------------------------------------------------------------------------------------------ readers
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path: Path, suffix: str, writers) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    writers.idx(tmp_path / f"img{suffix}", images)
    writers.idx(tmp_path / f"lab{suffix}", labels)
    np.testing.assert_array_equal(data.read_idx(tmp_path / f"img{suffix}"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / f"lab{suffix}"), labels)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an idx file"):
        data.read_idx(tmp_path / "bad")
    header = bytes([0, 0, 8, 2]) + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    (tmp_path / "short.gz").write_bytes(gzip.compress(header + b"\x00" * 11))
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        data.read_idx(tmp_path / "short.gz")


def test_read_cifar10_bin_layout(tmp_path: Path, writers) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 1], dtype=np.uint8)
    raw = writers.cifar_records(images, labels)
    # the layout of one record: label byte, then R, G, B planes in row-major order
    assert raw[0] == 3 and raw[1:33] == images[0, 0, 0].tobytes() and raw[1 + 1024] == images[0, 1, 0, 0]
    (tmp_path / "a.bin").write_bytes(raw[: 3 * 3073])
    (tmp_path / "b.bin").write_bytes(raw[3 * 3073 :])
    got_images, got_labels = data.read_cifar10_bin([tmp_path / "a.bin", tmp_path / "b.bin"])
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels.astype(np.int64))
    (tmp_path / "c.bin").write_bytes(raw[:100])
    with pytest.raises(ValueError, match="multiple of 3073"):
        data.read_cifar10_bin([tmp_path / "c.bin"])


def test_loaders_parse_synthetic_files_and_cache(synthetic_data_root: Path) -> None:
    x, y = data.load_fashion_mnist(synthetic_data_root, train=True)
    assert x.shape == (600, 28, 28) and x.dtype == np.uint8 and y.shape == (600,)
    assert not x.flags.writeable
    assert data.load_fashion_mnist(synthetic_data_root, train=True)[0] is x  # in-memory cache
    xt, _ = data.load_fashion_mnist(synthetic_data_root, train=False)
    assert xt.shape == (120, 28, 28)
    ci, cl = data.load_cifar10(synthetic_data_root, train=True)
    assert ci.shape == (300, 3, 32, 32) and cl.dtype == np.int64 and cl.max() <= 9
    assert data.load_cifar10(synthetic_data_root, train=False)[0].shape == (120, 3, 32, 32)
    text = data.load_tinyshakespeare(synthetic_data_root)
    assert len(text) == 30_000 and text.startswith(text[:5])


# -------------------------------------------------------------------------------------------- data root
def test_resolve_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work" / "main"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(data, "_repo_root", lambda: tmp_path / "nowhere" / "repo")
    monkeypatch.setattr(data, "DEFAULT_CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv(data.ENV_ROOT, raising=False)
    assert data.resolve_data_root() == tmp_path / "cache"
    shared = tmp_path / "work" / "shared" / "data"
    shared.mkdir(parents=True)
    assert data.resolve_data_root() == shared
    monkeypatch.setenv(data.ENV_ROOT, str(tmp_path / "env"))
    assert data.resolve_data_root() == tmp_path / "env"
    assert data.resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    # relative to the repository checkout when the working directory has no ../shared/data
    monkeypatch.delenv(data.ENV_ROOT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "_repo_root", lambda: work)
    assert data.resolve_data_root() == shared


def test_repo_root_is_the_checkout() -> None:
    """The tests run from a source checkout: its root holds pyproject.toml (and ../shared/data sits beside it)."""
    root = data._repo_root()
    assert (root / "pyproject.toml").is_file() and (root / "src" / "andi").is_dir()


# ------------------------------------------------------------------------------------------------ checksums
def _spec_for(monkeypatch: pytest.MonkeyPatch, rel: str, content: bytes, urls: tuple[str, ...] = ()) -> None:
    digest = data.hashlib.sha256(content).hexdigest()
    spec = dataclasses.replace(data.SOURCES[rel], urls=urls, sha256=(digest,), md5=(), approximate_md5=())
    monkeypatch.setitem(data.SOURCES, rel, spec)


def test_checksum_mismatch_names_file_expected_actual_and_fix(tmp_path: Path, monkeypatch) -> None:
    rel = "tinyshakespeare/input.txt"
    good = b"to be or not to be\n"
    _spec_for(monkeypatch, rel, good, urls=("https://example.invalid/input.txt",))
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / rel).write_bytes(good[:-3])
    with pytest.raises(data.ChecksumError) as info:
        data.ensure_file(rel, tmp_path)
    msg = str(info.value)
    assert rel in msg and str(tmp_path / rel) in msg
    assert data.hashlib.sha256(good).hexdigest() in msg  # expected
    assert data.file_digest(tmp_path / rel, "sha256") in msg  # actual
    assert "Fix: delete" in msg and "https://example.invalid/input.txt" in msg
    (tmp_path / rel).write_bytes(good)
    assert data.ensure_file(rel, tmp_path) == tmp_path / rel


def test_real_checksum_table_rejects_synthetic_file(tmp_path: Path) -> None:
    """The shipped table (not a test override) is what guards a stray file."""
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("not shakespeare")
    with pytest.raises(data.ChecksumError, match="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"):
        data.load_tinyshakespeare(tmp_path, download=False)


def test_verification_can_be_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("anything")
    monkeypatch.setenv(data.ENV_VERIFY, "0")
    monkeypatch.setattr(util, "_warned", set())
    with pytest.warns(UserWarning, match="NOT verified"):
        assert data.ensure_file("tinyshakespeare/input.txt", tmp_path).read_text() == "anything"


# ------------------------------------------------------------------------------------------------ downloads
def test_download_via_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.ENV_DOWNLOAD, "1")
    src = tmp_path / "mirror" / "input.txt"
    src.parent.mkdir()
    src.write_bytes(b"First Citizen:\nBefore we proceed any further, hear me speak.\n")
    missing = (tmp_path / "mirror" / "absent.txt").as_uri()
    _spec_for(monkeypatch, "tinyshakespeare/input.txt", src.read_bytes(), urls=(missing, src.as_uri()))
    root = tmp_path / "root"
    path = data.ensure_file("tinyshakespeare/input.txt", root)  # first mirror fails, second works
    assert path == root / "tinyshakespeare" / "input.txt"
    assert path.read_bytes() == src.read_bytes()
    assert not list(path.parent.glob("*.part"))


def test_download_with_wrong_checksum_is_rejected_and_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(data.ENV_DOWNLOAD, "1")
    src = tmp_path / "served.txt"
    src.write_bytes(b"tampered")
    _spec_for(monkeypatch, "tinyshakespeare/input.txt", b"original", urls=(src.as_uri(),))
    with pytest.raises(data.DataMissingError, match="checksum mismatch") as info:
        data.ensure_file("tinyshakespeare/input.txt", tmp_path / "root")
    assert data.hashlib.sha256(b"original").hexdigest() in str(info.value)
    assert not (tmp_path / "root" / "tinyshakespeare" / "input.txt").exists()


def test_missing_file_without_download_explains_the_fix(tmp_path: Path) -> None:
    with pytest.raises(data.DataMissingError, match="ANDI_DATA_DOWNLOAD=0") as info:
        data.ensure_file("FashionMNIST/raw/train-labels-idx1-ubyte.gz", tmp_path)
    assert "Fix: place the file at" in str(info.value)


def _cifar_archive(tmp_path: Path, cifar_records) -> tuple[Path, dict[str, bytes]]:
    rng = np.random.default_rng(3)
    files = {}
    for name in (*data.CIFAR10_TRAIN_FILES, *data.CIFAR10_TEST_FILES):
        files[name] = cifar_records(
            rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 4).astype(np.uint8)
        )
    archive = tmp_path / "mirror" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:

        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        for name, payload in files.items():
            add(f"cifar-10-batches-bin/{name}", payload)
        add("cifar-10-batches-bin/batches.meta.txt", b"airplane\n")
        add("../escape.bin", b"must not be written")
    return archive, files


def test_cifar_archive_download_extract_and_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers) -> None:
    monkeypatch.setenv(data.ENV_DOWNLOAD, "1")
    archive, files = _cifar_archive(tmp_path, writers.cifar_records)
    monkeypatch.setattr(
        data,
        "CIFAR10_ARCHIVE",
        dataclasses.replace(data.CIFAR10_ARCHIVE, urls=(archive.as_uri(),), md5=(data.file_digest(archive, "md5"),)),
    )
    root = tmp_path / "root"
    folder = data.ensure_cifar10(root)
    assert folder == root / "cifar-10-batches-bin"
    for name, payload in files.items():
        assert (folder / name).read_bytes() == payload
    assert (folder / ".andi-verified.json").exists()
    assert not (root / "cifar-10-binary.tar.gz").exists()  # archive deleted after extraction
    assert not (tmp_path / "escape.bin").exists() and not (root / "escape.bin").exists()
    images, _ = data.load_cifar10(root, train=True)
    assert images.shape == (20, 3, 32, 32)
    # a later edit of an extracted file is caught against the recorded md5
    (folder / "test_batch.bin").write_bytes(files["test_batch.bin"][::-1])
    with pytest.raises(data.ChecksumError, match="recorded from the verified archive"):
        data.ensure_cifar10(root)


def test_cifar_archive_with_wrong_md5_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers) -> None:
    monkeypatch.setenv(data.ENV_DOWNLOAD, "1")
    archive, _ = _cifar_archive(tmp_path, writers.cifar_records)
    monkeypatch.setattr(
        data, "CIFAR10_ARCHIVE", dataclasses.replace(data.CIFAR10_ARCHIVE, urls=(archive.as_uri(),), md5=("0" * 32,))
    )
    with pytest.raises(data.DataMissingError, match="0" * 32):
        data.ensure_cifar10(tmp_path / "root")
    assert not (tmp_path / "root" / "cifar-10-batches-bin" / "data_batch_1.bin").exists()


def test_rebuilt_cifar_copy_is_accepted_with_one_warning(tmp_path: Path, monkeypatch, writers) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in (*data.CIFAR10_TRAIN_FILES, *data.CIFAR10_TEST_FILES):
        images = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
        payload = writers.cifar_records(images, np.array([1, 2], np.uint8))
        (folder / name).write_bytes(payload)
        rel = f"cifar-10-batches-bin/{name}"
        monkeypatch.setitem(
            data.SOURCES,
            rel,
            dataclasses.replace(data.SOURCES[rel], approximate_md5=(data.hashlib.md5(payload).hexdigest(),)),
        )
    monkeypatch.setattr(util, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.ensure_cifar10(tmp_path)
        data.ensure_cifar10(tmp_path)
    approximate = [w for w in caught if "approximate CIFAR-10 copy" in str(w.message)]
    assert len(approximate) == 1
    # an unknown file is refused with the fix
    (folder / "data_batch_3.bin").write_bytes(b"\x00" * 3073)
    with pytest.raises(data.ChecksumError, match="Fix: delete the folder"):
        data.ensure_cifar10(tmp_path)


# ---------------------------------------------------------------------------------------- the shared copy
@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/data checkout next to the repository")
def test_shared_data_first_records() -> None:
    x, y = data.load_fashion_mnist(SHARED, train=True)
    assert x.shape == (60_000, 28, 28) and y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert data.load_fashion_mnist(SHARED, train=False)[0].shape == (10_000, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci, cl = data.load_cifar10(SHARED, train=True)
    assert ci.shape == (50_000, 3, 32, 32) and cl[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.load_cifar10(SHARED, train=False)[1][:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    text = data.load_tinyshakespeare(SHARED)
    assert len(text) == 1_115_394 and text.startswith("First Citizen:") and len(set(text)) == 65
