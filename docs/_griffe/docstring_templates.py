"""Griffe extension for the docs build: show the package's docstrings as the package means them.

The docstrings are written for ``help()`` and Sphinx-style readers: Google sections (``Args:``, ``Returns:``) with a
little reStructuredText inside. Griffe reads them statically, so this extension, run on every object, does two
things before mkdocstrings renders them. Nothing in ``src/`` changes.

1. **Attribute comments.** Module constants are documented Sphinx-style, with ``#:`` comment lines above the
   assignment. Griffe reads only string docstrings, so an attribute without one gets its ``#:`` lines.
2. **reST to Markdown.** ``.. math::`` blocks become ``$$`` blocks and ``:math:`x``` becomes ``$x$`` (rendered by
   ``pymdownx.arithmatex``); Sphinx roles (``:func:``, ``:class:``, ``:mod:``, ...) become inline code; simple
   reST tables (``====  ====`` borders) become Markdown tables; a literal block introduced by ``::`` becomes a fenced
   Python block (``Example::`` becomes a Google ``Example:`` section holding it).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|mod|data|attr|meth|exc|obj|const):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_BORDER = re.compile(r"^(\s*)(=+)((?: +=+)+)\s*$")


class DocstringTemplates(griffe.Extension):
    """Give attributes their ``#:`` comments and translate reST markup in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute:
            comment = _comment_above(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, lineno=obj.lineno, parent=obj)
        docstring = obj.docstring
        if docstring is None:
            return
        docstring.value = rest_to_markdown(docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for function in _functions(pkg):
            for parameter in function.parameters:
                value = _constant_value(function, parameter.default)
                if value is not None:
                    parameter.default = value


def _functions(obj: griffe.Object, seen: set[str] | None = None) -> list[griffe.Function]:
    """Every function and method defined in ``obj`` (aliases are skipped: their targets are visited where defined)."""
    seen = set() if seen is None else seen
    found: list[griffe.Function] = []
    for member in obj.members.values():
        if member.is_alias or member.path in seen:
            continue
        seen.add(member.path)
        if member.is_function:
            found.append(member)
        elif member.is_class or member.is_module:
            found.extend(_functions(member, seen))
    return found


def _constant_value(scope: griffe.Object, default: Any) -> str | None:
    """The literal value of a default that names a module constant (``min_dim=DEFAULT_MIN_DIM`` shows ``16``)."""
    if not isinstance(default, griffe.ExprName):
        return None
    try:
        target = scope.modules_collection[default.canonical_path]
    except Exception:  # not in the loaded packages (torch, builtins) or unresolvable
        return None
    if target.is_alias:
        try:
            target = target.final_target
        except Exception:
            return None
    value = getattr(target, "value", None) if target.is_attribute else None
    return str(value) if value is not None and _is_literal(str(value)) else None


_LITERAL = re.compile(r"^(?:-?[\d.e+-]+|True|False|None|'[^']*'|\"[^\"]*\")$")


def _is_literal(text: str) -> bool:
    return bool(_LITERAL.match(text))


_SOURCES: dict[str, list[str]] = {}


def _comment_above(obj: griffe.Object) -> str:
    """The ``#:`` comment block right above ``obj``'s assignment, without the markers (empty if none)."""
    try:
        path = str(obj.filepath)
        lineno = obj.lineno
    except Exception:  # aliases to unloaded modules, builtins
        return ""
    if not lineno or not path.endswith(".py"):
        return ""
    if path not in _SOURCES:
        try:
            with open(path, encoding="utf-8") as f:
                _SOURCES[path] = f.read().splitlines()
        except OSError:
            _SOURCES[path] = []
    lines = _SOURCES[path]
    block: list[str] = []
    i = lineno - 2  # the line above the assignment (lineno is 1-based)
    while 0 <= i < len(lines) and lines[i].strip().startswith("#:"):
        block.append(lines[i].strip()[2:].strip())
        i -= 1
    return " ".join(reversed(block))


def _short(target: str) -> str:
    """``~a.b.c`` shows ``c`` in Sphinx; we keep the full dotted name, which is what a reader can import."""
    return target.strip()


def rest_to_markdown(text: str) -> str:
    """Translate the reST constructs the package's docstrings use into Markdown that ``mkdocs --strict`` accepts."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == ".. math::":
            indent = line[: len(line) - len(line.lstrip())]
            i += 1
            body: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            inner = min((_indent(b) for b in body if b.strip()), default=0)
            out.append(f"{indent}$$")
            out.extend(f"{indent}{b[inner:]}" if b.strip() else "" for b in body)
            out.append(f"{indent}$$")
            out.append("")
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            block, j = _literal_block(lines, i + 1, _indent(line))
            if block:
                indent = line[: _indent(line)]
                title = _TITLE.match(stripped)
                if title:  # "Example::" alone: a Google "Examples:" section whose body is the code
                    section = "Examples" if title.group(1) == "Example" else title.group(1)
                    out.append(f"{indent}{section}:")
                    fence_indent = indent + "    "
                else:
                    out.append(line.rstrip()[:-1])  # "... with x::" -> "... with x:"
                    out.append("")
                    fence_indent = indent
                out.append(f"{fence_indent}```python")
                out.extend(f"{fence_indent}{b}" if b else "" for b in block)
                out.append(f"{fence_indent}```")
                out.append("")
                i = j
                continue
        border = _BORDER.match(line)
        if border:
            table, i = _table(lines, i)
            if table is not None:
                out.extend(table)
                continue
        out.append(line)
        i += 1
    result = "\n".join(out)
    result = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", result)
    result = _ROLE.sub(lambda m: f"`{_short(m.group(2))}`", result)
    return result


_TITLE = re.compile(r"^(\w+)::$")


def _literal_block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The lines of a reST literal block starting at ``lines[start]`` (after blank lines), dedented, and the index
    after it; empty when the next non-blank line is not indented deeper than ``base``."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    body: list[str] = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    if not body:
        return [], start
    inner = min(_indent(b) for b in body if b.strip())
    return [b[inner:] if b.strip() else "" for b in body], i


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _table(lines: list[str], start: int) -> tuple[list[str] | None, int]:
    """A simple reST table starting at ``lines[start]`` (a border) as Markdown rows, and the index after it."""
    border = lines[start]
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    borders = 1
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if _BORDER.match(line):
            borders += 1
            i += 1
            if borders == 3 or (borders == 2 and (i >= len(lines) or not lines[i].strip())):
                break
            continue
        if not line.strip():
            return None, start  # not a simple table after all
        cells = []
        for k, (a, _end) in enumerate(spans):
            end = spans[k + 1][0] if k + 1 < len(spans) else len(line)
            cells.append(line[a:end].strip())
        if cells[0] == "" and rows:  # continuation line: append to the previous row
            rows[-1] = [f"{p} {c}".strip() for p, c in zip(rows[-1], cells)]
        else:
            rows.append(cells)
        i += 1
    if not rows:
        return None, start
    indent = border[: _indent(border)]
    if borders != 3:  # Markdown has no header-less table: an empty header row would show; give the table one
        raise ValueError(f"a reST table without a header row: {rows[0]}; add a header row and a border under it")
    header, body = rows[0], rows[1:]
    md = [indent + "| " + " | ".join(header) + " |", indent + "|" + "---|" * len(spans)]
    md += [indent + "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return [*md, ""], i
