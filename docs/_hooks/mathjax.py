"""MkDocs hook: ship MathJax inside the built site, so every formula renders with no network.

The build takes MathJax's release tarball from the npm registry (pinned version, checked against the registry's
sha512 integrity), keeps it in a cache folder, and copies the parts a page needs into ``site/javascripts/mathjax/``:
the ``tex-mml-chtml`` component, the TeX extensions it loads on demand, the CommonHTML fonts, the accessibility and
menu components, and the licence. The speech engine (``sre``, 4 MB) is left out: the menu's speech options are the
only thing that loads it.

Offline builds: set ``ANDI_MATHJAX_TARBALL`` to a copy of the tarball (``npm pack mathjax@3.2.2`` makes one), or
build once with the network so the cache holds it (``$XDG_CACHE_HOME/andi`` or ``~/.cache/andi``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

VERSION = "3.2.2"
TARBALL_URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
#: Inside the tarball's ``package/``: what the site serves (a file, or a folder taken whole).
SHIPPED = ("LICENSE", "es5/tex-mml-chtml.js", "es5/input/", "es5/output/chtml/", "es5/a11y/", "es5/ui/")
SITE_FOLDER = "javascripts/mathjax"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "andi"


def _verified(data: bytes, source: str) -> bytes:
    algorithm, _, expected = INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"MathJax tarball {source}: {algorithm} {actual} is not the registry's {expected}")
    return data


def tarball() -> Path:
    """The verified MathJax tarball: ``$ANDI_MATHJAX_TARBALL``, the cached copy, or a fresh download."""
    given = os.environ.get("ANDI_MATHJAX_TARBALL")
    if given:
        _verified(Path(given).read_bytes(), given)
        return Path(given)
    cached = _cache_dir() / f"mathjax-{VERSION}.tgz"
    if cached.is_file():
        try:
            _verified(cached.read_bytes(), str(cached))
            return cached
        except RuntimeError:
            cached.unlink()
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=60) as response:
            data = _verified(response.read(), TARBALL_URL)
    except OSError as e:
        raise RuntimeError(
            f"MathJax {VERSION} is not cached and {TARBALL_URL} cannot be fetched ({e}); set ANDI_MATHJAX_TARBALL "
            f"to a copy (npm pack mathjax@{VERSION})"
        ) from e
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, cached)
    return cached


def _shipped(name: str) -> str | None:
    """The path under the site folder for a tarball member that is shipped, else ``None``."""
    if not name.startswith("package/") or ".." in Path(name).parts:
        return None
    inner = name[len("package/") :]
    if not any(inner == s or (s.endswith("/") and inner.startswith(s)) for s in SHIPPED):
        return None
    return inner[len("es5/") :] if inner.startswith("es5/") else inner


def copy_into(site_dir: Path) -> int:
    """Copy the shipped parts into ``site_dir/javascripts/mathjax``; returns the number of files."""
    dest = site_dir / SITE_FOLDER
    shutil.rmtree(dest, ignore_errors=True)
    count = 0
    with tarfile.open(tarball()) as tar:
        for member in tar.getmembers():
            target = _shipped(member.name) if member.isfile() else None
            if target is None:
                continue
            path = dest / target
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            path.write_bytes(source.read())
            count += 1
    return count


def on_post_build(config: Any, **kwargs: Any) -> None:
    copy_into(Path(config["site_dir"]))
