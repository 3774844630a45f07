"""The schema-understanding corpus (KnowCoder's code pretraining data): definition codes and instance codes.

Definition codes are the class definitions of the library, grouped so that related classes form one
sample: a parent type with its ancestors (defined first) and its children (siblings of each other),
at most `max_group` children a sample; types without parent or child are grouped among themselves.
Instance codes come from KELM: the sentence and what its Wikidata triples say about it, in the
comment-style format of the released understanding data (KnowCoder Cases.md):

    # Extract the relations from the following sentence.
    sentence = "Gzim Istrefi plays for Carlstad United BK."

    from Entities import Human, AssociationFootballClub
    from Relations import MemberOfSportsTeam

    results = [
    	MemberOfSportsTeam(Human("Gzim Istrefi"), AssociationFootballClub("Carlstad United BK"))
    ]

One KELM line gives up to three samples (entities, relations, events). Events come from statements
with qualifiers (KELM quadruples); like the released data they carry no trigger.
Rows: {"text", "kind": "definition" | "instance", "source": "library" | "kelm", "n_tokens"}.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import pyarrow as pa

from knowcoder_ray import storage
from knowcoder_ray.codec.render import quote, render_class, render_event, render_output
from knowcoder_ray.data.pipeline import DEFAULT_BLOCK_BYTES, Item, ShardSpec, Transform, plan_files, plan_items
from knowcoder_ray.data.readers import json_lines
from knowcoder_ray.data.sources import KelmStats, TypeIndex, library_fingerprint, read_kelm
from knowcoder_ray.records import EventMention, Record
from knowcoder_ray.schema.types import KINDS, SchemaLibrary, depth_first

SCHEMA = pa.schema([("text", pa.string()), ("kind", pa.string()), ("source", pa.string()), ("n_tokens", pa.int64())])
HEADER = {"ner": "# Extract the entities from the following sentence.",
          "re": "# Extract the relations from the following sentence.",
          "ee": "# Extract the events from the following sentence."}


# ---- definition codes --------------------------------------------------------------------------------

def definition_groups(library: SchemaLibrary, max_group: int = 16) -> list[list[str]]:
    """Class-name groups, each in definition order (ancestors first); deterministic for a library."""
    # longest distance from a root (parent edges that close a cycle left out): parents before children when
    # sorted by it; depth first without recursion, so a chain thousands deep is no RecursionError
    parents = lambda n: [p for p in library.parents(n) if p in library]  # noqa: E731
    done, back_edges = depth_first(library.names(), parents)
    back, depth = set(back_edges), {}
    for name in done:  # each after its parents; a class its own parent counts one level more, as it always did
        ps = parents(name)
        depth[name] = 1 + (name in ps) + max((depth[p] for p in ps if (name, p) not in back), default=-1)
    order = lambda names: sorted(dict.fromkeys(names), key=lambda n: (depth[n], n))  # noqa: E731
    groups: list[list[str]] = []
    for kind in KINDS:
        names = sorted(library.names(kind))
        for parent in names:
            kids = sorted(c for c in library.children(parent) if c in library)
            chain = order([*(a for a in library.ancestors(parent) if a in library), parent])
            for i in range(0, len(kids), max_group):
                groups.append(chain + [k for k in order(kids[i:i + max_group]) if k not in chain])
        loners = [n for n in names if not library.children(n) and not parents(n)]
        groups += [loners[i:i + max_group] for i in range(0, len(loners), max_group)]
    return groups


def definition_code(names: Sequence[str], library: SchemaLibrary) -> str:
    """The classes of one group; events in their full form (typed argument roles)."""
    return "\n\n".join(render_class(library[n], "eae" if library[n].kind == "event" else None) for n in names) + "\n"


# ---- instance codes ----------------------------------------------------------------------------------

def _head(task: str, record: Record, **imports: Sequence[str]) -> str:
    """The task comment, the sentence and the imports (module -> class names) that open an instance code."""
    lines = [f"from {module} import {', '.join(dict.fromkeys(names))}" for module, names in imports.items()]
    return f"{HEADER[task]}\nsentence = {quote(record.text)}\n\n" + "\n".join(lines) + "\n\n"


def _event_item(e: EventMention) -> str:
    if e.trigger:
        return render_event(e, with_arguments=True)
    roles: dict[str, list[str]] = {}
    for a in e.arguments:
        roles.setdefault(a.role, []).append(f"{a.type or 'Entity'}({quote(a.text)})")
    parts = [f"{r} = [{', '.join(v)}]" for r, v in roles.items()]
    return f"{e.type}({', '.join(parts)})"


def instance_codes(record: Record) -> list[tuple[str, str]]:
    """(task, code) for the entities, relations and events of one record, in the released layout."""
    out = []
    if record.entities:
        out.append(("ner", _head("ner", record, Entities=[e.type for e in record.entities])
                    + render_output("ner", record)))
    if record.relations:
        ents = [m.type or "Entity" for r in record.relations for m in (r.head, r.tail)]
        out.append(("re", _head("re", record, Entities=ents, Relations=[r.type for r in record.relations])
                    + render_output("re", record, typed_relations=True)))
    if record.events:
        ents = [a.type or "Entity" for e in record.events for a in e.arguments] or ["Entity"]
        out.append(("ee", _head("ee", record, Entities=ents, Events=[e.type for e in record.events])
                    + "results = [\n" + ",\n".join(f"\t{_event_item(e)}" for e in record.events) + "\n]"))
    return out


# ---- the corpus --------------------------------------------------------------------------------------

class UnderstandingTransform(Transform):
    corpus = "understanding"
    schema = SCHEMA

    def __init__(self, library: SchemaLibrary, entity_types: Mapping[str, Sequence[str]] | None = None,
                 max_group: int = 16) -> None:
        self.library, self.max_group = library, max_group
        self.entity_types = {k: list(v) for k, v in (entity_types or {}).items()}
        self.index = TypeIndex(library)
        self.kelm_stats = KelmStats()

    def fingerprint(self) -> dict:
        et = hashlib.sha256(json.dumps(self.entity_types, sort_keys=True).encode()).hexdigest()[:16]
        return {"library": library_fingerprint(self.library), "entity_types": et, "max_group": self.max_group}

    def rows(self, spec: ShardSpec, item: Item) -> list[tuple[str, dict]]:
        if spec.source == "definitions":
            return [("definition", {"text": definition_code(item.payload, self.library), "kind": "definition",
                                    "source": "library"})]
        if spec.source == "kelm":
            record = read_kelm(item.payload, self.index, self.entity_types, id=item.key, stats=self.kelm_stats)
            return [(task, {"text": code, "kind": "instance", "source": "kelm"})
                    for task, code in instance_codes(record)]
        raise ValueError(f"the understanding corpus has no source {spec.source!r}")

    def token_text(self, row: dict) -> str:
        return row["text"]

    def counters(self) -> dict[str, int]:
        return {f"kelm_{k}": v for k, v in asdict(self.kelm_stats).items()}


def plan(library: SchemaLibrary, kelm: Sequence[str] = (), *, definitions: bool = True, max_group: int = 16,
         groups_per_shard: int = 2_000, block_bytes: int = DEFAULT_BLOCK_BYTES) -> list[ShardSpec]:
    """Shard specs of the understanding corpus: definition-code groups of the library, then KELM files."""
    specs = plan_items("definitions", "library", definition_groups(library, max_group), groups_per_shard) \
        if definitions else []
    return specs + plan_files("kelm", kelm, block_bytes)


def load_entity_types(path: str | None) -> dict[str, list[str]]:
    """An entity -> P31 table: JSON lines {"entity": label or Wikidata id, "instance_of": [ids or labels]}
    (e.g. cut from a Wikidata dump for the entities of KELM)."""
    table: dict[str, list[str]] = {}
    if path and not storage.isfile(path):
        raise FileNotFoundError(f"entity types table is not a file: {path}")
    for n, line in json_lines(path) if path else ():
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
        if not isinstance(d, dict) or not isinstance(d.get("entity"), str) \
                or not isinstance(d.get("instance_of"), list):
            raise ValueError(f"{path}:{n}: expected {{'entity': str, 'instance_of': [str]}}")
        table.setdefault(d["entity"], []).extend(d["instance_of"])
    return table
