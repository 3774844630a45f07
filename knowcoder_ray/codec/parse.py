"""Parsing, the backward direction of the codec: model output text -> mentions.

The text is never executed. A small scanner splits the `results = [...]` list into its top-level items
(tracking strings and bracket depth), and each item is read with `ast.parse` and walked: only calls of
known class names with string, list and keyword arguments are accepted. So a truncated output yields the
items completed before the cut, one malformed item does not lose its neighbours, and an unknown class
name is reported as a hallucinated type.
"""
from __future__ import annotations

import ast
import keyword
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention

MAX_DEPTH = 32          # deeper items are rejected before ast sees them
MAX_ITEM_CHARS = 20_000  # a single item longer than this is rejected
_RESULTS = re.compile(r"results\s*=\s*\[")
_KEYWORD_ARG = re.compile(r"\b(" + "|".join(keyword.kwlist) + r")(\s*=)(?!=)")
_OPEN, _CLOSE = "([{", ")]}"


@dataclass
class ParseResult:
    entities: list[EntityMention] = field(default_factory=list)
    relations: list[RelationMention] = field(default_factory=list)
    events: list[EventMention] = field(default_factory=list)
    hallucinated: list[str] = field(default_factory=list)  # class names not in the schema
    errors: list[str] = field(default_factory=list)         # items that could not be read
    truncated: bool = False                                  # the list was cut before its closing bracket

    def to_record(self, id: str, text: str, source: str = "") -> Record:
        return Record(id, text, list(self.entities), list(self.relations), list(self.events), source)


def split_items(text: str) -> tuple[list[str], bool, list[str]]:
    """Top-level items of the first `results = [...]` list: (items, truncated, errors)."""
    m = _RESULTS.search(text)
    if m is None:
        return [], False, ([] if not text.strip() else ["no 'results = [' list in output"])
    items, errors, buf = [], [], []
    depth, quote, escaped, too_deep = 0, "", False, False
    for ch in text[m.end():]:
        if quote:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote or ch == "\n":  # a newline ends a broken single-line string
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in _OPEN:
            depth += 1
            too_deep = too_deep or depth > MAX_DEPTH
        elif ch in _CLOSE:
            if depth == 0:
                if ch == "]":
                    _flush(buf, items, errors, too_deep)
                    return items, False, errors
                continue  # a stray closer at top level: ignore it
            depth -= 1
        elif ch == "," and depth == 0:
            _flush(buf, items, errors, too_deep)
            buf, too_deep = [], False
            continue
        buf.append(ch)
    # No closing bracket: the output was cut. The pending item counts only if it is complete.
    if depth == 0 and not quote and "".join(buf).rstrip().endswith(")"):
        _flush(buf, items, errors, too_deep)
    return items, True, errors


def _flush(buf: list[str], items: list[str], errors: list[str], too_deep: bool) -> None:
    item = "".join(buf).strip()
    if not item:
        return
    if too_deep:
        errors.append(f"item nested deeper than {MAX_DEPTH}: {item[:60]!r}")
    elif len(item) > MAX_ITEM_CHARS:
        errors.append(f"item longer than {MAX_ITEM_CHARS} characters")
    else:
        items.append(item)


def _read_item(item: str) -> ast.expr:
    """The item as an expression tree (parsed only). Python keywords used as role names (`from = [...]`,
    which the released event schema has) are read as `from_`."""
    with warnings.catch_warnings():  # invalid escapes in model text are not our warnings to show
        warnings.simplefilter("ignore")
        try:
            return ast.parse(item, mode="eval").body
        except SyntaxError:
            return ast.parse(_KEYWORD_ARG.sub(r"\1_\2", item), mode="eval").body


class _Bad(Exception):
    pass


