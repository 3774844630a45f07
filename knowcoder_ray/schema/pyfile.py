"""The library as code: `Entities.py`, `Relations.py`, `Events.py` in the layout of the released
KnowCoder-Schema-Library (schema_pys/), and their reader, which walks the syntax tree (never imports).

Each file holds its base classes, then one class per type (`classcode.render_class`, events in the ED form
with their `arg_names`), parents first. What the class code cannot show (Wikidata ids, labels, the entity
types of event roles, examples holding the ", " separator) goes into one literal dict at the end,
`SCHEMA_METADATA`, keyed by class name, with only the fields that reading the class alone gets wrong: so
Parquet -> .py -> library is exact. The released files lack it and read as they are: Python keywords as
role names (`from: List[ Entity ]`, not valid Python), an entity class named `Event`, and a broken class,
which is reported (`ClassProblem`) and skipped while the others load.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pydantic import ValidationError

from knowcoder_ray.schema.classcode import (
    ENTITY_BASE, EVENT_BASE_ED, RELATION_BASE, read_class, render_class, source_lines,
)
from knowcoder_ray.schema.types import (
    BASE_CLASS, SchemaError, SchemaLibrary, SchemaType, depth_first, mark_keyword_names,
)
from knowcoder_ray.settings import Section, error_summary
from knowcoder_ray.storage import exists, join, makedirs, read_bytes, write_text

FILES = {"entity": "Entities.py", "relation": "Relations.py", "event": "Events.py"}
HEADERS = {"entity": [ENTITY_BASE], "relation": ["from Entities import *", RELATION_BASE], "event": [EVENT_BASE_ED]}
METADATA = "SCHEMA_METADATA"


# ---- writing -----------------------------------------------------------------------------------------

def render_file(kind: str, types: Iterable[SchemaType]) -> str:
    by_name = {t.name: t for t in types if t.kind == kind}
    # parents before children (input order otherwise), so the file could be imported top to bottom
    order, _ = depth_first(by_name, lambda n: [p for p in by_name[n].parents if p in by_name])
    blocks = list(HEADERS[kind])
    metadata = {}
    for t in map(by_name.get, order):
        # a backslash that is no Python escape (`C:\xampp`), a NUL: rendered again escaped
        for candidate in (t, _escaped(t)):
            code = render_class(candidate)
            try:
                seen = read_class(ast.parse(code).body[0], kind, source_lines(code)).to_row()
                break
            except (SyntaxError, ValueError) as e:
                error = e
        else:
            raise SchemaError(f"type {t.name!r} does not render to valid Python ({getattr(error, 'msg', error)}); "
                              "check its description and examples for triple quotes")
        if extra := {k: v for k, v in t.to_row().items() if v != seen[k]}:
            metadata[t.name] = extra
        blocks.append(code)
    if metadata:
        blocks.append("# What the classes above do not show (Wikidata ids, labels, role entity types...), a plain\n"
                      "# literal for readers of this file; the classes are usable without it.\n"
                      f"{METADATA} = {{\n" + "".join(f"\t{k!r}: {v!r},\n" for k, v in metadata.items()) + "}")
    return "\n\n".join(blocks) + "\n"


def _escaped(t: SchemaType) -> SchemaType:
    def escape(text: str) -> str:  # backslashes doubled, other characters Python refuses in a file escaped
        text = text.replace("\\", "\\\\")
        return "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode() for c in text)

    return replace(t, description=escape(t.description), examples=tuple(map(escape, t.examples)))


def write_pyfiles(library: SchemaLibrary, out_dir: str) -> list[str]:
    """Entities.py, Relations.py and Events.py under `out_dir` (path or URI); returns the files written."""
    makedirs(out_dir)
    for kind, name in FILES.items():
        write_text(join(out_dir, name), render_file(kind, library))
    return [join(out_dir, name) for name in FILES.values()]


# ---- reading -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassProblem:
    """A class the reader skipped, and why."""

    file: str
    name: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: class {self.name}: {self.reason}"


class _Warn(list):
    """The problems list of a caller that passed none: each problem is also a warning."""

    def append(self, p: ClassProblem) -> None:
        warnings.warn(f"skipped {p}", stacklevel=2)
        super().append(p)


def read_pyfiles(src_dir: str, problems: list[ClassProblem] | None = None) -> SchemaLibrary:
    """A library from the Entities.py / Relations.py / Events.py found under `src_dir` (at least one).
    A class that cannot be read is skipped and appended to `problems` (None: a warning names each)."""
    problems = _Warn() if problems is None else problems
    present = [(kind, join(src_dir, name)) for kind, name in FILES.items() if exists(join(src_dir, name))]
    if not present:
        raise FileNotFoundError(f"no {', '.join(FILES.values())} under {src_dir}")
    types: dict[str, SchemaType] = {}
    for kind, uri in present:
        for t in read_pyfile(_decode(read_bytes(uri)), kind, uri, problems):
            if types.setdefault(t.name, t) != t:
                problems.append(ClassProblem(uri, t.name, 0, f"defined again (first as {types[t.name].kind}); "
                                                              "the first definition is kept"))
    return SchemaLibrary(types.values())


def _decode(data: bytes) -> str:
    """The text of a schema file decoded as Python would (UTF-8, or a PEP 263 coding declaration); a byte that
    does not decode stays in the text (as a lone surrogate): its class is reported, the rest load."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding, errors="surrogateescape")
    except (SyntaxError, LookupError):  # an unknown encoding, or one that is no text encoding
        return data.decode("utf-8", errors="surrogateescape")


