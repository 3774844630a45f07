"""One schema type as KnowCoder class code, both ways, never executing code.

`render_class` writes a type in the released code style, `read_class` reads one class definition back from
its syntax tree, `read_class_code` reads a user's schema given as class code (`class Attack(Event):` with a
docstring and `def __init__(self, trigger: str, attacker: List[Person | Organization]): ...`). Unlike a
library file (one kind per file, pyfile.py) such code mixes kinds: a class's kind comes from its bases
(Entity / Relation / Event, or a class defined above or in the served library). Anything but class
definitions (imports and docstrings aside) is refused with its line number.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from knowcoder_ray.schema.types import BASE_CLASS, Role, SchemaLibrary, SchemaType, mark_keyword_names, unmark


def _base_class(name: str, kind: str, signature: str, *body: str) -> str:
    """A base class as the released prompts define it."""
    head = [f"class {name}:", '\t"""', f"\tThe base class for all {kind}.", '\t"""']
    return "\n".join([*head, f"\tdef __init__(self, {signature}):", *(f"\t\t{line}" for line in body)])


ENTITY_BASE = _base_class("Entity", "entities", "name: str", "self.name = name")
RELATION_BASE = _base_class("Relation", "relations", "head_entity: Entity, tail_entity: Entity",
                            "self.head_entity = head_entity", "self.tail_entity = tail_entity")
EVENT_BASE_ED = _base_class("Event", "events", "trigger: str, arg_names, *args", "self.trigger = trigger",
                            "self.arguments = {}", "for arg_name, arg_values in zip(arg_names, args):",
                            "\tself.arguments[arg_name] = arg_values")
EVENT_BASE_EAE = _base_class("Event", "events", "trigger: str", "self.trigger = trigger")


# ---- writing -----------------------------------------------------------------------------------------

def quote(s: str) -> str:
    """A double-quoted Python string literal that `ast` reads back to exactly `s`."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return '"' + out.replace("\0", "\\x00") + '"'  # NUL escaped too: `ast` reads no source that holds one


def _type_hint(types: Sequence[str]) -> str:
    return " | ".join(types) if types else "Entity"


def _examples(t: SchemaType) -> str:
    """Joined by ", "; the released event classes end every example with ", "."""
    return "".join(f"{e}, " for e in t.examples) if t.kind == "event" else ", ".join(t.examples)


def render_class(t: SchemaType, task: str | None = None, typed: bool = True) -> str:
    """Class definition of one type in KnowCoder's code style. Events render per task: the ED form
    (arg_names list) or the EAE form (typed role parameters with the trigger examples as a comment).
    typed=False writes relation heads and tails as `Entity` (the released RE prompts)."""
    eae = t.kind == "event" and task == "eae"
    if t.kind == "entity":
        body = ["\tpass"]
    elif t.kind == "relation":
        body = [f"\tdef __init__(self, head_entity: {_type_hint(t.head_types if typed else ())}, "
                f"tail_entity: {_type_hint(t.tail_types if typed else ())}):",
                "\t\tsuper().__init__(head_entity = head_entity, tail_entity = tail_entity)"]
    elif eae:
        params = ["\t\tself,", f"\t\ttrigger: str, # Examples: {_examples(t)}"]
        params += [f"\t\t{r.name}: List[ {_type_hint(r.entity_types)} ]," for r in t.roles]
        params[-1] = params[-1].rstrip(",")
        body = ["\tdef __init__(", *params, "\t):", "\t\tsuper().__init__(trigger = trigger)"]
        body += [f"\t\tself.{r.name} = {r.name}" for r in t.roles]
    else:
        body = ["\tdef __init__(self, trigger: str, *args):",
                f"\t\targ_names = [{', '.join(quote(r.name) for r in t.roles)}]",
                "\t\tsuper().__init__(trigger = trigger, arg_names = arg_names, *args)"]
    head = f"class {t.name}({', '.join(t.parents) or BASE_CLASS[t.kind]}):"
    examples = [] if eae else [f"\tExamples: {_examples(t)}"]
    return "\n".join([head, '\t"""', f"\tDescription: {t.description}", *examples, '\t"""', *body])


# ---- reading one class -------------------------------------------------------------------------------

_RELATION_EXAMPLES = re.compile(r"(?<=\)),\s*(?=\()")
_SOURCE_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def source_lines(source: str) -> list[str]:
    """The lines of Python source as `ast` numbers them, line ends kept: broken at \\n, \\r\\n and \\r only
    (str.splitlines also breaks at form feeds and Unicode line separators, which a description may hold)."""
    return _SOURCE_LINE.findall(source)


def read_class(node: ast.ClassDef, kind: str, lines: list[str]) -> SchemaType:
    """One class definition -> SchemaType (name, parents, description, examples, constraints, roles);
    `lines`: the source's `source_lines`."""
    parents = tuple(n for n in map(_name, node.bases) if n and n not in BASE_CLASS.values())
    fields = _docstring_fields(ast.get_docstring(node, clean=False) or "")
    examples_text = fields.get("examples", "")
    init = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
    head = tail = roles = ()
    if init is not None and kind == "relation":
        hints = {a.arg: _hint_types(a.annotation) for a in init.args.args}
        head, tail = hints.get("head_entity", ()), hints.get("tail_entity", ())
    elif init is not None and kind == "event":
        roles, trigger_examples = _event_roles(init, lines)
        examples_text = examples_text or trigger_examples
    return SchemaType(node.name, kind, parents, None, "", fields.get("description", ""),
                      _split_examples(examples_text, kind), head, tail, roles)


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # Entities.Human
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "Human" (string annotation)
        return node.value
    return None


