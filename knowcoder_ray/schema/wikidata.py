"""Build a KnowCoder schema library from a Wikidata JSON dump, with Ray Data or in one process.

What becomes what (KnowCoder, section 3.1 of the paper; the released library used the 2022-07-04 dump):
- entity types: the classes used as P31 "instance of" targets, plus their P279 "subclass of" ancestors,
  plus the classes that relation constraints name (and their ancestors). Parents are the P279 targets
  that are kept, with cycles broken and redundant parents (ancestors of another parent) dropped, so the
  classes form a DAG that Python could define. Examples: the labels of the class's instances with the
  lowest QIDs (the oldest, usually best known items).
- relation types: properties whose datatype is in `BuildConfig.relation_datatypes`. Head / tail types
  come from the property constraints P2302 "subject type constraint" (Q21503250) and "value type
  constraint" (Q21510865), each with its P2308 "class" qualifiers. Examples "(head, tail)" come from
  P1855 "Wikidata property example" (the statement's value is the subject, its qualifier of the same
  property is the object).
- event types: the kept classes that descend from `BuildConfig.event_root` (default Q1190554
  "occurrence"), the root included; the root's own parents are dropped (it hangs under `Event`).
  Roles: the properties used on instances of the event class or of its subclasses, kept when at least
  `min_role_support` of those instances use them (at most `max_roles`, most used first); the role is
  named after the property label and its entity types are the property's value type constraint classes.
  Examples (trigger words): the class's English label and aliases.
- names: English label (else "mul", en-gb, en-us) through `to_class_name`, deduplicated: the first
  holder (entities, then events, then relations; lowest id first) keeps the plain name, the others get
  their Wikidata id appended (``BankQ468756``). Missing descriptions stay empty and are listed in the
  report (`missing_descriptions.tsv`), so a user can fill them (`fill_descriptions`).

Two scans of the dump: the first collects classes (items with P279), properties, P31 usage and instance
labels; the second, given what the first found, collects labels of the classes and example items that
have no P279 of their own, and the properties used on event instances. Each scan maps batches of lines
to small `DumpSummary`s that merge associatively, so the driver holds O(classes + properties), never
O(items). Malformed lines are counted and reported with their line numbers; the build goes on.
"""
from __future__ import annotations

import bisect
import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from knowcoder_ray.schema.dump import TRUNCATED, LineIndex, compression_of, iter_lines, read_dump
from knowcoder_ray.schema.types import BASE_CLASS, Role, SchemaLibrary, SchemaType, to_class_name, to_role_name

EVENT_ROOT = "Q1190554"  # occurrence
SUBJECT_TYPE_CONSTRAINT = "Q21503250"
VALUE_TYPE_CONSTRAINT = "Q21510865"
P_INSTANCE_OF, P_SUBCLASS_OF, P_CONSTRAINT, P_CLASS, P_EXAMPLE = "P31", "P279", "P2302", "P2308", "P1855"
LABEL_LANGS = ("en", "mul", "en-gb", "en-us", "en-ca")
RELATION_DATATYPES = ("wikibase-item", "quantity", "time", "monolingualtext")
NOT_ROLES = {P_INSTANCE_OF, P_SUBCLASS_OF}
KIND_ORDER = {"entity": 0, "event": 1, "relation": 2}
_ID = {"item": re.compile(r"^Q[1-9][0-9]*$"), "property": re.compile(r"^P[1-9][0-9]*$")}
_ANY_ID = re.compile(r"^[A-Z][1-9][0-9]*$")


@dataclass(frozen=True)
class BuildConfig:
    event_root: str | None = EVENT_ROOT
    relation_datatypes: tuple[str, ...] = RELATION_DATATYPES
    max_examples: int = 5
    max_roles: int = 8
    min_role_support: float = 0.2
    max_aliases: int = 10
    batch_lines: int = 1000


def num(eid: str) -> int:
    """Q42 -> 42 (the sort key for "lowest id first")."""
    return int(eid[1:]) if _ANY_ID.match(eid) else 1 << 62


def clean(text: str) -> str:
    """One line of text that sits safely in a class docstring."""
    return " ".join(text.split()).replace('"""', '"')


