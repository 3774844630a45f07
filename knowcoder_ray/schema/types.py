"""The schema type model: entity, relation and event types and the library that holds them.

One `SchemaType` per class of the code-style library. Entity, relation and event types share the
dataclass (a `kind` field tells them apart) so a library round-trips through one Parquet table.
"""
from __future__ import annotations

import functools
import io
import itertools
import keyword
import re
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

KINDS = ("entity", "relation", "event")
BASE_CLASS = {"entity": "Entity", "relation": "Relation", "event": "Event"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CAMEL = re.compile(r"([a-z])([A-Z])")


class SchemaError(ValueError):
    """A schema definition is inconsistent (unknown parent, bad name, cycle...)."""


@dataclass(frozen=True)
class Role:
    """An event argument role, e.g. ``institution: List[Entity]`` with its allowed entity types."""

    name: str
    entity_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaType:
    """One class of the library.

    name: the Python class name (CamelCase identifier); label: the dataset or Wikidata label it came from.
    parents: direct superclasses (Wikidata P279); empty means the kind's base class.
    head_types / tail_types: relation constraints; roles: event argument roles.
    """

    name: str
    kind: str = "entity"
    parents: tuple[str, ...] = ()
    wikidata_id: str | None = None
    label: str = ""
    description: str = ""
    examples: tuple[str, ...] = ()
    head_types: tuple[str, ...] = ()
    tail_types: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchemaError(f"type {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not is_class_name(self.name, self.kind):
            raise SchemaError(f"type name {self.name!r} is not a valid {self.kind} class name")
        for role in self.roles:
            if not is_role_name(role.name):
                raise SchemaError(f"event type {self.name!r}: role {role.name!r} is not an identifier")

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def references(self) -> tuple[str, ...]:
        """The entity types its relation constraints and event roles name."""
        return (*self.head_types, *self.tail_types, *(e for r in self.roles for e in r.entity_types))

    def to_row(self) -> dict:
        """A flat, Arrow-friendly dict: the fields in order, lists for tuples, roles as two parallel lists."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "roles"}
        return {**{k: list(v) if isinstance(v, tuple) else v for k, v in row.items()},
                "role_names": [r.name for r in self.roles], "role_types": [list(r.entity_types) for r in self.roles]}

    @classmethod
    def from_row(cls, row: dict) -> "SchemaType":
        roles = tuple(Role(n, tuple(t or ())) for n, t in zip(row.get("role_names") or (), row.get("role_types") or ()))
        lists = {k: tuple(row.get(k) or ()) for k in ("parents", "examples", "head_types", "tail_types")}
        return cls(name=row["name"], kind=row.get("kind", "entity"), wikidata_id=row.get("wikidata_id"),
                   label=row.get("label") or "", description=row.get("description") or "", roles=roles, **lists)


def is_role_name(name: str) -> bool:
    """A role is an identifier or a Python keyword: the released schema has roles such as `from`
    (written `from: List[ Entity ]` and `from = [...]`, which the codec reads without executing)."""
    return bool(_IDENT.match(name))


# Names a class of each kind may not take: its own base class, and `Entity`, which every prompt with
# entities defines. An entity class named `Event` exists in the released library (`class Event(Entity)`).
RESERVED = {"entity": {"Entity"}, "relation": {"Entity", "Relation"}, "event": {"Entity", "Event"}}


def is_class_name(name: str, kind: str | None = None) -> bool:
    """A valid class name for `kind` (None: for every kind)."""
    reserved = RESERVED.get(kind, BASE_CLASS.values())
    return is_role_name(name) and not keyword.iskeyword(name) and name not in reserved


@functools.lru_cache(maxsize=1 << 16)  # the scorer asks for the same few names per tuple
def norm_name(name: str) -> str:
    """The released KnowCoder scorer's name normalisation (used to compare types and roles): a name with
    `-` has those replaced by spaces; else one with `_` has those replaced; else camelCase is split (a
    lower-case letter then an upper-case one); lower-cased in every case.
    'Restaurant_Name' and 'RestaurantName' -> 'restaurant name'; 'PER' -> 'per'."""
    sep = "-" if "-" in name else "_" if "_" in name else None
    return name.replace(sep, " ").lower() if sep else _CAMEL.sub(r"\1 \2", name).lower()


def to_class_name(label: str) -> str:
    """'programming language' / 'Restaurant_Name' / '/people/person/nationality' -> a CamelCase identifier."""
    name = "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", label)) or "Unnamed"
    if name[0].isdigit():
        name = "T" + name
    if name in BASE_CLASS.values() or keyword.iskeyword(name):  # "none" -> None, not a class name
        name += "Type"
    return name


def to_role_name(label: str) -> str:
    """'Time_elapsed' / 'Place' / 'start date' -> a snake_case name; Python keywords stay ('from'), as
    in the released schema (see `is_role_name`)."""
    words = re.findall(r"[A-Za-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", label))
    name = "_".join(w.lower() for w in words) or "role"
    if name[0].isdigit():
        name = "r_" + name
    return name


def walk(starts: Iterable[str], step) -> list[str]:
    """The nodes reachable from `starts` through `step(node)`, nearest first (breadth first), without the
    starts themselves; cycles tolerated."""
    starts = list(starts)
    seen, out = set(starts), []
    for n in itertools.chain(starts, out):  # `out` is read while it grows: the queue
        for m in step(n):
            if m not in seen:
                seen.add(m)
                out.append(m)
    return out


def depth_first(roots: Iterable[str], step) -> tuple[list[str], list[tuple[str, str]]]:
    """Depth first from each root in turn through `step(node)`: (every node reached, after all the nodes it
    reaches; the (node, next) steps that would close a cycle, which are not taken)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    order, back = [], []
    stack = [(None, iter(roots))]  # the roots are the steps of a node above them all (None)
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            if node is not None:
                state[node] = 2
                order.append(node)
        elif state.get(nxt) == 1:
            back.append((node, nxt))
        elif nxt not in state:
            state[nxt] = 1
            stack.append((nxt, iter(step(nxt))))
    return order, back


def children_of(parents: dict[str, Iterable[str]]) -> dict[str, list[str]]:
    """{node: its parents} -> {parent: its children, in the order of `parents`}."""
    children: dict[str, list[str]] = {}
    for c, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(c)
    return children


@dataclass
class SchemaLibrary:
    """A set of schema types with their taxonomy: lookup by name or Wikidata id, ancestors, descendants."""

    types: dict[str, SchemaType]  # the field compared by ==; __init__ below fills it

    def __init__(self, types: Iterable[SchemaType] = ()) -> None:
        self.types = {}
        for t in types:
            if self.types.setdefault(t.name, t) != t:
                raise SchemaError(f"duplicate type name {t.name!r}")
        self._by_id = {t.wikidata_id: t for t in self.types.values() if t.wikidata_id}
        self._children = children_of({t.name: t.parents for t in self.types.values()})

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[SchemaType]:
        return iter(self.types.values())

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __getitem__(self, name: str) -> SchemaType:
        if name not in self.types:
            raise KeyError(f"unknown schema type {name!r}")
        return self.types[name]

    def get(self, name: str) -> SchemaType | None:
        return self.types.get(name)

    def by_wikidata_id(self, qid: str) -> SchemaType | None:
        return self._by_id.get(qid)

    def of_kind(self, kind: str) -> list[SchemaType]:
        return [t for t in self.types.values() if t.kind == kind]

    def names(self, kind: str | None = None) -> list[str]:
        return [t.name for t in self.types.values() if kind is None or t.kind == kind]

    def parents(self, name: str) -> tuple[str, ...]:
        return t.parents if (t := self.types.get(name)) else ()

    def children(self, name: str) -> list[str]:
        return list(self._children.get(name, ()))

    def ancestors(self, name: str) -> list[str]:
        """All superclasses known to the library, nearest first (breadth first), cycles tolerated."""
        return walk([name], self.parents)

    def descendants(self, name: str) -> list[str]:
        return walk([name], self.children)

    def is_a(self, name: str, ancestor: str) -> bool:
        return name == ancestor or ancestor in self.ancestors(name)

    def select(self, names: Iterable[str]) -> "SchemaLibrary":
        """KnowCoder's selection: the named types with all their ancestors, and the entity types that the
        constraints and roles of any kept type name (with their ancestors)."""
        frontier = [self[n].name for n in names]  # self[n]: a KeyError naming an unknown type
        keep: dict[str, None] = {}
        while frontier:
            new = [n for n in dict.fromkeys(frontier) if n not in keep]
            new += [a for n in new for a in self.ancestors(n) if a in self.types and a not in keep]
            keep.update(dict.fromkeys(new))
            frontier = [r for n in new for r in self.types[n].references() if r in self.types and r not in keep]
        return SchemaLibrary(self.types[n] for n in keep)

    def merged(self, other: "SchemaLibrary") -> "SchemaLibrary":
        return SchemaLibrary([*self.types.values(), *(t for t in other if t.name not in self.types)])

    def validate(self) -> list[str]:
        """Problems a user should fix: unknown parents or constraint types, inheritance cycles."""
        problems = []
        for t in self.types.values():
            for p in t.parents:
                if p not in self.types:
                    problems.append(f"{t.name}: unknown parent {p!r}")
                elif t.name in self.ancestors(p):
                    problems.append(f"{t.name}: inheritance cycle through {p!r}")
            for ref in t.references():
                if ref != "Entity" and ref not in self.types:
                    problems.append(f"{t.name}: unknown constraint type {ref!r}")
        return problems

    def to_rows(self) -> list[dict]:
        return [t.to_row() for t in self.types.values()]

    @classmethod
    def from_rows(cls, rows: Iterable[dict]) -> "SchemaLibrary":
        return cls(SchemaType.from_row(r) for r in rows)

    def with_type(self, t: SchemaType) -> "SchemaLibrary":
        return SchemaLibrary({**self.types, t.name: t}.values())


# ---- Python keywords as role names ---------------------------------------------------------------------

KW_MARK = "__kw__"  # `from` is read as `from__kw__`, so `ast` accepts the released `from: List[ Entity ]`


def mark_keyword_names(source: str) -> str:
    """Append KW_MARK to Python keywords used as names in class code or outputs: parameters
    (`from: List[ Entity ]`, `from = [...]` inside a call), attributes (`self.from`) and plain values
    (`= from` ending a line). Found with the tokenizer, so string contents are never touched; text the
    tokenizer cannot read is returned unchanged."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
                  if t.type not in (tokenize.COMMENT, tokenize.NL)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source
    # offset of each line as the tokenizer counts lines (StringIO.readline splits on "\n" only, unlike splitlines)
    starts = [0, *itertools.accumulate(len(line) + 1 for line in source.split("\n"))]
    marks, depth = [], 0
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.OP:
            depth += tok.string in "([{"
            depth -= tok.string in ")]}"
        if tok.type != tokenize.NAME or not keyword.iskeyword(tok.string):
            continue
        prev = tokens[i - 1].string if i else ""
        nxt = tokens[i + 1]  # a name is never last: the tokens end with ENDMARKER
        as_parameter = depth > 0 and prev in ("(", ",") and nxt.string in ("=", ":")
        as_attribute = prev == "."
        as_value = prev == "=" and (nxt.type in (tokenize.NEWLINE, tokenize.ENDMARKER) or nxt.string in (",", ")"))
        if as_parameter or as_attribute or as_value:
            marks.append(starts[tok.end[0] - 1] + tok.end[1])
    for pos in reversed(marks):
        source = source[:pos] + KW_MARK + source[pos:]
    return source


def unmark(name: str) -> str:
    return name.removesuffix(KW_MARK)
