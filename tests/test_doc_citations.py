"""No docstring, comment or doc page cites a file that is not in the repository.

A citation is a Markdown file name (``name.md``) or a path into the repository's own folders (``docs/…``,
``src/…``, ``tests/…``, ``examples/…``, ``scripts/…``, ``.ci/…``), in a docstring or comment of the Python code or
anywhere in a doc page. In code it is resolved from the repository root; in a page from the page's folder, then from
``docs/`` and the root. Files of other repositories are cited with their owner (``VladimerKhasia/ANDI:ANDI.py``) and
are not checked; the names of files the tools write (:data:`GENERATED`) are not citations. ``mkdocs build --strict``
checks the pages' links on top of this.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FOLDERS = ("docs", "src", "tests", "examples", "scripts", ".ci")
_CITATION = re.compile(
    r"(?<![\w./:-])((?:(?:" + "|".join(re.escape(f) for f in _FOLDERS) + r")/[\w./-]*[\w])|[\w.-]+\.md)(?![\w/])"
)


#: Files ``andi-bench`` (and scripts/gpu_evidence.sh) write into a results directory: named in docs and docstrings,
#: never in the repository.
GENERATED = frozenset({"report.md", "step_bench.md", "summary.md"})


def _prose_lines(source: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the prose in ``source``: every line of a page, docstrings and comments of code."""
    text = source.read_text(encoding="utf-8")
    if source.suffix != ".py":
        yield from enumerate(text.splitlines(), 1)
        return
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                for offset, line in enumerate(first.value.value.splitlines()):
                    yield first.lineno + offset, line
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def _sources() -> list[Path]:
    code = [p for folder in ("src", "tests", "examples", "scripts") for p in (ROOT / folder).rglob("*.py")]
    # a sweep's records/ folder holds andi-bench's own output (its report.md names the design notes by their short name)
    pages = [p for p in (ROOT / "docs").rglob("*.md") if "records" not in p.parts] if (ROOT / "docs").is_dir() else []
    top = [ROOT / name for name in ("README.md", "CHANGELOG.md", "mkdocs.yml") if (ROOT / name).exists()]
    return sorted(code + pages + top)


def _exists(citation: str, source: Path) -> bool:
    target = citation.rstrip(".")
    candidates = [ROOT / target]
    if source.suffix == ".md":
        candidates.append(source.parent / target)
    if source.is_relative_to(ROOT / "docs") or source.name == "mkdocs.yml":
        candidates.append(ROOT / "docs" / target)
    return any(c.exists() for c in candidates)


def test_every_cited_file_exists() -> None:
    missing = []
    for source in _sources():
        if source == Path(__file__).resolve():
            continue  # this file names examples of citations
        for number, line in _prose_lines(source):
            for match in _CITATION.finditer(line):
                if match.group(1) not in GENERATED and not _exists(match.group(1), source):
                    missing.append(f"{source.relative_to(ROOT)}:{number}: {match.group(1)}")
    assert not missing, "citations of files that are not in the repository:\n" + "\n".join(missing)


def test_the_pattern_catches_what_it_should() -> None:
    found = [m.group(1) for m in _CITATION.finditer("see ``notes.md`` §3, docs/design/family.md and tests/x.py.")]
    assert found == ["notes.md", "docs/design/family.md", "tests/x.py"]
    assert not _CITATION.findall("VladimerKhasia/ANDI:ANDI.py, https://example.org/a.md, ANDI.py")
    assert not _exists("notes.md", ROOT / "src" / "andi" / "__init__.py")