# ---- one entity --------------------------------------------------------------------------------------

def _text(entity: dict, key: str) -> str:
    values = entity.get(key) or {}
    for lang in LABEL_LANGS:
        v = values.get(lang)
        if v and v.get("value"):
            return clean(v["value"])
    return ""


def _aliases(entity: dict, limit: int) -> list[str]:
    return [clean(a["value"]) for a in (entity.get("aliases") or {}).get("en", ())[:limit] if a.get("value")]


def _snak_value(snak: dict) -> tuple[str, str] | None:
    """('id', 'Q5') for an entity value, ('lit', text) for a literal, None for somevalue/novalue."""
    if snak.get("snaktype") != "value":
        return None
    dv = snak["datavalue"]
    v, t = dv["value"], dv["type"]
    if t == "wikibase-entityid":
        if v.get("id"):
            return "id", v["id"]
        prefix = {"item": "Q", "property": "P", "lexeme": "L"}.get(v.get("entity-type"), "Q")
        return "id", f"{prefix}{v['numeric-id']}"
    if t == "string":
        return "lit", v
    if t == "monolingualtext":
        return "lit", v["text"]
    if t == "quantity":
        return "lit", v["amount"].lstrip("+")
    if t == "time":  # "+1952-03-11T00:00:00Z" -> "1952-03-11" (year-only precision keeps the zeros)
        return "lit", v["time"].lstrip("+").split("T")[0]
    if t == "globecoordinate":
        return "lit", f"{v['latitude']}, {v['longitude']}"
    return "lit", json.dumps(v, sort_keys=True)


def _statements(claims: dict, pid: str) -> Iterator[dict]:
    for st in claims.get(pid) or ():
        if st.get("rank") != "deprecated":
            yield st


def _targets(claims: dict, pid: str) -> list[str]:
    """Entity ids that the (non-deprecated) statements of `pid` point to, in order, without repeats."""
    out: dict[str, None] = {}
    for st in _statements(claims, pid):
        v = _snak_value(st["mainsnak"])
        if v and v[0] == "id":
            out[v[1]] = None
    return list(out)


def _literal_targets(claims: dict, pid: str) -> list[tuple[str, str]]:
    """(datavalue type, value) of the statements of `pid` whose value is not an entity."""
    out = []
    for st in _statements(claims, pid):
        snak = st["mainsnak"]
        v = _snak_value(snak)
        if v and v[0] == "lit":
            out.append((snak["datavalue"]["type"], v[1]))
    return out


def _qualifier_targets(st: dict, pid: str) -> list[str]:
    out = []
    for snak in (st.get("qualifiers") or {}).get(pid) or ():
        v = _snak_value(snak)
        if v and v[0] == "id":
            out.append(v[1])
    return out


def _property_record(pid: str, entity: dict, claims: dict) -> dict:
    head: list[str] = []
    tail: list[str] = []
    for st in _statements(claims, P_CONSTRAINT):
        v = _snak_value(st["mainsnak"])
        if v == ("id", SUBJECT_TYPE_CONSTRAINT):
            head += [q for q in _qualifier_targets(st, P_CLASS) if q not in head]
        elif v == ("id", VALUE_TYPE_CONSTRAINT):
            tail += [q for q in _qualifier_targets(st, P_CLASS) if q not in tail]
    examples = []
    for st in _statements(claims, P_EXAMPLE):
        subject = _snak_value(st["mainsnak"])
        objects = [o for o in map(_snak_value, (st.get("qualifiers") or {}).get(pid) or ()) if o]
        if subject and objects:
            examples.append([list(subject), list(objects[0])])
    return {"label": _text(entity, "labels"), "description": _text(entity, "descriptions"),
            "datatype": entity.get("datatype") or "", "head": head, "tail": tail, "examples": examples}


class Malformed(ValueError):
    """A dump line that is not an entity we can read."""


class Truncated(Malformed):
    """The compressed dump ends early: the marker line `dump.iter_range` adds after the last line read."""


class DumpError(ValueError):
    """The dump cannot give a library at all (empty, or no Wikidata entity in it)."""


