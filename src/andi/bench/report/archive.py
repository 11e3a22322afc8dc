"""``andi-bench report ARCHIVE``: the report of a results directory stored as a tar archive.

:func:`report_from_archive` checks every member of the archive, extracts it into a temporary folder and writes the
report (:func:`andi.bench.report.generate_report`) naming the archive as given, so the same records give the same
markdown wherever they are extracted. The published results (``docs/results/<study>/records.tar.xz``) are read
this way.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from andi.bench.errors import SetupError
from andi.bench.report.writer import generate_report

logger = logging.getLogger("andi.bench")

__all__ = ["ARCHIVE_SUFFIXES", "extract_results", "is_archive", "report_from_archive"]

#: What ``andi-bench report`` accepts besides a results directory (:func:`report_from_archive`).
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz")


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` is named like an archive ``andi-bench report`` reads (:data:`ARCHIVE_SUFFIXES`)."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def _unsafe(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be extracted (a path outside the destination, a link, a device...), or ``None``."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).anchor:
        return "an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a path with '..'"
    if member.issym() or member.islnk():
        return f"a {'symbolic' if member.issym() else 'hard'} link to {member.linkname!r}"
    if not (member.isreg() or member.isdir()):
        return "neither a regular file nor a folder"
    return None


def extract_results(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` (tar, optionally gzip- or xz-compressed) into ``dest``; return its results directory.

    Every member is checked before anything is written: an absolute path, a path with ``..``, a symbolic or hard
    link, or anything but a regular file or a folder refuses the whole archive (:class:`SetupError`). Extraction
    then uses tarfile's ``data`` filter where Python has it. The results directory is the folder holding the
    ``manifest-*.json`` files: the archive's top level, or the folder reached through single top-level folders
    (``results/`` or ``andi-bench-results/study/``). Raises :class:`FileNotFoundError` when there is none.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            names = [PurePosixPath(m.name).as_posix() for m in members if m.isfile()]
            twice = len(names) - len(set(names))
            if twice:
                logger.warning("%s holds %d file name(s) twice; the later copy of each is the one used", archive, twice)
            for m in members:
                why = _unsafe(m)
                if why is not None:
                    raise SetupError(
                        f"report {archive}: member {m.name!r} is {why}; refusing to extract the archive. "
                        "Make an archive of the results directory alone (e.g. `tar -cJf results.tar.xz DIR`)"
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters: the checks above are the filter
                for m in members:
                    target = dest.joinpath(*PurePosixPath(m.name).parts)
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    assert src is not None
                    with src, open(target, "wb") as f:
                        f.write(src.read())
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as e:
        raise SetupError(
            f"report {archive}: not a readable tar archive ({e}); give a results directory or a .tar, .tar.gz or "
            ".tar.xz archive of one"
        ) from None
    root = dest
    while not any(root.glob("manifest-*.json")):
        subdirs = [p for p in root.iterdir() if p.is_dir()]
        if len(subdirs) != 1:
            raise FileNotFoundError(
                f"no manifest-*.json in {archive} (at its top level or in its one top-level folder): archive "
                "the --out directory of `andi-bench quick` or `andi-bench run`"
            )
        root = subdirs[0]
    return root


def report_from_archive(archive: str | Path, out: str | Path | None = None, *, figures: bool = True) -> Path:
    """The report of the results directory archived in ``archive`` (:func:`extract_results`), written to ``out``
    (default: ``report.md`` next to the archive) with its figures under ``figures/`` next to ``out``.

    The archive is extracted into a temporary directory that is removed afterwards; the report names the archive
    as given, never that directory, so it is the same wherever and however often it is produced. As with
    :func:`generate_report`, a report that cannot be produced leaves what was at ``out`` untouched.
    """
    archive = Path(archive)
    out = Path(out) if out is not None else archive.parent / "report.md"
    with tempfile.TemporaryDirectory(prefix="andi-report-") as tmp:
        root = extract_results(archive, tmp)
        return generate_report(root, out, figures=figures, shown_as=str(archive))
