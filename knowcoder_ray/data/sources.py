"""Readers of the automatically built corpora KnowCoder trains on, into unified Records.

- KELM (Agarwal et al. 2021; google-research-datasets/KELM-corpus): JSON lines with "triples" (lists of
  [subject, relation, object], or [subject, object, qualifier, value] quadruples for a statement's
  qualifiers), "serialized_triples" and "gen_sentence" (TEKGEN files: "sentence"). Entity types are
  resolved through P31 ("instance of" triples in the line, or an entity -> P31 table) into the library.
- UniversalNER / Pile-NER-type: a JSON array of {"conversations": [{"from": "human", "value": "Text: ..."},
  {"from": "gpt", "value": "I've read this text."}, {"from": "human", "value": "What describes X in the
  text?"}, {"from": "gpt", "value": "[\\"m1\\", ...]"}, ...], "id"}.
- InstructIE (zjunlp): {"id", "cate", "text", "relation": [{"head", "head_type", "relation", "tail",
  "tail_type"}]} per record (JSON lines or a JSON array).
- LSEE (Chen et al. 2017, acl2017submission/event-data): wiki_sentence_annotated.with_trigger.tsv, TAB
  separated: key entity, key entity, event instance id (or "negative"), sentence, then annotations
  "role,mid,start,end" (role "negative" for non-arguments) and "<type>.trigger,text,start,end".
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from knowcoder_ray.data.benchmarks import BENCHMARKS, require_benchmarks
from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention, span_of
from knowcoder_ray.schema.types import KINDS, Role, SchemaLibrary, SchemaType, to_class_name, to_role_name

INSTANCE_OF = {"instanceof", "p31"}  # normalized keys of the P31 predicate
_QUESTION = re.compile(r"^What describes (.+) in the text\?$", re.S)
_ANNOTATION_SPLIT = re.compile(r" {2,}")  # the LSEE README itself separates some annotations by spaces


class SourceError(ValueError):
    """A source record is malformed or cannot be used; the message is the quarantine reason."""


def _norm(key: str) -> str:
    return to_class_name(key).lower()


class TypeIndex:
    """Resolves a source's type label, class name or Wikidata id to a library class of one kind."""

    def __init__(self, library: SchemaLibrary) -> None:
        self.library = library
        self._keys: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        for t in library:
            for key in filter(None, (t.name, t.label, t.wikidata_id)):
                self._keys[t.kind].setdefault(_norm(key), t.name)

    def find(self, kind: str, *keys: str) -> SchemaType | None:
        """The class named by the first of `keys` (a label, class name or Wikidata id) that names one."""
        name = next((n for key in keys if key and (n := self._keys[kind].get(_norm(key)))), None)
        return self.library[name] if name else None

    def get(self, kind: str, label: str, roles: Sequence[str] = ()) -> SchemaType:
        """The library class for `label`, else a synthesized class (name from the label, no description)."""
        return self.find(kind, label) or SchemaType(to_class_name(label), kind, label=label,
                                                    roles=tuple(Role(r) for r in roles))


def as_object(payload) -> dict:
    """A JSON source record: a dict (Parquet row, JSON array element) or one JSON line. NaN, Infinity
    and numbers too large for a float (Python's reader accepts them all) are refused."""
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        raise SourceError(f"expected a JSON object, got {type(payload).__name__}")
    if (where := _non_finite(payload)) is not None:
        raise SourceError(f"non-finite number (NaN, Infinity or out of range) at {where}: not valid JSON")
    return payload