def parse_line(raw: bytes) -> dict | None:
    """One dump line -> the entity dict, None for the array brackets and blank lines; `Malformed` else."""
    if raw.startswith(TRUNCATED):
        raise Truncated("dump truncated: " + raw[len(TRUNCATED):].decode("utf-8", "replace")
                        + "; the library holds what was read before")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"invalid UTF-8 at byte {e.start}") from None
    s = text.strip()
    if s.endswith(","):
        s = s[:-1].rstrip()
    if s.startswith("[") and s[1:2] in ("", "{", " ", "\t"):  # "[" alone, or "[{...}" on one line
        s = s[1:].lstrip()
    if s.endswith("]") and (s == "]" or s[:-1].rstrip().endswith("}")):
        s = s[:-1].rstrip()
    if not s:
        return None
    try:
        entity = json.loads(s)
    except json.JSONDecodeError as e:
        raise Malformed(f"invalid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(entity, dict):
        raise Malformed(f"not a JSON object but a {type(entity).__name__}")
    eid, etype = entity.get("id"), entity.get("type")
    if not isinstance(eid, str) or not isinstance(etype, str):
        raise Malformed("entity without a string 'id' and 'type'")
    if etype in _ID and not _ID[etype].match(eid):
        raise Malformed(f"{etype} with invalid id {eid!r}")
    if not isinstance(entity.get("claims") or {}, dict):
        raise Malformed(f"{eid}: 'claims' is not an object")
    return entity


# ---- summaries of batches of lines -------------------------------------------------------------------

@dataclass
class Plan:
    """What the second scan looks for, decided from the first: ids whose labels are needed, event classes."""

    needed: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()


@dataclass
class DumpSummary:
    """What a batch of lines contributes; merges associatively and commutatively.

    classes: qid -> [label, description, P279 parents, aliases] for items with a P279 statement.
    properties: pid -> record (label, description, datatype, head, tail, examples).
    usage: qid -> number of items with P31 = qid; examples: qid -> [[numeric id, label], ...] (lowest ids).
    nodes: id -> [label, description, aliases] (second scan); events: qid -> [instances, {pid: count}].
    """

    lines: dict[int, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    malformed: list[list] = field(default_factory=list)  # [range, index, reason, text]
    classes: dict[str, list] = field(default_factory=dict)
    properties: dict[str, dict] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list] = field(default_factory=dict)
    nodes: dict[str, list] = field(default_factory=dict)
    events: dict[str, list] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: "DumpSummary", max_examples: int) -> "DumpSummary":
        for r, n in other.lines.items():
            self.lines[r] = self.lines.get(r, 0) + n
        for k, n in other.counts.items():
            self.count(k, n)
        self.malformed += other.malformed
        for mine, theirs in ((self.classes, other.classes), (self.properties, other.properties),
                             (self.nodes, other.nodes)):
            for k, v in theirs.items():
                mine.setdefault(k, v)
        for q, n in other.usage.items():
            self.usage[q] = self.usage.get(q, 0) + n
        for q, ex in other.examples.items():
            mine = self.examples.setdefault(q, [])
            for e in ex:
                _keep_lowest(mine, e, max_examples)
        for q, (n, props) in other.events.items():
            mine = self.events.setdefault(q, [0, {}])
            mine[0] += n
            for p, c in props.items():
                mine[1][p] = mine[1].get(p, 0) + c
        return self

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "DumpSummary":
        d = json.loads(text)
        d["lines"] = {int(r): n for r, n in d["lines"].items()}
        return cls(**d)


def _keep_lowest(kept: list, item: list, k: int) -> None:
    if item in kept:
        return
    bisect.insort(kept, item)
    del kept[k:]


