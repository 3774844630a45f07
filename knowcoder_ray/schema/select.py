"""Choosing a slice of a library: by class names, Wikidata ids or labels, or by the types a corpus uses."""
from __future__ import annotations

import io
import json
from collections.abc import Iterable

from knowcoder_ray.schema.types import SchemaLibrary, to_class_name


def select(library: SchemaLibrary, wanted: Iterable[str]) -> tuple[SchemaLibrary, list[str]]:
    """`SchemaLibrary.select` by names, Wikidata ids or labels: (sub-library, the ones matching nothing)."""
    last_first = list(library)[::-1]  # so that the first type with a label keeps it
    by_label = {t.label.casefold(): t.name for t in last_first}
    by_class = {to_class_name(t.label).casefold(): t.name for t in last_first}
    found, missing = {}, []
    for w in wanted:
        t = library.get(w) or library.by_wikidata_id(w)
        name = t.name if t else by_label.get(w.casefold()) or by_class.get(to_class_name(w).casefold())
        if name:
            found[name] = None
        else:
            missing.append(w)
    return library.select(found), missing


def corpus_types(uris: Iterable[str]) -> tuple[set[str], int]:
    """The type names a corpus of Record JSONL files uses (entities, relations, events, arguments), and the
    number of lines that are not records (reported by the caller)."""
    from knowcoder_ray.records import Record
    from knowcoder_ray.storage import filesystem

    types: set[str] = set()
    bad = 0
    for uri in uris:
        fs, path = filesystem(uri)
        with io.TextIOWrapper(fs.open_input_stream(path, compression="detect"), errors="replace", newline="\n") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    r = Record.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError, RecursionError):
                    bad += 1
                    continue
                types.update(e.type for e in r.entities)
                types.update(t for rel in r.relations for t in (rel.type, rel.head.type, rel.tail.type))
                types.update(t for ev in r.events for t in (ev.type, *(a.type for a in ev.arguments)))
    types.discard("Entity")
    return types, bad
