"""The schema library the service extracts against: loading it from a file and searching it.

Libraries are read by knowcoder_ray.schema: a Parquet table or KnowCoder class-code files (read with `ast`).
"""
from __future__ import annotations

from knowcoder_ray.schema.types import SchemaLibrary, SchemaType


def load_library(uri: str) -> SchemaLibrary:
    """A Parquet schema table, or a folder of Entities.py / Relations.py / Events.py (path or URI)."""
    from knowcoder_ray.schema.pyfile import read_pyfiles
    from knowcoder_ray.schema.table import read_parquet

    uri = str(uri)
    return read_parquet(uri) if uri.endswith(".parquet") else read_pyfiles(uri)


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
    ranked: list[tuple[int, int, SchemaType]] = []
    for i, t in enumerate(library):
        if kind and t.kind != kind:
            continue
        name = t.name.lower()
        if not q:
            rank = 0
        elif name == q:
            rank = 0
        elif name.startswith(q):
            rank = 1
        elif q in name:
            rank = 2
        elif q in t.label.lower() or q == (t.wikidata_id or "").lower():
            rank = 3
        elif q in t.description.lower():
            rank = 4
        else:
            continue
        ranked.append((rank, i, t))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return len(ranked), [t for _, _, t in ranked[offset:offset + limit]]