def summarize(rows: Iterable[tuple[int, int, bytes]], config: BuildConfig, plan: Plan | None = None) -> DumpSummary:
    """The summary of some dump lines: the first scan without `plan`, the second with it."""
    s = DumpSummary()
    for rng, index, raw in rows:
        s.lines[rng] = s.lines.get(rng, 0) + 1
        try:
            entity = parse_line(raw)
            if entity is None:
                s.count("structural")
            elif plan is None:
                problems: list[str] = []
                _first_scan(s, entity, config, problems)
                for why in problems:  # a readable entity with a claim of the wrong kind: reported, not dropped
                    s.count("malformed_claims")
                    s.malformed.append([rng, index, why, raw.decode("utf-8", "replace")])
            else:
                _second_scan(s, entity, plan, config)
        except Malformed as e:
            if plan is None:  # the second scan sees the same lines; report them once
                s.count("truncated" if isinstance(e, Truncated) else "malformed")
                s.malformed.append([rng, index, str(e), "" if isinstance(e, Truncated) else raw.decode("utf-8", "replace")])
        except (KeyError, TypeError, AttributeError) as e:
            if plan is None:
                s.count("malformed")
                s.malformed.append([rng, index, f"unexpected structure: {type(e).__name__}: {e}",
                                    raw.decode("utf-8", "replace")])
    return s


def _first_scan(s: DumpSummary, entity: dict, config: BuildConfig, problems: list[str]) -> None:
    eid, etype = entity["id"], entity["type"]
    claims = entity.get("claims") or {}
    if etype == "property":
        record = _property_record(eid, entity, claims)  # read everything before counting: may raise
        s.count("properties")
        s.properties[eid] = record
        return
    if etype != "item":
        s.count(f"skipped_{etype}")
        return
    label = _text(entity, "labels")
    parents = _targets(claims, P_SUBCLASS_OF)
    instance_of = _targets(claims, P_INSTANCE_OF)
    for pid in (P_INSTANCE_OF, P_SUBCLASS_OF):  # these must point at items; a string value is a data error
        bad = _literal_targets(claims, pid)
        if bad:
            problems.append(f"{eid}: {pid} claim with a {bad[0][0]} value {bad[0][1]!r:.60}, not an item "
                            "(the claim is ignored, the rest of the entity is used)")
    row = [label, _text(entity, "descriptions"), parents, _aliases(entity, config.max_aliases)] if parents else None
    s.count("items")
    if row:
        s.classes[eid] = row
    for target in instance_of:
        s.usage[target] = s.usage.get(target, 0) + 1
        if label and config.max_examples:
            _keep_lowest(s.examples.setdefault(target, []), [num(eid), label], config.max_examples)


def _second_scan(s: DumpSummary, entity: dict, plan: Plan, config: BuildConfig) -> None:
    eid = entity["id"]
    if eid in plan.needed:
        s.nodes[eid] = [_text(entity, "labels"), _text(entity, "descriptions"), _aliases(entity, config.max_aliases)]
    if entity["type"] != "item" or not plan.events:
        return
    claims = entity.get("claims") or {}
    hits = [t for t in _targets(claims, P_INSTANCE_OF) if t in plan.events]
    if hits:
        used = [p for p in claims if any(True for _ in _statements(claims, p))]
        for t in hits:
            ev = s.events.setdefault(t, [0, {}])
            ev[0] += 1
            for p in used:
                ev[1][p] = ev[1].get(p, 0) + 1


# ---- scanning: Ray Data or one process ---------------------------------------------------------------

def _summarize_batch(batch, config: BuildConfig, plan: Plan | None):
    import pyarrow as pa

    rows = zip(batch.column("range").to_pylist(), batch.column("line").to_pylist(),
               batch.column("text").to_pylist())
    return pa.table({"summary": [summarize(rows, config, plan).to_json()]})


def scan_ray(uri: str, config: BuildConfig, plan: Plan | None = None, parallelism: int = -1) -> DumpSummary:
    """One scan as a Ray Data pipeline: read -> summarize batches -> merge the summaries here.

    A plain dump is read as byte ranges in parallel, and each read task summarizes its own blocks (Ray
    fuses the two steps: only the small summaries cross the object store). A compressed dump is one
    stream, so its blocks go to separate summarize tasks that parse in parallel behind the reader."""
    ds = read_dump(uri, parallelism=parallelism, block_lines=config.batch_lines)
    fused = compression_of(uri) is None  # batch_size=None lets Ray fuse the map into the read
    ds = ds.map_batches(_summarize_batch, batch_format="pyarrow", batch_size=None if fused else config.batch_lines,
                        fn_kwargs={"config": config, "plan": plan})
    total = DumpSummary()
    for row in ds.iter_rows():
        total.merge(DumpSummary.from_json(row["summary"]), config.max_examples)
    return total


