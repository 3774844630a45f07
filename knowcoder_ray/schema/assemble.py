"""From the two scans' summaries to the library: which classes are kept, their parents (a DAG), unique
class names, event roles, and the report of what a user should know."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from knowcoder_ray.schema.dump import LineIndex
from knowcoder_ray.schema.scan import DumpSummary, ScanTargets
from knowcoder_ray.schema.types import (
    BASE_CLASS, Role, SchemaLibrary, SchemaType, children_of, depth_first, to_class_name, to_role_name, walk,
)
from knowcoder_ray.schema.wikidata import P_INSTANCE_OF, P_SUBCLASS_OF, clean, num

if TYPE_CHECKING:
    from knowcoder_ray.schema.build import BuildConfig

KIND_ORDER = {"entity": 0, "event": 1, "relation": 2}
NOT_ROLES = {P_INSTANCE_OF, P_SUBCLASS_OF}


def second_scan_targets(s1: DumpSummary, config: BuildConfig) -> tuple[ScanTargets, set[str]]:
    """(plan, kept class ids): classes used by P31 or named by relation constraints, with their ancestors."""
    relations = _relation_props(s1, config)
    seeds = set(s1.usage) | {q for d in relations.values() for q in (*d["head"], *d["tail"])}
    parents = {q: c[2] for q, c in s1.classes.items()}
    kept = seeds | set(walk(seeds, lambda q: parents.get(q, ())))
    events: set[str] = set()
    if config.event_root and config.event_root in kept:
        children = children_of({q: parents.get(q, ()) for q in kept})
        events = {config.event_root, *walk([config.event_root], lambda q: children.get(q, ()))}
    example_ids = {v[1] for d in relations.values() for pair in d["examples"] for v in pair if v[0] == "id"}
    needed = (kept | example_ids) - set(s1.classes) - set(s1.properties)
    return ScanTargets(frozenset(needed), frozenset(events)), kept


def _relation_props(s1: DumpSummary, config: BuildConfig) -> dict[str, dict]:
    return {p: d for p, d in s1.properties.items() if d["datatype"] in config.relation_datatypes}


def dedupe_class_names(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(key, label) pairs, highest priority first -> {key: unique class name}. The first holder of a
    name keeps it; later ones get their key appended ("bank" Q468756 -> "BankQ468756")."""
    base = {key: to_class_name(label or key) for key, label in items}
    out: dict[str, str] = {}
    taken = set(BASE_CLASS.values())
    for key in base:  # first pass: plain names to the first holders
        if base[key] not in taken:
            out[key] = base[key]
            taken.add(base[key])
    for key in [k for k in base if k not in out]:  # then the others, their key appended
        name, i = base[key] + to_class_name(key), 2
        while name in taken:
            name, i = f"{base[key]}{to_class_name(key)}_{i}", i + 1
        out[key] = name
        taken.add(name)
    return out


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
    notes: list[str] = field(default_factory=list)  # what the selection and the filled descriptions did
    selected: dict[str, int] = field(default_factory=dict)  # types per kind after the selection

    def summary(self) -> dict:
        return {**self.counts, "malformed": len(self.malformed), "unresolved": len(self.unresolved),
                "dropped_cycle_edges": len(self.dropped_cycle_edges), "missing_labels": len(self.missing_labels),
                "missing_descriptions": len(self.missing_descriptions), "unmatched": len(self.unmatched),
                **self.selected}


def assemble(s1: DumpSummary, s2: DumpSummary, config: BuildConfig, plan: ScanTargets,
             kept: set[str]) -> tuple[SchemaLibrary, BuildReport]:
    """The library and its report from the scans' summaries and `second_scan_targets(s1, config)`."""
    info = {q: (c[0], c[1], c[3]) for q, c in s1.classes.items()}
    info.update({q: tuple(n) for q, n in s2.nodes.items() if q not in info})
    known = {q for q in kept if q in info}
    kind = {q: "event" if q in plan.events else "entity" for q in known}
    parents = {q: c[2] for q, c in s1.classes.items()}
    edges = {q: [p for p in parents.get(q, ()) if p in known and kind[p] == kind[q]] for q in known}
    if config.event_root in edges:
        edges[config.event_root] = []
    # parent edges that close a cycle are dropped (depth first, lowest ids first)
    _, dropped = depth_first(sorted(edges, key=num), lambda q: list(edges[q]))
    for q, p in dropped:
        edges[q].remove(p)
    # parents that are ancestors of another parent are dropped (Human < Person < Entity: Human keeps Person)
    for q, ps in edges.items():
        if len(ps) > 1:
            above = {p: set(walk([p], lambda n: edges.get(n, ()))) for p in ps}
            edges[q] = [p for p in ps if not any(p in above[o] for o in ps if o != p)]
    relations = _relation_props(s1, config)

    order = sorted(known, key=lambda q: (KIND_ORDER[kind[q]], num(q)))
    names = dedupe_class_names([(q, info[q][0]) for q in order]
                               + [(p, relations[p]["label"]) for p in sorted(relations, key=num)])
    label_of = {**{q: v[0] for q, v in info.items()}, **{p: d["label"] for p, d in s1.properties.items()}}
    children = children_of(edges)
    types: list[SchemaType] = []
    for q in order:
        label, desc, aliases = info[q]
        if kind[q] == "entity":
            examples, roles = [lab for _, lab in s1.examples.get(q, ())], ()
        else:
            examples = list(dict.fromkeys(e for e in [label, *aliases] if e))
            roles = _roles(q, children, relations, s2, names, known, config)
        types.append(SchemaType(names[q], kind[q], tuple(names[p] for p in edges[q]), q, label, desc,
                                tuple(examples[: config.max_examples]), roles=roles))
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
    return library, BuildReport(
        truncated=next((m["reason"] for m in malformed if m["reason"].startswith("dump truncated")), None),
        counts=counts, malformed=malformed, unresolved=sorted(kept - known, key=num), dropped_cycle_edges=dropped,
        missing_labels=[t.wikidata_id for t in library if not t.label],
        missing_descriptions=[{"name": t.name, "kind": t.kind, "wikidata_id": t.wikidata_id, "label": t.label}
                              for t in library if not t.description],
        notes=[f"event root {config.event_root!r} is not a class of the library (give the Wikidata id of a class "
               "the dump uses, e.g. Q1190554): no event types"] if config.event_root and not plan.events else [])


def _show(value: list, label_of: dict[str, str]) -> str:
    k, v = value
    return clean(label_of.get(v) or v) if k == "id" else clean(v)


def _roles(q: str, children, relations: dict[str, dict], s2: DumpSummary, names, known,
           config: BuildConfig) -> tuple[Role, ...]:
    """Relation properties used by enough instances of `q` or its subclasses, named after their labels."""
    found = [s2.events.get(c, (0, {})) for c in (q, *walk([q], lambda n: children.get(n, ())))]
    n, counts = sum(k for k, _ in found), Counter()
    for _, props in found:
        counts.update(props)  # empty when n is 0, so nothing below divides by it
    picked = sorted((p for p, k in counts.items() if p not in NOT_ROLES and p in relations
                     and k / n >= config.min_role_support), key=lambda p: (-counts[p], num(p)))
    roles, taken = [], set()
    for p in picked[: config.max_roles]:
        d = relations[p]
        name = to_role_name(d["label"] or p)
        if name in taken:
            name = f"{name}_{p.lower()}"
        taken.add(name)
        roles.append(Role(name, tuple(names[t] for t in d["tail"] if t in known)))
    return tuple(roles)
