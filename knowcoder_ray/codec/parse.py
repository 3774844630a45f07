"""Parsing, the backward direction of the codec: model output text -> mentions.

The text is never executed. A small scanner splits the `results = [...]` list into its top-level items
(tracking strings, comments and bracket depth), and each item is read with `ast.parse` and walked: only
calls of class names with string, list and keyword arguments are accepted. So one malformed item does not
lose its neighbours. For speed, plain items are cut by one regular expression each and items of the common
shapes (`Type("span")`, `Rel(Entity("h"), Entity("t"))`, `Event(trigger = "t", role = [Type("a")])` with
simple strings) are read by regular expressions too, a whole list of them in one pass; everything else goes
the `ast` way, and both ways give the same result (tests compare them on generated and damaged outputs;
`Parser(fast=False)` is `ast` only).

It reads at least what the released KnowCoder evaluation's regular expressions read, as predictions: class
names outside the prompt (reported in `hallucinated`, kept as mentions so the metrics count them), class names
in another case or spelling of a known one (`person`, `Restaurant_Name`: mapped to it), relation heads of any
entity class, event arguments under unknown roles (kept, listed in `unknown_roles`), events without a trigger
(trigger ""), an output cut before its final brackets (closed for it), calls after the list's `]` up to the
stop quote, calls before the list or in an output without one, items not separated by commas
(`A("x")\n\tB("y")`: read call by call), a list's `]` where its last item's `)` belongs, comment lines, the
first of several positional values (`Person("Ann", "Bob")`: Ann; a relation's first two), and
`Person(Entity("Ann"))` (the inner call, as the official reader does). Beyond those it reads single quotes,
keyword arguments in any order, blanks around names and strings, bare strings as relation heads and arguments,
a role given one value without a list, parentheses inside spans, escapes (decoded: `"Bob \\"B\\""` is `Bob
"B"`; the official reader keeps `Bob \\`), and Python keywords as role names (`from = [...]`).

Known departures the other way (a differential test against the released code, not fixed; rare in practice):
calls inside `#` comments, and items after a string opened without its quote (`Person(Ann")`), are not read;
an event cut before its `)` is closed and read (the official event reader drops it); and the official readers
take an event's first quoted string as its trigger, so an event written `trigger = ""`, or with its `trigger
=` after a role, is scored by them with another trigger (metrics O9).
"""
from __future__ import annotations

import ast
import keyword
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

from knowcoder_ray.codec.render import STOP, TASKS
from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention
from knowcoder_ray.schema.types import KW_MARK, mark_keyword_names, norm_name, unmark

MAX_DEPTH = 32          # deeper items are rejected before ast sees them
MAX_ITEM_CHARS = 20_000  # a single item longer than this is rejected
_RESULTS = re.compile(r"results\s*=\s*\[")
_OPEN, _CLOSE = "([{", ")]}"


# ---- the fast path's regular expressions ---------------------------------------------------------------
# A string as the scanner reads it when it ends at its own quote (escapes kept as written).
_SCAN_STR = r"""(?:"[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*"|'[^'\\\n]*(?:\\[\s\S][^'\\\n]*)*')"""


def _plain_item_pattern(levels: int) -> str:
    """One top-level item then its `,` or `]`, as the scanner cuts it when the item has no comment, no
    string cut by a line break, no stray closer and brackets nested at most `levels` deep. Written as
    unrolled loops (`x*(?:(?:s|g)x*)*`) so a failed match backtracks in linear time."""
    inner = r"[^\"'#()\[\]{}]*"  # characters inside brackets that open or close nothing
    group = ""
    for _ in range(levels):
        starts = _SCAN_STR + (f"|{group}" if group else "")
        group = rf"(?:[(\[{{]{inner}(?:(?:{starts}){inner})*[)\]}}])"
    top = r"[^\"'#()\[\]{},]*"
    return rf"({top}(?:(?:{_SCAN_STR}|{group}){top})*)([,\]])"


_PLAIN_ITEM = re.compile(_plain_item_pattern(3))