def scan_local(uri: str, config: BuildConfig, plan: Plan | None = None) -> DumpSummary:
    """The same scan as a plain loop in this process (the baseline of the benchmark, and for small dumps)."""
    total, batch = DumpSummary(), []
    for row in iter_lines(uri):
        batch.append(row)
        if len(batch) >= config.batch_lines:
            total.merge(summarize(batch, config, plan), config.max_examples)
            batch = []
    return total.merge(summarize(batch, config, plan), config.max_examples)


# ---- from summaries to the library -------------------------------------------------------------------

def _walk(starts: Iterable[str], step) -> set[str]:
    seen, queue = set(), deque(starts)
    while queue:
        n = queue.popleft()
        for m in step(n):
            if m not in seen:
                seen.add(m)
                queue.append(m)
    return seen


def plan_second_scan(s1: DumpSummary, config: BuildConfig) -> tuple[Plan, set[str]]:
    """(plan, kept class ids): classes used by P31 or named by relation constraints, with their ancestors."""
    relations = _relation_props(s1, config)
    seeds = set(s1.usage) | {q for d in relations.values() for q in (*d["head"], *d["tail"])}
    parents = {q: c[2] for q, c in s1.classes.items()}
    kept = seeds | _walk(seeds, lambda q: parents.get(q, ()))
    events: set[str] = set()
    if config.event_root and config.event_root in kept:
        children: dict[str, list[str]] = {}
        for q in kept:
            for p in parents.get(q, ()):
                children.setdefault(p, []).append(q)
        events = {config.event_root} | _walk([config.event_root], lambda q: children.get(q, ()))
    example_ids = {v[1] for d in relations.values() for pair in d["examples"] for v in pair if v[0] == "id"}
    needed = (kept | example_ids) - set(s1.classes) - set(s1.properties)
    return Plan(frozenset(needed), frozenset(events)), kept


def _relation_props(s1: DumpSummary, config: BuildConfig) -> dict[str, dict]:
    return {p: d for p, d in s1.properties.items() if d["datatype"] in config.relation_datatypes}