def _non_finite(value, path: str = "$") -> str | None:
    """The JSON path (e.g. $['k'][3]) of the first NaN/Infinity in `value`, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((found for k, v in items if (found := _non_finite(v, f"{path}[{k!r}]")) is not None), None)


def word_span(sentence: str, mention: str) -> tuple[int, int] | None:
    """The first occurrence of `mention` in `sentence` not inside a longer word ("C" is not found in
    "BASIC"); scripts written without spaces (no ASCII letter or digit at the mention's edges) fall back
    to the first occurrence."""
    if not mention:
        return None
    if m := re.search(r"(?<!\w)" + re.escape(mention) + r"(?!\w)", sentence):
        return m.start(), m.end()
    if not any(c.isascii() and c.isalnum() for c in (mention[0], mention[-1])):
        return span_of(sentence, mention)
    return None


def _mention(text: str, sentence: str, type_: str = "Entity") -> EntityMention:
    return EntityMention(text, type_, *(word_span(sentence, text) or (None, None)))


def _str(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{what} must be a non-empty string, got {value!r:.60}")
    return value


# ---- KELM --------------------------------------------------------------------------------------------

@dataclass
class KelmStats:
    """What a KELM line lost: mentions not in the sentence, entities without a library type, predicates
    that are not library relations/events, qualifier rows whose statement (a triple of the same subject
    and object) is not in the line."""

    not_in_sentence: int = 0
    untyped: int = 0
    unknown_predicates: int = 0
    orphan_qualifiers: int = 0


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
# KELM writes Wikidata dates as "DD Month YYYY", "00 Month YYYY" or "00 YYYY" (day/month unknown)
_KELM_DATE = re.compile(r"^(\d{1,2}) (?:(%s) )?(-?\d{1,4})$" % "|".join(_MONTHS))
_DISAMBIGUATOR = re.compile(r"^(.+?) \( [^()]+ \)$")  # "The Planets ( 1999 TV series )"


def kelm_surface(value: str, sentence: str) -> str | None:
    """How a KELM triple item appears in the sentence: itself; a normalised date as the sentence writes
    it ("01 January 1945" -> "1 January 1945", "January 1, 1945", "January 1945" or "1945"); a name
    without its disambiguator ("The Planets ( 1999 TV series )" -> "The Planets"). None if absent."""
    candidates = [value]
    if m := _KELM_DATE.match(value):
        day, month, year = int(m.group(1)), m.group(2), m.group(3).lstrip("0") or "0"
        if month and day:
            candidates += [f"{day} {month} {year}", f"{day:02d} {month} {year}", f"{month} {day}, {year}",
                           f"{month} {day} {year}"]
        if month:
            candidates.append(f"{month} {year}")
        candidates.append(year)
    if d := _DISAMBIGUATOR.match(value):
        candidates.append(d.group(1))
    return next((c for c in candidates if word_span(sentence, c) is not None), None)


def read_kelm(payload, index: TypeIndex, entity_types: Mapping[str, Sequence[str]] | None = None,
              id: str = "", stats: KelmStats | None = None) -> Record:
    """One KELM line -> a Record whose entities carry P31 types from the library, relations whose
    predicates are library relations, and events (trigger-less) for statements with qualifiers whose
    predicate is a library event. `entity_types` maps an entity label or Wikidata id to its P31 values."""
    obj = as_object(payload)
    sentence = _str(obj.get("gen_sentence") or obj.get("sentence"), "'gen_sentence' (or 'sentence')")
    triples = obj.get("triples")
    if not isinstance(triples, list) or not triples:
        raise SourceError("'triples' must be a non-empty list")
    stats = stats if stats is not None else KelmStats()
    facts, qualifiers, p31 = [], {}, {}
    for t in triples:
        if not isinstance(t, list) or len(t) not in (3, 4) or not all(isinstance(x, str) and x for x in t):
            raise SourceError(f"a triple must be 3 or 4 non-empty strings, got {t!r:.80}")
        if len(t) == 4:
            qualifiers.setdefault((t[0], t[1]), []).append((t[2], t[3]))
        elif _norm(t[1]) in INSTANCE_OF:
            p31.setdefault(t[0], []).append(t[2])
        else:
            facts.append(tuple(t))
    # a 4-item row is a qualifier (subject, object, qualifier, value) of a statement of the line; one
    # whose subject and object no triple links is malformed or orphaned: counted, its names still used
    stated = {(s, o) for s, _, o in facts}
    orphans = [(so, qv) for so, qv in qualifiers.items() if so not in stated]
    stats.orphan_qualifiers += sum(len(qv) for _, qv in orphans)
    orphan_names = [x for (s, o), qv in orphans for x in (s, o, *(v for _, v in qv))]
    entities: dict[str, EntityMention] = {}
    for name in dict.fromkeys([*p31, *(x for s, _, o in facts for x in (s, o)), *orphan_names]):
        # the first P31 value (line, then table) that is a library class
        typ = index.find("entity", *p31.get(name, ()), *(entity_types or {}).get(name, ()))
        surface = kelm_surface(name, sentence)
        if typ is None:
            stats.untyped += 1
        elif surface is None:
            stats.not_in_sentence += 1
        else:
            entities[name] = _mention(surface, sentence, typ.name)

    def mention(name: str, surface: str) -> EntityMention:
        return entities.get(name) or _mention(surface, sentence)

    relations, events = [], []
    for s, p, o in facts:
        rel, ev = index.find("relation", p), index.find("event", p)
        if ev is not None and (s, o) in qualifiers:
            args = []
            for q, v in qualifiers[(s, o)]:
                role = to_role_name(q)
                if ev.roles and ev.role(role) is None:
                    continue
                if (surface := kelm_surface(v, sentence)) is None:
                    stats.not_in_sentence += 1
                    continue
                m = mention(v, surface)
                args.append(Argument(role, m.text, m.type, m.start, m.end))
            if args:
                events.append(EventMention(ev.name, "", tuple(args)))
        elif rel is not None:
            s_text, o_text = kelm_surface(s, sentence), kelm_surface(o, sentence)
            if s_text is not None and o_text is not None:
                relations.append(RelationMention(rel.name, mention(s, s_text), mention(o, o_text)))
            else:
                stats.not_in_sentence += 1
        else:
            stats.unknown_predicates += 1
    if not (entities or relations or events):
        orphan = (f"; {sum(len(qv) for _, qv in orphans)} qualifier row(s) name no statement of the line "
                  f"(e.g. {list(orphans[0][0]) + list(orphans[0][1][0])!r:.80})") if orphans else ""
        raise SourceError("unresolved: no entity with a library P31 type, no library relation or event "
                          f"found in the sentence{orphan}")
    return Record(id, sentence, list(entities.values()), relations, events, source="kelm")


# ---- UniversalNER / Pile-NER -------------------------------------------------------------------------

@dataclass
class Example:
    """A source record and the classes its annotation covers (queried types count: an empty answer is
    a negative). `tasks` are the schema-following tasks it yields."""

    record: Record
    types: list[SchemaType]
    tasks: tuple[str, ...]


def read_universalner(payload, index: TypeIndex, id: str = "") -> Example:
    obj = as_object(payload)
    conv = obj.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        raise SourceError("'conversations' must be a list of turns")
    try:
        first = conv[0]
        if first.get("from") != "human" or not str(first.get("value", "")).startswith("Text:"):
            raise SourceError("the first turn must be the human 'Text: ...' passage")
        text = first["value"][len("Text:"):].strip()
        if len(conv) % 2:  # the passage and its acknowledgement, then question-answer pairs
            raise SourceError("questions and answers do not pair up")
        types: dict[str, SchemaType] = {}
        mentions: dict[tuple[str, str], EntityMention] = {}
        for q, a in zip(conv[2::2], conv[3::2]):
            if q.get("from") != "human" or a.get("from") != "gpt":
                raise SourceError("expected a human question followed by a gpt answer")
            if (m := _QUESTION.match(q.get("value", "").strip())) is None:
                raise SourceError(f"unrecognized question {q.get('value')!r:.80}")
            t = index.get("entity", m.group(1).strip())
            types.setdefault(t.name, t)
            try:
                answers = json.loads(a.get("value", ""))
            except json.JSONDecodeError as e:
                raise SourceError(f"answer to {q.get('value')!r:.60} is not JSON ({e}): {a.get('value')!r:.80}") from None
            if not isinstance(answers, list) or not all(isinstance(x, str) for x in answers):
                raise SourceError(f"answer is not a JSON list of strings: {a.get('value')!r:.80}")
            for ans in filter(str.strip, answers):
                mentions.setdefault((t.name, ans), _mention(ans, text, t.name))
    except (AttributeError, TypeError) as e:
        raise SourceError(f"malformed conversation: {e}") from None
    rec = Record(str(obj.get("id") or id), _str(text, "passage"), list(mentions.values()), source="universalner")
    return Example(rec, list(types.values()), ("ner",))


# ---- InstructIE --------------------------------------------------------------------------------------

def instructie_entity_type(index: TypeIndex, label) -> SchemaType | None:
    """The library entity class of an InstructIE type label: the label itself, each alternative of
    "organization/human", or the label without a trailing " type" ("astronomical object type")."""
    if not isinstance(label, str) or not label.strip():
        return None
    label = label.strip()
    candidates = [label, *(p.strip() for p in label.split("/") if p.strip())]
    candidates += [c[: -len(" type")] for c in candidates if c.lower().endswith(" type")]
    return index.find("entity", *candidates)


def read_instructie(payload, index: TypeIndex, id: str = "") -> Example:
    """An InstructIE record. The older layout also lists the entities with their types
    ("entity": [{"entity"|"name": ..., "entity_type"|"type": ...}]): they become NER annotations and type
    the relation ends that have no type of their own."""
    obj = as_object(payload)
    text = _str(obj.get("text") or obj.get("input"), "'text'")
    rels = obj.get("relation", [] if "entity" in obj else None)
    if not isinstance(rels, list):
        raise SourceError("'relation' must be a list of {head, head_type, relation, tail, tail_type}")
    ents = obj.get("entity") or []
    if not isinstance(ents, list):
        raise SourceError("'entity' must be a list of {entity, entity_type}")
    types: dict[str, SchemaType] = {}
    entities: dict[str, EntityMention] = {}
    for e in ents:
        if not isinstance(e, dict):
            raise SourceError(f"an entity must be an object, got {e!r:.60}")
        name = _str(e.get("entity") or e.get("name"), "entity name")
        label = _str(e.get("entity_type") or e.get("type"), f"type of entity {name!r:.40}")
        et = instructie_entity_type(index, label) or index.get("entity", label)
        types.setdefault(et.name, et)
        entities.setdefault(name, _mention(name, text, et.name))
    relations = []
    for r in rels:
        if not isinstance(r, dict):
            raise SourceError(f"a relation must be an object, got {r!r:.60}")
        rel = index.get("relation", _str(r.get("relation"), "'relation'"))
        types.setdefault(rel.name, rel)
        ends = []
        for end in ("head", "tail"):
            name = _str(r.get(end), f"'{end}'")
            et = instructie_entity_type(index, r.get(f"{end}_type"))
            typ = et.name if et else (entities[name].type if name in entities else "Entity")
            ends.append(_mention(name, text, typ))
        relations.append(RelationMention(rel.name, *ends))
    rec = Record(str(obj.get("id") or id), text, list(entities.values()), relations, source="instructie")
    tasks = (("ner",) if entities else ()) + (("re",) if relations or not entities else ())
    return Example(rec, list(types.values()), tasks)


# ---- LSEE --------------------------------------------------------------------------------------------

def read_lsee(payload, index: TypeIndex, id: str = "") -> Example:
    """One line of wiki_sentence_annotated(.with_trigger).tsv -> a sentence with its events: one per
    trigger annotation (a line may hold several), each with the arguments of its event type."""
    if not isinstance(payload, str):
        raise SourceError("an LSEE record is one TSV line")
    cols = payload.rstrip("\r\n").split("\t")
    if len(cols) < 4:
        raise SourceError(f"expected at least 4 TAB-separated columns, got {len(cols)}")
    instance, sentence = cols[2], _str(cols[3], "sentence")
    anns = [a for c in cols[4:] for a in _ANNOTATION_SPLIT.split(c.strip()) if a]
    triggers, args = [], []
    try:
        for ann in anns:
            head, start, end = ann.rsplit(",", 2)
            start, end = int(start), int(end)
            if not 0 <= start < end <= len(sentence):
                raise SourceError(f"span {start}:{end} outside the sentence ({len(sentence)} characters)")
            prop, comma, text = head.partition(",")
            if prop.endswith(".trigger"):
                if sentence[start:end] != text:
                    raise SourceError(f"trigger {text!r} is not at {start}:{end} of the sentence")
                triggers.append((prop[: -len(".trigger")], text, start, end))
            elif comma and prop != "negative":
                args.append((prop, sentence[start:end], start, end))
    except ValueError as e:
        raise SourceError(f"bad annotation: {e}") from None
    rid = id or f"lsee-{instance}"
    if instance == "negative":
        return Example(Record(rid, sentence, source="lsee"), [], ("ed",))
    if not triggers:
        raise SourceError("positive line without a trigger annotation (use wiki_sentence_annotated.with_trigger.tsv)")
    events, types = [], {}
    for etype, text, start, end in dict.fromkeys(triggers):
        mine = [(to_role_name(p.rsplit(".", 1)[-1]), t, s, e) for p, t, s, e in args if p.startswith(etype + ".")]
        roles = sorted({r for r, *_ in mine})
        ev = index.find("event", etype) or index.get("event", etype.rsplit(".", 1)[-1], roles)
        types.setdefault(ev.name, ev)
        arguments = tuple(Argument(r, t, "Entity", s, e) for r, t, s, e in mine)
        events.append(EventMention(ev.name, text, arguments, start, end))
    return Example(Record(rid, sentence, events=events, source="lsee"), list(types.values()), ("ed", "eae"))


# ---- the schema library ------------------------------------------------------------------------------

def benchmark_library(data_dir: str | Path) -> SchemaLibrary:
    """Every benchmark schema of ../shared/data merged into one library (first definition of a name wins)."""
    try:
        return reduce(SchemaLibrary.merged, (b.schema(str(data_dir)) for b in BENCHMARKS.values()), SchemaLibrary())
    except (FileNotFoundError, NotADirectoryError):
        require_benchmarks(str(data_dir), BENCHMARKS)  # a message naming every missing folder and its source
        raise


def library_fingerprint(library: SchemaLibrary) -> str:
    """A short hash of a library's content (part of a corpus's configuration hash)."""
    rows = sorted(library.to_rows(), key=lambda r: r["name"])
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