# The fast reader takes items of the common shapes with simple strings (no escapes, no line breaks, nothing
# `ast` refuses), ASCII names and blanks only; anything else goes to `ast`, which reads it the same way.
_W = r"[ \t]*"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_STR = r"""(?:"[^"\\\n\r\x00\ud800-\udfff]*"|'[^'\\\n\r\x00\ud800-\udfff]*')"""
_M = rf"(?:{_NAME}{_W}\({_W}{_STR}{_W}\)|{_STR})"                   # "x" or Cls("x")
_M_CAPTURED = rf"(?:({_NAME}){_W}\({_W}({_STR}){_W}\)|({_STR}))"  # groups: class, its string, bare string
_LIST = rf"\[{_W}(?:{_M}(?:{_W},{_W}{_M})*)?{_W}\]"
_KW = rf"{_NAME}{_W}={_W}(?:{_LIST}|{_M})"
_FAST_ITEM = {
    "ner": rf"({_NAME}){_W}\({_W}{_M_CAPTURED}{_W}\)",
    "re": rf"({_NAME}){_W}\({_W}{_M_CAPTURED}{_W},{_W}{_M_CAPTURED}{_W}\)",
    "event": rf"({_NAME}){_W}\({_W}(?:({_STR})(?:{_W},{_W}{_KW})*|{_KW}(?:{_W},{_W}{_KW})*)?{_W}\)",
}
_FAST_KW = re.compile(rf"({_NAME}){_W}={_W}(?:({_LIST})|{_M_CAPTURED})")
_FAST_MENTION = re.compile(_M_CAPTURED)
_KEYWORDS = frozenset(keyword.kwlist)  # as class names `ast` refuses them (as role names it reads them)
_BLANK = r"[ \t\n\r]*"
_LIST_END = re.compile(r'\s*(?:"""|\Z)')  # nothing after the list's `]` but blanks, up to the stop quote
_CALL_START = re.compile(r"(\w*)[ \t]*(\()?")  # a name (`\w`: `str.isalnum` or `_`), then maybe its call


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

    def to_dict(self, id: str = "", text: str = "", source: str = "") -> dict:
        """`to_record(...).to_dict()`, then the parse's reports (the one serialisation of a parse)."""
        return {**self.to_record(id, text, source).to_dict(), "hallucinated": list(self.hallucinated),
                "unknown_roles": list(self.unknown_roles), "errors": list(self.errors), "truncated": self.truncated}


@dataclass
class _Scan:
    """State of the item scanner: the current item's characters and open brackets."""

    buf: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    quote: str = ""
    escaped: bool = False
    comment: bool = False
    too_deep: bool = False

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


def split_items(text: str, fast: bool = True) -> tuple[list[str], bool, list[str]]:
    """(items, truncated, errors): the calls before the first `results = [...]` list (or in an output without
    one), the list's top-level items, then the calls after its `]` (up to the stop quote). A list cut short
    yields its pending item closed, unless cut inside a string. fast=False: the character scanner alone."""
    m = _RESULTS.search(text)
    items: list[str] = []
    errors: list[str] = []
    # calls written before the list, or in an output without one, are read too (the official reader finds
    # its calls anywhere in the output)
    _tail_calls(text[:m.start()] if m else text.partition(STOP)[0], items, errors)
    if m is None:
        return items, False, errors + ([] if items or not text.strip() else ["no 'results = [' list in output"])
    stop = text.find(STOP, m.end())
    body = text[m.end():stop if stop >= 0 else len(text)]
    # Fast path: plain items are cut by `_PLAIN_ITEM`; at the first one it cannot take, the character scanner
    # below goes on from there (an item boundary, so its state starts empty).
    start = 0
    while fast and (m := _PLAIN_ITEM.match(body, start)):
        _flush(m.group(1), False, items, errors)
        start = m.end()
        if body[start - 1] == "]":
            _tail_calls(body[start:], items, errors)
            return items, False, errors
    scan = _Scan()
    for i in range(start, len(body)):
        event = scan.step(body[i])
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
        scan.buf.append("".join(_CLOSE[_OPEN.index(c)] for c in reversed(scan.stack)))
        _flush(*scan.take(), items, errors)
    return items, True, errors