def dedupe_class_names(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(key, label) pairs, highest priority first -> {key: unique class name}. The first holder of a
    name keeps it; later ones get their key appended ("bank" Q468756 -> "BankQ468756")."""
    items = list(items)
    base = {key: to_class_name(label or key) for key, label in items}
    out: dict[str, str] = {}
    taken = set(BASE_CLASS.values())
    for key, _ in items:  # first pass: plain names to the first holders
        if base[key] not in taken:
            out[key] = base[key]
            taken.add(base[key])
    for key, _ in items:
        if key in out:
            continue
        name, i = base[key] + to_class_name(key), 2
        while name in taken:
            name, i = f"{base[key]}{to_class_name(key)}_{i}", i + 1
        out[key] = name
        taken.add(name)
    return out


def _break_cycles(edges: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Drop the parent edges that close a cycle (depth first, lowest ids first); returns the dropped ones."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    dropped = []
    for root in sorted(edges, key=num):
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(list(edges[root])))]
        while stack:
            node, it = stack[-1]
            p = next(it, None)
            if p is None:
                state[node] = 2
                stack.pop()
            elif state.get(p) == 1:
                edges[node].remove(p)
                dropped.append((node, p))
            elif p not in state:
                state[p] = 1
                stack.append((p, iter(list(edges[p]))))
    return dropped


def _reduce(edges: dict[str, list[str]]) -> None:
    """Drop parents that are ancestors of another parent (Human < Person < Entity: Human keeps Person)."""
    for q, ps in edges.items():
        if len(ps) > 1:
            above = {p: _walk([p], lambda n: edges.get(n, ())) for p in ps}
            edges[q] = [p for p in ps if not any(p in above[o] for o in ps if o != p)]


@dataclass
class BuildReport:
    """What a user should know about a build: counts, malformed lines (written aside), gaps to fill."""

    counts: dict[str, int]
    malformed: list[dict]  # {"line", "reason", "text"}
    unresolved: list[str]  # kept class ids that have no entity in the dump
    dropped_cycle_edges: list[tuple[str, str]]
    missing_labels: list[str]  # wikidata ids named after their id
    missing_descriptions: list[dict]  # {"name", "kind", "wikidata_id", "label"}
    unmatched: list[str] = field(default_factory=list)  # selection names the library does not have
    truncated: str | None = None  # why the dump ended early (a cut .gz/.bz2): the library holds what was read

    def summary(self) -> dict:
        return {**self.counts, "malformed": len(self.malformed), "unresolved": len(self.unresolved),
                "dropped_cycle_edges": len(self.dropped_cycle_edges), "missing_labels": len(self.missing_labels),
                "missing_descriptions": len(self.missing_descriptions), "unmatched": len(self.unmatched)}


def assemble(s1: DumpSummary, s2: DumpSummary, config: BuildConfig) -> tuple[SchemaLibrary, BuildReport]:
    plan, kept = plan_second_scan(s1, config)
    info = {q: (c[0], c[1], c[3]) for q, c in s1.classes.items()}
    info.update({q: tuple(n) for q, n in s2.nodes.items() if q not in info})
    known = {q for q in kept if q in info}
    kind = {q: "event" if q in plan.events else "entity" for q in known}
    parents = {q: c[2] for q, c in s1.classes.items()}
    edges = {q: [p for p in parents.get(q, ()) if p in known and kind[p] == kind[q]] for q in known}
    if config.event_root in edges:
        edges[config.event_root] = []
    dropped = _break_cycles(edges)
    _reduce(edges)
    relations = _relation_props(s1, config)

    order = sorted(known, key=lambda q: (KIND_ORDER[kind[q]], num(q)))
    names = dedupe_class_names([(q, info[q][0]) for q in order]
                               + [(p, relations[p]["label"]) for p in sorted(relations, key=num)])
    label_of = {**{q: v[0] for q, v in info.items()}, **{p: d["label"] for p, d in s1.properties.items()}}
    children: dict[str, list[str]] = {}
    for c, ps in edges.items():
        for p in ps:
            children.setdefault(p, []).append(c)
    types: list[SchemaType] = []
    for q in order:
        label, desc, aliases = info[q]
        if kind[q] == "entity":
            examples = [lab for _, lab in s1.examples.get(q, ())][: config.max_examples]
            types.append(SchemaType(names[q], "entity", tuple(names[p] for p in edges[q]), q, label, desc,
                                    tuple(examples)))
        else:
            examples = list(dict.fromkeys(e for e in [label, *aliases] if e))[: config.max_examples]
            types.append(SchemaType(names[q], "event", tuple(names[p] for p in edges[q]), q, label, desc,
                                    tuple(examples), roles=_roles(q, children, s1, s2, names, known, config)))
    for p in sorted(relations, key=num):
        d = relations[p]
        examples = [f"({_show(h, label_of)}, {_show(t, label_of)})" for h, t in d["examples"]]
        types.append(SchemaType(names[p], "relation", (), p, d["label"], d["description"],
                                tuple(examples[: config.max_examples]),
                                head_types=tuple(names[q] for q in d["head"] if q in known),
                                tail_types=tuple(names[q] for q in d["tail"] if q in known)))
    library = SchemaLibrary(types)

    index = LineIndex(s1.lines)
    malformed = sorted(({"line": index.line_number(r, k), "reason": why, "text": text}
                        for r, k, why, text in s1.malformed), key=lambda m: m["line"])
    counts = {"lines": index.total, **s1.counts,
              **{f"{k}_types": len(library.of_kind(k)) for k in ("entity", "relation", "event")}}
    counts.pop("malformed", None)
    report = BuildReport(
        truncated=next((m["reason"] for m in malformed if m["reason"].startswith("dump truncated")), None),
        counts=counts, malformed=malformed, unresolved=sorted(kept - known, key=num),
        dropped_cycle_edges=dropped,
        missing_labels=[t.wikidata_id for t in library if not t.label],
        missing_descriptions=[{"name": t.name, "kind": t.kind, "wikidata_id": t.wikidata_id, "label": t.label}
                              for t in library if not t.description])
    return library, report


def _show(value: list, label_of: dict[str, str]) -> str:
    k, v = value
    return clean(label_of.get(v) or v) if k == "id" else clean(v)


def _roles(q: str, children, s1: DumpSummary, s2: DumpSummary, names, known, config: BuildConfig) -> tuple[Role, ...]:
    """Properties used by enough instances of `q` or its subclasses, named after their labels."""
    subtree = {q} | _walk([q], lambda n: children.get(n, ()))
    n, counts = 0, {}
    for c in subtree:
        cn, cprops = s2.events.get(c, (0, {}))
        n += cn
        for p, k in cprops.items():
            counts[p] = counts.get(p, 0) + k
    if not n:
        return ()
    picked = sorted((p for p, k in counts.items() if p not in NOT_ROLES and p in s1.properties
                     and s1.properties[p]["datatype"] in config.relation_datatypes
                     and k / n >= config.min_role_support), key=lambda p: (-counts[p], num(p)))
    roles, taken = [], set()
    for p in picked[: config.max_roles]:
        d = s1.properties[p]
        name = to_role_name(d["label"] or p)
        if name in taken:
            name = f"{name}_{p.lower()}"
        taken.add(name)
        roles.append(Role(name, tuple(names[t] for t in d["tail"] if t in known)))
    return tuple(roles)


# ---- entry points ------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    library: SchemaLibrary
    report: BuildReport


def build(uri: str, config: BuildConfig = BuildConfig(), *, use_ray: bool = True, parallelism: int = -1) -> BuildResult:
    """Two scans of the dump at `uri` (local path or s3:// / gs:// URI) and the assembled library.
    With `use_ray` the scans are Ray Data pipelines on the current cluster (`ray.init` first)."""
    def scan(plan):
        return scan_ray(uri, config, plan, parallelism) if use_ray else scan_local(uri, config, plan)

    s1 = scan(None)
    if not any(n for k, n in s1.counts.items() if k in ("items", "properties") or k.startswith("skipped_")):
        raise DumpError(_no_entities(uri, s1))
    plan, _ = plan_second_scan(s1, config)
    s2 = scan(plan) if plan.needed or plan.events else DumpSummary()
    return BuildResult(*assemble(s1, s2, config))


def _no_entities(uri: str, s1: DumpSummary) -> str:
    """Why a dump gave no entity at all: empty, cut before its first entity, or not a Wikidata JSON dump."""
    index = LineIndex(s1.lines)
    if not index.total:
        return f"{uri}: the dump is empty (no line)"
    first = min(s1.malformed, key=lambda m: index.line_number(m[0], m[1]), default=None)
    msg = f"{uri}: no Wikidata entity in its {index.total} line(s)"
    if first is not None:
        msg += f"; line {index.line_number(first[0], first[1])}: {first[2]}"
    cut = next((m[2] for m in s1.malformed if m[2].startswith("dump truncated")), None)
    if cut is not None and cut != first[2]:
        msg += f"; {cut}"
    if compression_of(uri) is None:
        from knowcoder_ray.storage import filesystem

        fs, path = filesystem(uri)
        with fs.open_input_stream(path, compression=None) as f:
            head = f.read(4)
        if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh":  # compressed, but not named .gz/.bz2
            msg += "; the file looks compressed: name it .json.gz or .json.bz2"
    return msg + " (expected a Wikidata JSON dump: a JSON array with one entity object per line)"


def resolve_names(library: SchemaLibrary, wanted: Iterable[str]) -> tuple[list[str], list[str]]:
    """Names, Wikidata ids or labels -> (library class names, the ones that match nothing)."""
    by_label: dict[str, str] = {}
    by_class: dict[str, str] = {}
    for t in library:
        by_label.setdefault(t.label.casefold(), t.name)
        by_class.setdefault(to_class_name(t.label).casefold(), t.name)
    found, missing = {}, []
    for w in wanted:
        t = library.get(w) or library.by_wikidata_id(w)
        name = t.name if t else by_label.get(w.casefold()) or by_class.get(to_class_name(w).casefold())
        if name:
            found[name] = None
        else:
            missing.append(w)
    return list(found), missing


def select(library: SchemaLibrary, wanted: Iterable[str]) -> tuple[SchemaLibrary, list[str]]:
    """KnowCoder's selection: the wanted types with all their ancestors, and the entity types that the
    constraints of any kept type name (with their ancestors). Returns (sub-library, names matching nothing)."""
    names, missing = resolve_names(library, wanted)
    keep: dict[str, None] = {}
    frontier = names
    while frontier:
        new = [n for n in frontier if n not in keep]
        new += [a for n in new for a in library.ancestors(n) if a in library and a not in keep]
        keep.update(dict.fromkeys(new))
        frontier = [r for n in new for r in _references(library[n]) if r in library and r not in keep]
    return library.select(keep, with_ancestors=False), missing


def _references(t: SchemaType) -> tuple[str, ...]:
    return (*t.head_types, *t.tail_types, *(e for r in t.roles for e in r.entity_types))


def corpus_types(uris: Iterable[str]) -> tuple[set[str], int]:
    """The type names a corpus of Record JSONL files uses (entities, relations, events, arguments), and the
    number of lines that are not records (reported by the caller)."""
    from knowcoder_ray.records import Record
    from knowcoder_ray.storage import filesystem

    types: set[str] = set()
    bad = 0
    for uri in uris:
        fs, path = filesystem(uri)
        with fs.open_input_stream(path, compression="detect") as f:
            for line in _text_lines(f):
                if not line.strip():
                    continue
                try:
                    r = Record.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                types.update(e.type for e in r.entities)
                for rel in r.relations:
                    types.update((rel.type, rel.head.type, rel.tail.type))
                for ev in r.events:
                    types.add(ev.type)
                    types.update(a.type for a in ev.arguments)
    types.discard("Entity")
    return types, bad


def _text_lines(f) -> Iterator[str]:
    tail = b""
    while True:
        data = f.read(1 << 20)
        if not data:
            break
        parts = (tail + data).split(b"\n")
        tail = parts.pop()
        yield from (p.decode("utf-8", "replace") for p in parts)
    if tail:
        yield tail.decode("utf-8", "replace")


def fill_descriptions(library: SchemaLibrary, descriptions: dict[str, str]) -> tuple[SchemaLibrary, int]:
    """Set the descriptions a user wrote (keyed by class name or Wikidata id); returns (library, how many)."""
    from dataclasses import replace

    out, n = [], 0
    for t in library:
        d = descriptions.get(t.name) or (descriptions.get(t.wikidata_id) if t.wikidata_id else None)
        if d and clean(d) != t.description:
            t, n = replace(t, description=clean(d)), n + 1
        out.append(t)
    return SchemaLibrary(out), n


DESCRIPTION_COLUMNS = ("name", "kind", "wikidata_id", "label", "description")


def missing_descriptions_tsv(library: SchemaLibrary) -> str:
    """The types without a description, as a TSV a user fills in (last column) and passes back."""
    rows = ["\t".join(DESCRIPTION_COLUMNS)]
    rows += ["\t".join((t.name, t.kind, t.wikidata_id or "", t.label, "")) for t in library if not t.description]
    return "\n".join(rows) + "\n"


def parse_descriptions_tsv(text: str) -> dict[str, str]:
    """A filled-in descriptions TSV -> {class name or Wikidata id: description}. Needs a header with a
    `description` column and a `name` and/or `wikidata_id` column."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return {}
    header = lines[0].split("\t")
    if "description" not in header or not {"name", "wikidata_id"} & set(header):
        raise ValueError(f"descriptions TSV needs a header with description and name or wikidata_id, got {header}")
    out = {}
    for n, line in enumerate(lines[1:], start=2):
        cells = dict(zip(header, line.split("\t")))
        desc = (cells.get("description") or "").strip()
        if not desc:
            continue
        keys = [cells.get(k, "").strip() for k in ("name", "wikidata_id")]
        if not any(keys):
            raise ValueError(f"descriptions TSV line {n}: neither name nor wikidata_id")
        out.update({k: desc for k in keys if k})
    return out
