"""Reading Wikidata's JSON dump format: one dump line -> one entity, and the values of its claims.

The schema build (build.py) scans the dump with these (scan.py) and assembles the library (assemble.py).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator

from knowcoder_ray.schema.dump import TRUNCATED

EVENT_ROOT = "Q1190554"  # occurrence
SUBJECT_TYPE_CONSTRAINT = "Q21503250"
VALUE_TYPE_CONSTRAINT = "Q21510865"
P_INSTANCE_OF, P_SUBCLASS_OF, P_CONSTRAINT, P_CLASS, P_EXAMPLE = "P31", "P279", "P2302", "P2308", "P1855"
LABEL_LANGS = ("en", "mul", "en-gb", "en-us", "en-ca")
RELATION_DATATYPES = ("wikibase-item", "quantity", "time", "monolingualtext")
_ID = {"item": re.compile(r"^Q[1-9][0-9]*$"), "property": re.compile(r"^P[1-9][0-9]*$")}
_ANY_ID = re.compile(r"^[A-Z][1-9][0-9]*$")


def num(eid: str) -> int:
    """Q42 -> 42 (the sort key for "lowest id first")."""
    return int(eid[1:]) if _ANY_ID.match(eid) else 1 << 62


def clean(text: str) -> str:
    """One line of text that sits safely in a class docstring."""
    text = " ".join(text.split())
    while '"""' in text:  # one pass leaves `"""` of five quotes
        text = text.replace('"""', '"')
    return text


# ---- one entity --------------------------------------------------------------------------------------

def entity_text(entity: dict, key: str) -> str:
    values = entity.get(key) or {}
    return next((clean(v["value"]) for v in map(values.get, LABEL_LANGS) if v and v.get("value")), "")


def entity_aliases(entity: dict, limit: int) -> list[str]:
    return [clean(a["value"]) for a in (entity.get("aliases") or {}).get("en", ())[:limit] if a.get("value")]


_LITERAL = {  # datavalue type -> its text (a year-only time keeps its zeros); any other type: its JSON
    "string": lambda v: v, "monolingualtext": lambda v: v["text"], "quantity": lambda v: v["amount"].lstrip("+"),
    "time": lambda v: v["time"].lstrip("+").split("T")[0],  # "+1952-03-11T00:00:00Z" -> "1952-03-11"
    "globecoordinate": lambda v: f"{v['latitude']}, {v['longitude']}",
}


def snak_value(snak: dict) -> tuple[str, str] | None:
    """('id', 'Q5') for an entity value, ('lit', text) for a literal, None for somevalue/novalue."""
    if snak.get("snaktype") != "value":
        return None
    v, t = snak["datavalue"]["value"], snak["datavalue"]["type"]
    if t != "wikibase-entityid":
        return "lit", _LITERAL.get(t, lambda v: json.dumps(v, sort_keys=True))(v)
    prefix = {"item": "Q", "property": "P", "lexeme": "L"}.get(v.get("entity-type"), "Q")
    eid = v.get("id") or f"{prefix}{v['numeric-id']}"
    if not isinstance(eid, str):
        raise Malformed(f"{snak.get('property', 'a')} value with an id that is not a string: {eid!r}")
    return "id", eid


def statements(claims: dict, pid: str) -> Iterator[dict]:
    return (st for st in claims.get(pid) or () if st.get("rank") != "deprecated")


def item_targets(claims: dict, pid: str) -> list[str]:
    """Entity ids that the (non-deprecated) statements of `pid` point to, in order, without repeats."""
    values = (snak_value(st["mainsnak"]) for st in statements(claims, pid))
    return list(dict.fromkeys(v[1] for v in values if v and v[0] == "id"))


def literal_targets(claims: dict, pid: str) -> list[tuple[str, str]]:
    """(datavalue type, value) of the statements of `pid` whose value is not an entity."""
    values = ((st["mainsnak"], snak_value(st["mainsnak"])) for st in statements(claims, pid))
    return [(snak["datavalue"]["type"], v[1]) for snak, v in values if v and v[0] == "lit"]


def qualifier_values(st: dict, pid: str) -> list[tuple[str, str]]:
    """The values of the statement's qualifiers of `pid` (somevalue/novalue left out)."""
    return [v for v in map(snak_value, (st.get("qualifiers") or {}).get(pid) or ()) if v]


def property_record(pid: str, entity: dict, claims: dict) -> dict:
    head, tail = [], []
    for st in statements(claims, P_CONSTRAINT):
        v = snak_value(st["mainsnak"])
        if v in (("id", SUBJECT_TYPE_CONSTRAINT), ("id", VALUE_TYPE_CONSTRAINT)):
            found = head if v[1] == SUBJECT_TYPE_CONSTRAINT else tail
            found += [q for k, q in qualifier_values(st, P_CLASS) if k == "id" and q not in found]
    examples = []
    for st in statements(claims, P_EXAMPLE):
        subject = snak_value(st["mainsnak"])
        objects = qualifier_values(st, pid)
        if subject and objects:
            examples.append([list(subject), list(objects[0])])
    return {"label": entity_text(entity, "labels"), "description": entity_text(entity, "descriptions"),
            "datatype": entity.get("datatype") or "", "head": head, "tail": tail, "examples": examples}


class Malformed(ValueError):
    """A dump line that is not an entity we can read."""


class Truncated(Malformed):
    """The compressed dump ends early: the marker line `dump.iter_range` adds after the last line read."""


def parse_line(raw: bytes) -> dict | None:
    """One dump line -> the entity dict, None for the array brackets and blank lines; `Malformed` else."""
    if raw.startswith(TRUNCATED):
        raise Truncated("dump truncated: " + raw[len(TRUNCATED):].decode("utf-8", "replace")
                        + "; the library holds what was read before")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"invalid UTF-8 at byte {e.start}") from None
    s = text.removeprefix("\ufeff").strip().removesuffix(",").rstrip()  # a BOM opens the first line
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
    except RecursionError:
        raise Malformed("invalid JSON: nested too deeply to decode") from None
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