def _tail_calls(tail: str, items: list[str], errors: list[str]) -> None:
    """Complete `Name(...)` calls in the text after the list (strings and comments skipped)."""
    i, n = 0, len(tail)
    while i < n:
        ch = tail[i]
        if ch in "\"'#":  # a string to its quote, a comment to its line's end
            end = tail.find("\n" if ch == "#" else ch, i + 1)
            i = n if end < 0 else end + 1
        elif ch.isalpha() or ch == "_":
            name = _CALL_START.match(tail, i)
            if name.group(2) is None:
                i = name.end(1)
                continue
            scan = _Scan()
            for end in range(name.end(), n + 1):
                scan.step(tail[end - 1])
                if not scan.stack and not scan.quote:
                    break
            else:
                return
            _flush(tail[i:end], False, items, errors)
            i = end
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


_KEYWORD_AHEAD = re.compile(r"[A-Za-z_]\w*[ \t]*=(?!=)")


def _repair(item: str) -> str:
    """`item` as the official regular expressions read it: each closing bracket that does not match its opener
    written as the one that does (`A("x"]`, the list's `]` where the item's `)` belongs: `A("x")`), and a
    comma put where one is missing inside a call, before a keyword argument or a list element
    (`A(trigger = "x" role = [B("y") B("z")])`)."""
    scan, out, last = _Scan(), [], ""
    for i, ch in enumerate(item):
        free = not (scan.quote or scan.comment)
        if free and ch in _CLOSE and scan.stack:
            ch = _CLOSE[_OPEN.index(scan.stack[-1])]
        elif (free and scan.stack and last in _CLOSE + "\"'" and (ch.isalpha() or ch == "_")
              and (scan.stack[-1] == "[" or _KEYWORD_AHEAD.match(item, i))):
            out.append(", ")
        scan.step(ch)
        out.append(ch)
        if not (scan.quote or scan.comment or ch.isspace()):
            last = ch  # the last character outside strings (a closing quote included)
        elif scan.quote:
            last = ""
    return "".join(out)


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
    if any(k.arg is None for k in node.keywords):
        raise _Bad("**kwargs are not allowed")
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise _Bad("*args are not allowed")
    return node.func.id, list(node.args), {unmark(k.arg): k.value for k in node.keywords}