def _string(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise _Bad(f"expected a string literal, got {type(node).__name__}")


def _call(node: ast.AST) -> tuple[str, list[ast.expr], dict[str, ast.expr]]:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise _Bad(f"expected a class call like Name(...), got {type(node).__name__}")
    kwargs = {}
    for k in node.keywords:
        if k.arg is None:
            raise _Bad("**kwargs are not allowed")
        kwargs[k.arg] = k.value
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise _Bad("*args are not allowed")
    return node.func.id, list(node.args), kwargs


def _one(args: list[ast.expr], kwargs: dict[str, ast.expr], names: tuple[str, ...], what: str) -> ast.expr:
    """The single value given positionally or under one of `names`."""
    values = args + [kwargs[n] for n in names if n in kwargs]
    if len(values) != 1:
        raise _Bad(f"{what}: expected one value, got {len(values)}")
    return values[0]


def _mention(node: ast.AST, entity_types: frozenset[str] | None) -> EntityMention:
    """`Entity("x")`, `Person("x")`, `Person(name="x")` or a bare "x"."""
    if isinstance(node, ast.Constant):
        return EntityMention(_string(node))
    name, args, kwargs = _call(node)
    if name != "Entity" and entity_types is not None and name not in entity_types:
        raise _Bad(f"unknown entity type {name!r}")
    return EntityMention(_string(_one(args, kwargs, ("name",), name)), name)


class Parser:
    """Reads outputs of one task against a set of known class names.

    known: class names of the task's kind; entity_types: entity classes allowed inside relations and
    arguments (None: any); roles: event type -> allowed role names (None: any).
    """

    def __init__(self, task: str, known: Iterable[str], entity_types: Iterable[str] | None = None,
                 roles: dict[str, Iterable[str]] | None = None) -> None:
        from knowcoder_ray.codec.render import TASKS
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        self.task = task
        self.known = frozenset(known)
        self.entity_types = None if entity_types is None else frozenset(entity_types)
        self.roles = None if roles is None else {k: frozenset(v) for k, v in roles.items()}

    @classmethod
    def for_types(cls, task: str, types, library=None) -> "Parser":
        """A parser for the classes a prompt showed (the same list given to `render_prompt`)."""
        types = list(types)
        entity_types = None
        if library is not None:
            entity_types = library.names("entity")
        return cls(task, [t.name for t in types], entity_types,
                   {t.name: [r.name for r in t.roles] for t in types} if task == "eae" else None)

    def parse(self, text: str) -> ParseResult:
        """Never raises on any input text."""
        result = ParseResult()
        if not isinstance(text, str):
            result.errors.append(f"output is {type(text).__name__}, not text")
            return result
        items, result.truncated, result.errors = split_items(text)
        for item in items:
            try:
                self._item(_read_item(item), result)
            except _Bad as e:
                result.errors.append(f"{e}: {item[:80]!r}")
            except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
                result.errors.append(f"unreadable item ({type(e).__name__}): {item[:80]!r}")
        return result

    def _item(self, node: ast.expr, out: ParseResult) -> None:
        name, args, kwargs = _call(node)
        if name not in self.known:
            out.hallucinated.append(name)
            return
        if self.task == "ner":
            out.entities.append(EntityMention(_string(_one(args, kwargs, ("name",), name)), name))
        elif self.task == "re":
            if len(args) + len(kwargs) != 2:
                raise _Bad(f"{name}: a relation takes a head and a tail")
            head = args[0] if args else kwargs.get("head_entity")
            tail = args[1] if len(args) > 1 else kwargs.get("tail_entity")
            if head is None or tail is None:
                raise _Bad(f"{name}: missing head_entity or tail_entity")
            out.relations.append(RelationMention(name, _mention(head, self.entity_types),
                                                 _mention(tail, self.entity_types)))
        elif self.task == "ed":
            out.events.append(EventMention(name, _string(_one(args, kwargs, ("trigger",), name))))
        else:
            out.events.append(self._event(name, args, kwargs))

    def _event(self, name: str, args: list[ast.expr], kwargs: dict[str, ast.expr]) -> EventMention:
        trigger = _string(_one(args[:1], {k: v for k, v in kwargs.items() if k == "trigger"}, ("trigger",), name))
        if len(args) > 1:
            raise _Bad(f"{name}: arguments must be given by role name")
        allowed = None if self.roles is None else self.roles.get(name, frozenset())
        arguments = []
        for role, value in kwargs.items():
            if role == "trigger":
                continue
            if allowed is not None and role not in allowed:
                raise _Bad(f"{name}: unknown role {role!r}")
            values = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            for v in values:
                m = _mention(v, self.entity_types)
                arguments.append(Argument(role, m.text, m.type))
        return EventMention(name, trigger, tuple(arguments))
