"""Reading a user's schema given as KnowCoder-style class code, with `ast` only (never exec/import).

    class Person(Entity):
        \"\"\"
        Description: A human being.
        Examples: Ada Lovelace, Alan Turing
        \"\"\"
        pass

    class WorkFor(Relation):
        def __init__(self, head_entity: Person, tail_entity: Organization): ...

    class Attack(Event):
        def __init__(self, trigger: str, attacker: List[Person | Organization], target: List[Entity]): ...

Unlike a library file (one kind per file, knowcoder_ray.schema.pyfile), a request's code mixes kinds: each
class's kind comes from its base classes (Entity / Relation / Event, or a class defined earlier in the
code or in the served library); the class itself is read by the schema package's `read_class`. Anything
that is not a class definition (imports and docstrings aside) is refused with its line number.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from knowcoder_ray.schema.pyfile import read_class
from knowcoder_ray.schema.types import BASE_CLASS, SchemaError, SchemaLibrary, SchemaType

_KIND_OF_BASE = {v: k for k, v in BASE_CLASS.items()}


@dataclass
class ClassCodeError(ValueError):
    """The code is not a readable schema; `line` is 1-based (None when not tied to a line)."""

    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def read_class_code(source: str, library: SchemaLibrary | None = None) -> list[SchemaType]:
    """The schema types the code defines, in order. Base classes pasted by the user are skipped."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ClassCodeError(f"syntax error: {e.msg}", e.lineno) from None
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        raise ClassCodeError(f"unreadable code: {type(e).__name__}") from None
    lines = source.splitlines()
    kinds: dict[str, str] = {}
    out: list[SchemaType] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)) or _is_docstring(node):
            continue
        if not isinstance(node, ast.ClassDef):
            raise ClassCodeError(f"only class definitions are allowed, found {type(node).__name__}", node.lineno)
        if node.name in _KIND_OF_BASE:
            continue
        if node.name in kinds:
            raise ClassCodeError(f"class {node.name} is defined twice", node.lineno)
        if not node.name[:1].isupper():
            raise ClassCodeError(f"class name {node.name!r} must start with an uppercase letter (CamelCase, "
                                 "like the library's types)", node.lineno)
        _check_body(node)
        kind = _kind(node, kinds, library)
        try:  # the schema package's reader of one KnowCoder class (docstring fields, hints, roles)
            t = read_class(node, kind, lines)
        except (SchemaError, ValueError, TypeError) as e:
            raise ClassCodeError(f"class {node.name}: {e}", node.lineno) from None
        except RecursionError:  # e.g. a `|` chain of thousands of types in one hint
            raise ClassCodeError(f"class {node.name}: a type hint is nested too deeply to read", node.lineno) from None
        kinds[t.name] = t.kind
        out.append(t)
    if not out:
        raise ClassCodeError("the code defines no Entity, Relation or Event class")
    return out


def _check_body(node: ast.ClassDef) -> None:
    """A schema class holds a docstring, `pass`/`...` and at most an `__init__` giving the signature:
    any other statement (assignments, calls, other methods, nested classes) is refused with its line."""
    for stmt in node.body:
        if isinstance(stmt, ast.Pass) or _is_docstring(stmt) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis):
            continue
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__" and not stmt.decorator_list:
            continue
        what = f"method {stmt.name}" if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) else type(stmt).__name__
        raise ClassCodeError(f"class {node.name}: its body may hold only a docstring, pass and __init__, "
                             f"found {what}", stmt.lineno)


def check_references(user: list[SchemaType], merged: SchemaLibrary) -> None:
    """After merging with the served library: the user's classes must not inherit in a cycle (a class
    redefining a library type's ancestor can close one) and every head/tail/role type must exist."""
    for t in user:
        for p in t.parents:
            if p == t.name or t.name in merged.ancestors(p):
                raise ClassCodeError(f"class {t.name}: inheritance cycle through {p!r}")
        for ref in (*t.head_types, *t.tail_types, *(e for r in t.roles for e in r.entity_types)):
            if ref not in ("Entity", "str") and ref not in merged:
                raise ClassCodeError(f"class {t.name}: type {ref!r} in its signature is neither defined in "
                                     "schema_code nor in the served library")
            if ref in merged and merged[ref].kind != "entity":
                raise ClassCodeError(f"class {t.name}: {ref!r} in its signature is a {merged[ref].kind}, not an entity")


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _kind(node: ast.ClassDef, kinds: dict[str, str], library: SchemaLibrary | None) -> str:
    """entity / relation / event, from the base classes (earlier classes of the code or the library)."""
    if node.decorator_list or node.keywords:
        raise ClassCodeError(f"class {node.name}: decorators and class keywords are not allowed", node.lineno)
    found = set()
    for base in node.bases:
        if not isinstance(base, ast.Name):
            raise ClassCodeError(f"class {node.name}: a base class must be a plain name", base.lineno)
        kind = (_KIND_OF_BASE.get(base.id) or kinds.get(base.id)
                or (library[base.id].kind if library is not None and base.id in library else None))
        if kind is None:
            raise ClassCodeError(f"class {node.name}: unknown base class {base.id!r} (define it above, or use "
                                 "Entity, Relation or Event)", base.lineno)
        found.add(kind)
    if len(found) != 1:
        what = "no Entity, Relation or Event ancestor" if not found else f"bases of mixed kinds {sorted(found)}"
        raise ClassCodeError(f"class {node.name}: {what}", node.lineno)
    return found.pop()
