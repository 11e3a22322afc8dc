"""Files in a results directory: atomic writes with ordinary permissions, and quarantine that keeps history.

Records, manifests and reports are written to a temporary file in the destination's directory, fsynced,
then renamed over the destination, so a reader never sees a partial file. :func:`tempfile.mkstemp` creates
its file with mode 0600; :func:`atomic_write_text` gives it the mode ``open()`` would (``0o666 & ~umask``,
0644 under the usual umask) so that everyone who can read the directory can read the results.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "file_safe", "quarantine_path"]

_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def file_safe(name: str) -> str:
    """``name`` as part of a file name: unchanged when it is letters, digits, ``_``, ``.`` and ``-`` only (every
    built-in task and protocol), else those runs joined by ``_`` and 8 hex digits of its SHA-256, so two task specs
    such as ``a/b.py:T`` and ``a_b.py:T`` never share a file.

    >>> file_safe("gpt-w64"), file_safe("examples/my_task.py:TabularTask")
    ('gpt-w64', 'examples_my_task.py_TabularTask-de62b25d')
    """
    if _SAFE.fullmatch(name):
        return name
    slug = "_".join(_SAFE.findall(name))[-60:]
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _umask() -> int:
    # The only portable way to read the umask is to set it; restored at once (not thread-safe, like open()).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, ``\n`` line ends on every system) to ``path`` atomically with mode ``0o666 & ~umask``;
    return ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def quarantine_path(path: str | os.PathLike[str]) -> Path:
    """The first free name of ``<path>.corrupt``, ``<path>.corrupt.1``, ``<path>.corrupt.2``, ...

    Earlier quarantined copies are evidence of what went wrong, so they are never overwritten.
    """
    path = Path(path)
    candidate = path.with_name(path.name + ".corrupt")
    n = 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.corrupt.{n}")
    return candidate