def _named_string(node: ast.AST, what: str) -> tuple[str | None, str]:
    """(class name or None, text) of `"x"`, `Person("x")`, `Person(name="x")` or `Person(Entity("x"))`
    (the innermost call names the class, as the official reader takes it)."""
    name = None
    for _ in range(MAX_DEPTH):
        if isinstance(node, ast.Constant):
            return name, _string(node)
        name, args, kwargs = _call(node)
        values = args + ([kwargs["name"]] if "name" in kwargs else [])  # positional or `name=`
        if not values:
            raise _Bad(f"{name}: expected a value")
        node = values[0]  # the first, as the official reader takes it (`Person("Ann", "Bob")`: Ann)
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
    """Reads outputs of one task against known class names: `known` (the task's kind), `entity_types` (relation
    heads and argument types; None: any), `roles` (event type -> role names; None: any). Names outside them are
    read as written and reported. fast: common shapes without `ast` (same results; False: the reference reader).
    """

    def __init__(self, task: str, known: Iterable[str], entity_types: Iterable[str] | None = None,
                 roles: dict[str, Iterable[str]] | None = None, *, fast: bool = True) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        self.task = task
        self.fast = fast
        self._known = _resolver(known)
        self._entity = None if entity_types is None else _resolver({*entity_types, "Entity"})
        self._roles = None if roles is None else {k: _resolver(v) for k, v in roles.items()}
        item = _FAST_ITEM.get(task, _FAST_ITEM["event"])
        self._fast_item = re.compile(item)
        # the rest of a `results = [` list of such items, up to its `]`; without capture groups (faster)
        bare, sep = re.sub(r"(?<!\\)\((?!\?)", "(?:", item), f"{_BLANK},{_BLANK}"
        self._fast_list = re.compile(rf"{_BLANK}(?:{bare}(?:{sep}{bare})*{_BLANK},?)?{_BLANK}\]")

    @classmethod
    def for_types(cls, task: str, types, library=None, *, fast: bool = True) -> "Parser":
        """A parser for the classes a prompt showed (the same list given to `render_prompt`)."""
        types = list(types)
        entity_types = None if library is None else library.names("entity")
        return cls(task, [t.name for t in types], entity_types,
                   {t.name: [r.name for r in t.roles] for t in types} if task == "eae" else None, fast=fast)

    def parse(self, text: str) -> ParseResult:
        """Never raises on any input text."""
        if not isinstance(text, str):
            return ParseResult(errors=[f"output is {type(text).__name__}, not text"])
        if self.fast and (whole := self._read_list(text)) is not None:
            return whole
        result = ParseResult()
        items, result.truncated, result.errors = split_items(text, self.fast)
        for item in items:
            if self.fast and self._fast_read(self._fast_item.fullmatch(item), result):
                continue
            self._read(item, result)
        return result

    def _read(self, item: str, out: ParseResult, whole: bool = True) -> None:
        """Read one item with `ast`; one it refuses is read as the official regular expressions read it:
        repaired (`_repair`), then, if it holds other text around its calls (`A("x")\n\tB("y")`, `A("x");
        B("y")`, words around a call), call by call."""
        try:
            self._item(_read_item(item), out)
        except _Bad as e:
            out.errors.append(f"{e}: {item[:80]!r}")
        except SyntaxError as e:
            if whole and (repaired := _repair(item)) != item:
                return self._read(repaired, out)  # (repaired again, it is the same: then read call by call)
            calls: list[str] = []
            if whole:
                _tail_calls(item, calls, [])
            if calls and calls != [item]:
                for call in calls:
                    self._read(call, out, whole=False)
            else:
                out.errors.append(f"unreadable item ({type(e).__name__}): {item[:80]!r}")
        except Exception as e:  # noqa: BLE001 - model text must never break a caller (RecursionError...)
            out.errors.append(f"unreadable item ({type(e).__name__}): {item[:80]!r}")

    def _class(self, name: str, out: ParseResult, resolve=None) -> str:
        """The known class `name` spells (by `resolve`, else the task's classes), else `name`, reported."""
        known = (resolve or self._known)(name)
        if known is None:
            out.hallucinated.append(name)
        return known or name

    def _typed(self, name: str | None, text: str, out: ParseResult) -> EntityMention:
        """A relation head/tail or argument: `text` written bare (name None) or inside `name(...)`."""
        if name is None:
            return EntityMention(text)
        return EntityMention(text, name if self._entity is None else self._class(name, out, self._entity))

    def _ner_entity(self, name: str, inner: str, text: str, out: ParseResult) -> None:
        """`name(text)` (inner == name) or `name(inner(text))`: the official reader takes the inner class, and
        `Person(Entity("Ann"))` stays an `Entity`."""
        entity = inner == "Entity" and name != "Entity"
        out.entities.append(EntityMention(text, inner if entity else self._class(inner, out)))

    def _role(self, event: str, role: str, out: ParseResult) -> str:
        if self._roles is None:
            return role
        resolve = self._roles.get(event)
        known = (resolve(role) or resolve(role + "_")) if resolve else None  # `from_`: a library written so
        if known is None:
            out.unknown_roles.append(f"{event}.{role}")
        return known or role

    def _item(self, node: ast.expr, out: ParseResult) -> None:
        name, args, kwargs = _call(node)
        if self.task == "ner":
            self._ner_entity(name, *_named_string(node, name), out)
            return
        type_ = self._class(name, out)
        if self.task == "re":
            head = args[0] if args else kwargs.get("head_entity")
            tail = args[1] if len(args) > 1 else kwargs.get("tail_entity")
            if head is None or tail is None:
                raise _Bad(f"{name}: missing head_entity or tail_entity")
            head = self._typed(*_named_string(head, "entity"), out)
            out.relations.append(RelationMention(type_, head, self._typed(*_named_string(tail, "entity"), out)))
        else:  # ED reads the EAE form too (its arguments matter when the trigger is missing)
            # the first positional value (the official reader's first quoted string), else `trigger=`; more
            # positional values are ignored, as the official reader ignores them
            values = args[:1] + ([kwargs["trigger"]] if "trigger" in kwargs else [])
            trigger = _string(values[0]) if values else ""  # an event without a trigger is still read
            roles = ((r, v.elts if isinstance(v, (ast.List, ast.Tuple)) else [v])
                     for r, v in kwargs.items() if r != "trigger")
            self._event(type_, trigger, roles, lambda v: _named_string(v, "entity"), out)

    def _event(self, type_: str, trigger: str, roles: Iterable[tuple[str, Iterable]], read, out: ParseResult) -> None:
        """Record an event; `roles`: (role, values) pairs, each value read by `read` into (class or None, text)
        when its turn comes (what comes before a value `ast` cannot read is still recorded)."""
        arguments = []
        for role, values in roles:
            role = self._role(type_, role, out)
            for v in values:
                m = self._typed(*read(v), out)
                arguments.append(Argument(role, m.text, m.type))
        out.events.append(EventMention(type_, trigger, tuple(arguments)))

    def _read_list(self, text: str) -> ParseResult | None:
        """Read a whole output that is one plain list of common-shape items (the usual case) in one pass:
        the same result as cutting it into items and reading each. None for any other output."""
        m = _RESULTS.search(text)
        # maybe calls before the list: the general way reads them; and no item of a text this short can pass
        # the general path's item limit: both ways read the same
        if m is None or "(" in text[:m.start()] or len(text) > MAX_ITEM_CHARS:
            return None
        whole = self._fast_list.match(text, m.end())
        if whole is None or _LIST_END.match(text, whole.end()) is None:
            return None
        if text.find(STOP, m.end(), whole.end()) >= 0:  # the general way ends the text there, even in a string
            return None
        out = ParseResult()
        for item in self._fast_item.finditer(text, m.end(), whole.end()):
            if not self._fast_read(item, out):
                return None  # an event item that `ast` must read: the general way reads the whole output
        return out

    def _fast_read(self, m: re.Match | None, out: ParseResult) -> bool:
        """Record an item of a common shape (`m`: its match of `self._fast_item`) without building a tree;
        False (nothing recorded) for anything `ast` must read."""
        if m is None or not _KEYWORDS.isdisjoint(m.groups()):  # a keyword as a class name (strings are quoted)
            return False
        if self.task == "ner":
            name, inner, inner_text, bare = m.groups()
            self._ner_entity(name, inner or name, (inner_text or bare)[1:-1], out)
            return True
        if self.task == "re":
            name, h_cls, h_in, h_bare, t_cls, t_in, t_bare = m.groups()
            type_ = self._class(name, out)
            head = self._typed(h_cls, (h_in or h_bare)[1:-1], out)
            out.relations.append(RelationMention(type_, head, self._typed(t_cls, (t_in or t_bare)[1:-1], out)))
            return True
        name, trigger = m.groups()
        kwargs: dict[str, tuple] = {}
        for k in _FAST_KW.finditer(m.string, m.end(2) if trigger else m.end(1), m.end()):
            role, listed = k.group(1), k.group(2)
            values = ([v.groups() for v in _FAST_MENTION.finditer(listed)] if listed is not None
                      else [k.group(3, 4, 5)])
            if role.endswith(KW_MARK) or any(v[0] in _KEYWORDS for v in values):
                return False
            kwargs[role] = (listed, values)
        if "trigger" in kwargs:  # must be the only trigger, a bare string
            listed, values = kwargs.pop("trigger")
            if trigger or listed is not None or values[0][0] is not None:
                return False
            trigger = values[0][2]
        self._event(self._class(name, out), trigger[1:-1] if trigger else "",
                    [(role, values) for role, (_, values) in kwargs.items()],
                    lambda v: (v[0], (v[1] or v[2])[1:-1]), out)  # (class, its string, bare string)
        return True