MAX_HINT_TYPES = 10_000  # a longer `A | B | ...` hint is cut here


def _hint_types(node: ast.expr | None) -> tuple[str, ...]:
    """`Human | Organization`, `List[ Human ]`, `Union[A, B]`, `"Human"` -> the entity type names. Walked
    with an explicit stack (left to right), so a hint of thousands of `|` terms needs no recursion."""
    out: list[str] = []
    stack = [node] if node is not None else []
    while stack and len(out) < MAX_HINT_TYPES:
        n = stack.pop()
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
            stack += [n.right, n.left]
        elif isinstance(n, ast.Subscript):
            stack += reversed(n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice])
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and not n.value.isidentifier():
            try:  # a forward reference: "Place | Person"
                stack.append(ast.parse(n.value.strip(), mode="eval").body)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                out.append(n.value)
        else:
            name = _name(n)
            if name not in (None, "Entity", "str"):
                out.append(name)
    return tuple(out)


def _event_roles(init: ast.FunctionDef, lines: list[str]) -> tuple[tuple[Role, ...], str]:
    """Roles of the ED form (`arg_names = [...]`) or the EAE form (typed parameters, trigger examples as a
    comment on the `trigger` parameter's line)."""
    for stmt in init.body:
        if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "arg_names" for t in stmt.targets)
                and isinstance(stmt.value, (ast.List, ast.Tuple))):
            return tuple(Role(e.value) for e in stmt.value.elts
                         if isinstance(e, ast.Constant) and isinstance(e.value, str)), ""
    roles, examples = [], ""
    for a in (*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs):
        if a.arg == "trigger":
            line = lines[a.lineno - 1] if 0 < a.lineno <= len(lines) else ""
            examples = line.partition("# Examples:")[2]
        elif a.arg != "self":
            roles.append(Role(unmark(a.arg), _hint_types(a.annotation)))
    return tuple(roles), examples


def _docstring_fields(doc: str) -> dict[str, str]:
    """'Description: ...' / 'Examples: ...' lines (continuation lines join the field above)."""
    fields: dict[str, str] = {}
    current = None
    for line in doc.split("\n"):
        s = line.strip()
        key = next((k for k in ("Description", "Examples") if s.startswith(k + ":")), None)
        if key:
            current = key.lower()
            fields[current] = s[len(key) + 1:].strip()
        elif s and current:
            fields[current] = (fields[current] + " " + s).strip()
    return fields


def _split_examples(text: str, kind: str) -> tuple[str, ...]:
    """Entity examples are joined by ", ", event examples each end with ", ", relation examples are
    "(head, tail)" pairs joined by ", "."""
    text = text.strip()
    if kind == "relation" and text.startswith("(") and text.endswith(")"):
        return tuple(_RELATION_EXAMPLES.split(text))
    if kind == "event":
        text = text.rstrip(",").rstrip()
    return tuple(e.strip() for e in text.split(", ") if e.strip())


# ---- reading a user's class code ----------------------------------------------------------------------

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
        try:
            tree = ast.parse(source)
        except SyntaxError:  # maybe Python keywords as role names, as released: `from: List[ Entity ]`
            tree = ast.parse(mark_keyword_names(source))
    except SyntaxError as e:
        raise ClassCodeError(f"syntax error: {e.msg}", e.lineno) from None
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        raise ClassCodeError(f"unreadable code: {type(e).__name__}") from None
    lines = source_lines(source)
    kinds: dict[str, str] = {}
    out: list[SchemaType] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)) or _is_constant(node):
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
        try:
            t = read_class(node, kind, lines)
        except (ValueError, TypeError) as e:  # SchemaError: a bad name or role
            raise ClassCodeError(f"class {node.name}: {e}", node.lineno) from None
        roles = [r.name for r in t.roles]
        if twice := next((r for i, r in enumerate(roles) if r in roles[:i]), None):
            raise ClassCodeError(f"class {node.name}: role {twice!r} twice", node.lineno)
        kinds[t.name] = t.kind
        out.append(t)
    if not out:
        raise ClassCodeError("the code defines no Entity, Relation or Event class")
    return out


def _check_body(node: ast.ClassDef) -> None:
    """A schema class holds a docstring, `pass`/`...` and at most an `__init__` giving the signature:
    any other statement (assignments, calls, other methods, nested classes) is refused with its line."""
    for stmt in node.body:
        init = isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__" and not stmt.decorator_list
        if init or isinstance(stmt, ast.Pass) or _is_constant(stmt, (str, type(Ellipsis))):
            continue
        what = f"method {stmt.name}" if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) else type(stmt).__name__
        raise ClassCodeError(f"class {node.name}: its body may hold only a docstring, pass and __init__, "
                             f"found {what}", stmt.lineno)


def check_references(user: list[SchemaType], merged: SchemaLibrary) -> None:
    """After merging with the served library: the user's classes must not inherit in a cycle (a class
    redefining a library type's ancestor can close one) and every head/tail/role type must exist (`Entity`
    and `str` are never among them: `read_class` leaves them out)."""
    for t in user:
        for p in t.parents:
            if p == t.name or t.name in merged.ancestors(p):
                raise ClassCodeError(f"class {t.name}: inheritance cycle through {p!r}")
        for ref in t.references():
            if ref not in merged:
                raise ClassCodeError(f"class {t.name}: type {ref!r} in its signature is neither defined in "
                                     "schema_code nor in the served library")
            if merged[ref].kind != "entity":
                raise ClassCodeError(f"class {t.name}: {ref!r} in its signature is a {merged[ref].kind}, not an entity")


def _is_constant(node: ast.stmt, types: type | tuple[type, ...] = str) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, types)


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
