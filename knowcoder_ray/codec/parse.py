"""Parsing, the backward direction of the codec: model output text -> mentions.

The text is never executed. A small scanner splits the `results = [...]` list into its top-level items
(tracking strings, comments and bracket depth), and each item is read with `ast.parse` and walked: only
calls of class names with string, list and keyword arguments are accepted. So one malformed item does not
lose its neighbours.

It reads at least what the released KnowCoder evaluation's regular expressions read, as predictions:
class names outside the prompt (reported in `hallucinated`, kept as mentions so the metrics count them),
class names in another case or spelling of a known one (`person`, `Restaurant_Name`: mapped to it),
relation heads of any entity class, event arguments under unknown roles (kept, listed in `unknown_roles`),
events without a trigger (trigger ""), an output cut before its final brackets (closed for it), calls after
the list's `]` up to the stop quote, comment lines, and `Person(Entity("Ann"))` (the inner call, as the
official reader does). Beyond those it reads single quotes, keyword arguments in any order, parentheses
inside spans, escapes, and Python keywords as role names (`from = [...]`).
"""
from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention
from knowcoder_ray.schema.types import mark_keyword_names, norm_name, unmark

MAX_DEPTH = 32          # deeper items are rejected before ast sees them
MAX_ITEM_CHARS = 20_000  # a single item longer than this is rejected
_RESULTS = re.compile(r"results\s*=\s*\[")
_STOP = '"""'
_OPEN, _CLOSE = "([{", ")]}"
_PAIR = dict(zip(_OPEN, _CLOSE))


@dataclass
class ParseResult:
    entities: list[EntityMention] = field(default_factory=list)
    relations: list[RelationMention] = field(default_factory=list)
    events: list[EventMention] = field(default_factory=list)
    hallucinated: list[str] = field(default_factory=list)   # class names not in the schema (still read)
    unknown_roles: list[str] = field(default_factory=list)  # "Event.role" for roles the class lacks (still read)
    errors: list[str] = field(default_factory=list)         # items that could not be read
    truncated: bool = False                                  # the list was cut before its closing bracket

    def to_record(self, id: str, text: str, source: str = "") -> Record:
        return Record(id, text, list(self.entities), list(self.relations), list(self.events), source)


class _Scan:
    """State of the item scanner: the current item's characters and open brackets."""

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.stack: list[str] = []
        self.quote = ""
        self.escaped = False
        self.comment = False
        self.too_deep = False

    def step(self, ch: str) -> str | None:
        """Feed one character; returns "item" at a top-level comma, "end" at the list's `]`, else None."""
        if self.comment:
            if ch == "\n":
                self.comment = False
                self.buf.append(ch)
            return None
        if self.quote:
            self.buf.append(ch)
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == self.quote or ch == "\n":  # a newline ends a broken single-line string
                self.quote = ""
            return None
        if ch == "#":
            self.comment = True
            return None
        if ch in "\"'":
            self.quote = ch
        elif ch in _OPEN:
            self.stack.append(ch)
            self.too_deep = self.too_deep or len(self.stack) > MAX_DEPTH
        elif ch in _CLOSE:
            if not self.stack:
                return "end" if ch == "]" else None  # a stray top-level closer is ignored
            self.stack.pop()
        elif ch == "," and not self.stack:
            return "item"
        self.buf.append(ch)
        return None

    def take(self) -> tuple[str, bool]:
        item, deep = "".join(self.buf).strip(), self.too_deep
        self.buf, self.too_deep = [], False
        return item, deep


