"""Searching the schema library the service extracts against (read by knowcoder_ray.schema.table.load_library)."""
from __future__ import annotations

from knowcoder_ray.schema.types import SchemaLibrary, SchemaType


def describe(t: SchemaType) -> dict:
    """The public view of a type in API responses."""
    d = {"name": t.name, "kind": t.kind, "parents": list(t.parents), "label": t.label,
         "description": t.description, "wikidata_id": t.wikidata_id}
    if t.kind == "relation":
        d.update(head_types=list(t.head_types), tail_types=list(t.tail_types))
    if t.kind == "event":
        d["roles"] = [{"name": r.name, "entity_types": list(r.entity_types)} for r in t.roles]
    return d


def search(library: SchemaLibrary, query: str = "", kind: str | None = None, limit: int = 20,
           offset: int = 0) -> tuple[int, list[SchemaType]]:
    """Types whose name, label, Wikidata id or description contains `query` (case-insensitive), best
    first: exact name, name prefix, name substring, then label/id/description. Returns (total, page)."""
    q = query.strip().lower()
    ranked: list[tuple[int, SchemaType]] = []
    for t in library:
        if kind and t.kind != kind:
            continue
        name = t.name.lower()
        hits = (not q or name == q, name.startswith(q), q in name,
                q in t.label.lower() or q == (t.wikidata_id or "").lower(), q in t.description.lower())
        if any(hits):
            ranked.append((hits.index(True), t))
    ranked.sort(key=lambda r: r[0])  # stable: library order within a rank
    return len(ranked), [t for _, t in ranked[offset:offset + limit]]