_TOP_LEVEL = re.compile(r"^(class\s|from\s|import\s|[A-Za-z_]\w*\s*=)")
_CLASS_NAME = re.compile(r"class\s+(\w+)")


def _chunks(source: str) -> list[tuple[int, str]]:
    """(first line index, text) of each top-level statement group, so one broken class can be parsed
    apart from the others."""
    lines = source_lines(source)
    starts = [0] + [i for i, line in enumerate(lines) if i and _TOP_LEVEL.match(line)]
    return [(a, "".join(lines[a:b])) for a, b in zip(starts, starts[1:] + [len(lines)])]


MAX_JOIN = 8  # chunks one class may have been split into


def _unreadable(e: Exception, offset: int) -> str:
    if isinstance(e, SyntaxError):  # its line numbers counted in the file, not in the chunk
        msg = re.sub(r"(?<=detected at line )\d+", lambda m: str(offset + int(m[0])), e.msg)
        return f"not valid Python at line {offset + (e.lineno or 1)}: {msg}"
    if isinstance(e, UnicodeError):
        return "holds bytes that are not UTF-8"
    return f"too deeply nested for Python's parser ({type(e).__name__})"


def read_pyfile(source: str, kind: str, filename: str = "<schema>",
                problems: list[ClassProblem] | None = None) -> list[SchemaType]:
    """The types defined in one schema file of `kind` (entity, relation, event), read with `ast`, never
    executed. Python keywords as role names (`from: List[ Entity ]`, `self.from = from`) are read. A class
    that cannot be read is skipped and reported in `problems` (None: a warning); the others load."""
    problems = _Warn() if problems is None else problems
    source = source.removeprefix("\ufeff")  # a byte order mark, which Python skips too
    unreadable = (SyntaxError, UnicodeError, RecursionError, MemoryError)  # UnicodeError: a lone surrogate
    try:
        parts = [(0, source, ast.parse(mark_keyword_names(source), filename=filename))]
    except unreadable:
        parts, chunks, i = [], _chunks(source), 0
        while i < len(chunks):
            offset, chunk = chunks[i]
            # a chunk that does not read may be a class whose docstring has a line at column 0 that looks like
            # a statement ("from Germany."): then it reads joined with the chunks that follow
            for j in range(i + 1, min(i + 1 + MAX_JOIN, len(chunks)) + 1):
                text = "".join(c for _, c in chunks[i:j])
                try:
                    parts.append((offset, text, ast.parse(mark_keyword_names(text), filename=filename)))
                    i = j
                    break
                except unreadable as e:
                    if j == i + 1:
                        error = e  # the chunk's own error is the one reported
            else:
                m = _CLASS_NAME.match(chunk)
                problems.append(ClassProblem(filename, m.group(1) if m else "(top level)", offset + 1,
                                             _unreadable(error, offset)))
                i += 1
    metadata: dict = {}
    for offset, _, tree in parts:
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == METADATA for t in node.targets):
                try:
                    metadata = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, RecursionError):
                    problems.append(ClassProblem(filename, METADATA, offset + node.lineno, "not a literal; ignored"))
    out: dict[str, tuple[int, SchemaType]] = {}  # name -> (first line, type)
    for offset, chunk, tree in parts:
        lines = source_lines(chunk)
        for node in tree.body:
            if not isinstance(node, ast.ClassDef) or (node.name in BASE_CLASS.values() and not node.bases):
                continue  # the base classes of the file (`class Event(Entity)` is a type, `class Event:` is not)
            try:
                t = read_class(node, kind, lines)
                extra = metadata.get(node.name) if isinstance(metadata, dict) else None
                if extra is not None:
                    t = SchemaType.from_row(_with_metadata(t.to_row(), extra))
            except (ValueError, TypeError, KeyError) as e:  # SchemaError: a bad name, role or metadata
                problems.append(ClassProblem(filename, node.name, offset + node.lineno, str(e)))
                continue
            first, kept = out.setdefault(t.name, (offset + node.lineno, t))
            if kept != t:  # an identical copy is dropped silently
                problems.append(ClassProblem(filename, t.name, offset + node.lineno,
                                             f"defined again (first at line {first}); the first is kept"))
    return [t for _, t in out.values()]


class MetadataEntry(Section):
    """The fields `render_file` writes to SCHEMA_METADATA, checked when read: a hand-edited entry may try to
    rename the class, or hold a number where text belongs."""

    wikidata_id: str | None = None
    label: str = ""
    description: str = ""
    parents: list[str] = []
    examples: list[str] = []
    head_types: list[str] = []
    tail_types: list[str] = []
    role_names: list[str] = []
    role_types: list[list[str]] = []


def _with_metadata(row: dict, extra: object) -> dict:
    """The class's row with its SCHEMA_METADATA entry."""
    try:
        extra = MetadataEntry.model_validate(extra).model_dump(exclude_unset=True)
    except ValidationError as e:
        raise ValueError(f"{METADATA}: {error_summary(e.errors(), sep='; ')}") from None
    row = {**row, **extra}
    if len(row["role_names"]) != len(row["role_types"]):
        raise ValueError(f"{METADATA}: {len(row['role_names'])} role_names but {len(row['role_types'])} role_types")
    return row