def split_items(text: str) -> tuple[list[str], bool, list[str]]:
    """Top-level items of the first `results = [...]` list, then the calls written after its `]` (up to the
    stop quote): (items, truncated, errors). A list cut short yields its pending item closed, unless the
    cut fell inside a string."""
    m = _RESULTS.search(text)
    if m is None:
        return [], False, ([] if not text.strip() else ["no 'results = [' list in output"])
    stop = text.find(_STOP, m.end())
    body = text[m.end():stop if stop >= 0 else len(text)]
    items: list[str] = []
    errors: list[str] = []
    scan = _Scan()
    for i, ch in enumerate(body):
        event = scan.step(ch)
        if event is not None:
            _flush(*scan.take(), items, errors)
            if event == "end":
                _tail_calls(body[i + 1:], items, errors)
                return items, False, errors
    # No closing bracket: the output was cut. Close what is open, unless the cut is inside a string.
    if scan.quote:
        item, _ = scan.take()
        if item:
            errors.append(f"output cut inside a string: {item[:60]!r}")
    else:
        closers = "".join(_PAIR[c] for c in reversed(scan.stack))
        scan.buf.append(closers)
        _flush(*scan.take(), items, errors)
    return items, True, errors


def _tail_calls(tail: str, items: list[str], errors: list[str]) -> None:
    """Complete `Name(...)` calls in the text after the list (strings and comments skipped)."""
    i, n = 0, len(tail)
    while i < n:
        ch = tail[i]
        if ch in "\"'":
            end = tail.find(ch, i + 1)
            i = n if end < 0 else end + 1
        elif ch == "#":
            end = tail.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (tail[j].isalnum() or tail[j] == "_"):
                j += 1
            k = j
            while k < n and tail[k] in " \t":
                k += 1
            if k < n and tail[k] == "(":
                scan, end = _Scan(), None
                for pos in range(k, n):
                    scan.step(tail[pos])
                    if not scan.stack and not scan.quote:
                        end = pos + 1
                        break
                if end is None:
                    return
                _flush(tail[i:end], False, items, errors)
                i = end
            else:
                i = j
        else:
            i += 1


def _flush(item: str, too_deep: bool, items: list[str], errors: list[str]) -> None:
    item = item.strip()
    if not item:
        return
    if too_deep:
        errors.append(f"item nested deeper than {MAX_DEPTH}: {item[:60]!r}")
    elif len(item) > MAX_ITEM_CHARS:
        errors.append(f"item longer than {MAX_ITEM_CHARS} characters")
    else:
        items.append(item)


def _read_item(item: str) -> ast.expr:
    """The item as an expression tree (parsed only)."""
    with warnings.catch_warnings():  # invalid escapes in model text are not our warnings to show
        warnings.simplefilter("ignore")
        try:
            return ast.parse(item, mode="eval").body
        except SyntaxError:
            return ast.parse(mark_keyword_names(item), mode="eval").body


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
        kwargs[unmark(k.arg)] = k.value
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise _Bad("*args are not allowed")
    return node.func.id, list(node.args), kwargs


def _one(args: list[ast.expr], kwargs: dict[str, ast.expr], names: tuple[str, ...], what: str) -> ast.expr:
    """The single value given positionally or under one of `names`."""
    values = args + [kwargs[n] for n in names if n in kwargs]
    if len(values) != 1:
        raise _Bad(f"{what}: expected one value, got {len(values)}")
    return values[0]


def _named_string(node: ast.AST, what: str) -> tuple[str | None, str]:
    """(class name or None, text) of `"x"`, `Person("x")`, `Person(name="x")` or `Person(Entity("x"))`
    (the innermost call names the class, as the official reader takes it)."""
    name = None
    for _ in range(MAX_DEPTH):
        if isinstance(node, ast.Constant):
            return name, _string(node)
        name, args, kwargs = _call(node)
        node = _one(args, kwargs, ("name",), name)
    raise _Bad(f"{what}: calls nested too deep")


def _resolver(names: Iterable[str]):
    """name -> the known name it spells (exact, else the unique one with the same `norm_name`), or None."""
    known = frozenset(names)
    by_norm: dict[str, str | None] = {}
    for n in known:
        k = norm_name(n)
        by_norm[k] = None if k in by_norm else n
    return lambda n: n if n in known else by_norm.get(norm_name(n))


