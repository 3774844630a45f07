"""Descriptions a user fills in for the classes Wikidata left without one (missing_descriptions.tsv)."""
from __future__ import annotations

from dataclasses import replace

from knowcoder_ray.schema.types import SchemaLibrary
from knowcoder_ray.schema.wikidata import clean


def fill_descriptions(library: SchemaLibrary, descriptions: dict[str, str]) -> tuple[SchemaLibrary, int]:
    """Set the descriptions a user wrote (keyed by class name or Wikidata id); returns (library, how many)."""
    out, n = [], 0
    for t in library:
        d = descriptions.get(t.name) or (descriptions.get(t.wikidata_id) if t.wikidata_id else None)
        if d and clean(d) != t.description:
            t, n = replace(t, description=clean(d)), n + 1
        out.append(t)
    return SchemaLibrary(out), n


def missing_descriptions_tsv(library: SchemaLibrary) -> str:
    """The types without a description, as a TSV a user fills in (last column) and passes back."""
    rows = ["name\tkind\twikidata_id\tlabel\tdescription"]
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