class Parser:
    """Reads outputs of one task against a set of known class names.

    known: class names of the task's kind; entity_types: entity classes of the schema (None: any), used to
    recognise relation heads and argument types; roles: event type -> its role names (None: any).
    Names outside them are read as written and reported (`hallucinated`, `unknown_roles`).
    """

    def __init__(self, task: str, known: Iterable[str], entity_types: Iterable[str] | None = None,
                 roles: dict[str, Iterable[str]] | None = None) -> None:
        from knowcoder_ray.codec.render import TASKS
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        self.task = task
        self.known = frozenset(known)
        self._known = _resolver(self.known)
        self.entity_types = None if entity_types is None else frozenset(entity_types)
        self._entity = _resolver((self.entity_types or frozenset()) | {"Entity"})
        self.roles = None if roles is None else {k: frozenset(v) for k, v in roles.items()}
        self._roles = {} if roles is None else {k: _resolver(v) for k, v in self.roles.items()}

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
            except Exception as e:  # noqa: BLE001 - model text must never break a caller (SyntaxError, RecursionError...)
                result.errors.append(f"unreadable item ({type(e).__name__}): {item[:80]!r}")
        return result

    def _class(self, name: str, out: ParseResult) -> str:
        known = self._known(name)
        if known is None:
            out.hallucinated.append(name)
            return name
        return known

    def _mention(self, node: ast.AST, out: ParseResult) -> EntityMention:
        name, text = _named_string(node, "entity")
        if name is None:
            return EntityMention(text)
        known = self._entity(name) if self.entity_types is not None else name
        if known is None:
            out.hallucinated.append(name)
        return EntityMention(text, known or name)

    def _item(self, node: ast.expr, out: ParseResult) -> None:
        name, args, kwargs = _call(node)
        if self.task == "ner":
            inner, text = _named_string(node, name)
            if inner == name:
                out.entities.append(EntityMention(text, self._class(name, out)))
            else:  # Person(Entity("Ann")): the official reader takes the inner class
                out.entities.append(EntityMention(text, inner if inner == "Entity" else self._class(inner, out)))
            return
        type_ = self._class(name, out)
        if self.task == "re":
            if len(args) + len(kwargs) != 2:
                raise _Bad(f"{name}: a relation takes a head and a tail")
            head = args[0] if args else kwargs.get("head_entity")
            tail = args[1] if len(args) > 1 else kwargs.get("tail_entity")
            if head is None or tail is None:
                raise _Bad(f"{name}: missing head_entity or tail_entity")
            out.relations.append(RelationMention(type_, self._mention(head, out), self._mention(tail, out)))
        else:  # ED reads the EAE form too (its arguments matter when the trigger is missing)
            out.events.append(self._event(type_, args, kwargs, out))

    def _event(self, name: str, args: list[ast.expr], kwargs: dict[str, ast.expr], out: ParseResult) -> EventMention:
        values = args[:1] + ([kwargs["trigger"]] if "trigger" in kwargs else [])
        if len(values) > 1:
            raise _Bad(f"{name}: two triggers")
        trigger = _string(values[0]) if values else ""  # an event without a trigger is still read
        if len(args) > 1:
            raise _Bad(f"{name}: arguments must be given by role name")
        resolve = None if self.roles is None else self._roles.get(name)
        arguments = []
        for role, value in kwargs.items():
            if role == "trigger":
                continue
            if self.roles is not None:
                known = resolve(role) if resolve else None
                if known is None and resolve and resolve(role + "_"):  # a library written with `from_`
                    known = resolve(role + "_")
                if known is None:
                    out.unknown_roles.append(f"{name}.{role}")
                role = known or role
            for v in value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]:
                m = self._mention(v, out)
                arguments.append(Argument(role, m.text, m.type))
        return EventMention(name, trigger, tuple(arguments))
