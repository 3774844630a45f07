"""Readers of the real benchmark formats into unified Records.

Each reader is an iterator over Records. Labels are mapped to library class names through `label_map`
(dataset label -> class name); an unmapped label goes through `to_class_name`. A malformed line or record
is never dropped silently: it is appended to `bad` (a list of `Malformed`) with its line number and the
reason, and reading goes on.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate, chain, zip_longest
from pathlib import Path

from knowcoder_ray import storage
from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention
from knowcoder_ray.schema.types import to_class_name, to_role_name

# The exceptions a malformed record raises (RecursionError: JSON nested too deeply); anything else is a bug.
MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError)


@dataclass(frozen=True)
class Malformed:
    path: str
    line: int
    reason: str
    raw: str

    def to_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "reason": self.reason, "raw": self.raw[:2000]}


def text_lines(path: str | Path, bad: list[Malformed] | None = None) -> Iterator[tuple[int, str | None]]:
    """(line number, line) of a UTF-8 text file, a BOM opening it dropped. A line that is not UTF-8 is set
    aside in `bad` and given as None (so line-aligned files stay aligned); without `bad` it is an error."""
    with storage.open_text(str(path), "utf-8-sig", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:
                raw = line.encode("utf-8", "surrogateescape")
                reason = f"not UTF-8: byte {raw[e.start:e.start + 1]!r} at character {e.start + 1}"
                if bad is None:
                    raise ValueError(f"{path}:{lineno}: {reason}") from None
                bad.append(Malformed(str(path), lineno, reason, raw.decode("utf-8", "replace")))
                line = None
            yield lineno, line


def json_lines(path: str | Path, bad: list[Malformed] | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank UTF-8 lines of a JSON-lines file (see `text_lines`)."""
    return ((lineno, line) for lineno, line in text_lines(path, bad) if line is not None and line.strip())


def parse_json_lines(path: str, parse: Callable[[int, object], object], bad: list[Malformed]) -> Iterator:
    """`parse(line number, JSON value)` of each line of a JSON-lines file; a line that is not JSON or that
    `parse` rejects goes to `bad` with the reason."""
    for lineno, line in json_lines(path, bad):
        try:
            yield parse(lineno, json.loads(line))
        except MALFORMED as e:
            bad.append(Malformed(path, lineno, f"{type(e).__name__}: {e}", line))


def _name(label: str, label_map: Mapping[str, str] | None) -> str:
    return (label_map or {}).get(label) or to_class_name(label)


def _join(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Tokens joined by single spaces, with each token's character span."""
    starts = accumulate((len(t) + 1 for t in tokens), initial=0)
    return " ".join(tokens), [(s, s + len(t)) for s, t in zip(starts, tokens)]


def _mention(text: str, spans: list[tuple[int, int]], start: int, end: int, typ: str) -> EntityMention:
    """The mention of tokens[start:end] in the `_join`ed text; a span that is not within the tokens is an error."""
    if not (type(start) is type(end) is int and 0 <= start < end <= len(spans)):
        raise IndexError(f"token span {start!r}:{end!r} is not within the {len(spans)} tokens")
    cs, ce = spans[start][0], spans[end - 1][1]
    return EntityMention(text[cs:ce], typ, cs, ce)


# ---- BIO column files --------------------------------------------------------------------------------

def bio_chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """(label, start, end exclusive) chunks of a BIO tag sequence; an I- without a B- starts a chunk
    (the conlleval convention, as seqeval does by default)."""
    chunks, label, start = [], None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, lab = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and lab != label)
        if label is not None and (tag == "O" or begins):
            chunks.append((label, start, i))
            label = None
        if prefix in ("B", "I") and label is None:  # a chunk just ended or none was open
            label, start = lab, i
    return chunks


def read_bio(path: str | Path, *, tag_first: bool = False, source: str = "",
             label_map: Mapping[str, str] | None = None, raw_labels: bool = False,
             bad: list[Malformed] | None = None) -> Iterator[Record]:
    """CoNLL-style columns, one token a line, blank line between sentences. `tag_first` for the MIT files
    (tag TAB token); else token TAB tag (CrossNER, CoNLL-2003). `raw_labels` keeps the file's labels."""
    path, n, sentence = str(path), 0, []  # sentence: its (token, tag) pairs
    bad = [] if bad is None else bad
    lines = ((lineno, line) for lineno, line in text_lines(path, bad) if line is not None)  # None: not UTF-8
    for lineno, line in chain(lines, [(0, "")]):  # the added blank line ends the last sentence
        line = line.rstrip("\r\n")
        if not line.strip():
            if sentence:
                text, spans = _join([token for token, _ in sentence])
                ents = [_mention(text, spans, s, e, label if raw_labels else _name(label, label_map))
                        for label, s, e in bio_chunks([tag for _, tag in sentence])]
                yield Record(f"{source or Path(storage.name(path)).stem}-{n}", text, ents, source=source)
                n += 1
            sentence = []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not all(parts):
            bad.append(Malformed(path, lineno, "expected two columns (token, tag)", line))
            continue
        token, tag = parts[::-1] if tag_first else parts
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            bad.append(Malformed(path, lineno, f"bad BIO tag {tag!r}", line))
            tag = "O"
        sentence.append((token, tag))


# ---- JSON formats ------------------------------------------------------------------------------------

def read_spert_json(path: str | Path, *, source: str = "", entity_map: Mapping[str, str] | None = None,
                    relation_map: Mapping[str, str] | None = None, bad: list[Malformed]) -> Iterator[Record]:
    """SpERT JSON (CoNLL04): a list of {tokens, entities[{type,start,end}], relations[{type,head,tail}]}."""
    path = str(path)
    try:
        docs = json.loads(storage.read_bytes(path).decode("utf-8-sig"))
    except (ValueError, RecursionError) as e:  # cut, not UTF-8, not JSON: nothing of the file can be read
        raise ValueError(f"{path}: not a JSON array of sentences ({e})") from None

    def entity(ents: list[EntityMention], i: int) -> EntityMention:  # a relation end: an index into the entities
        if not (type(i) is int and 0 <= i < len(ents)):
            raise IndexError(f"relation end {i!r} is not one of the {len(ents)} entities")
        return ents[i]
    for i, d in enumerate(docs):
        try:
            text, spans = _join(d["tokens"])
            ents = [_mention(text, spans, e["start"], e["end"], _name(e["type"], entity_map)) for e in d["entities"]]
            rels = [RelationMention(_name(r["type"], relation_map), entity(ents, r["head"]), entity(ents, r["tail"]))
                    for r in d.get("relations", [])]
        except (KeyError, IndexError, TypeError) as e:
            bad.append(Malformed(path, i, f"record {i}: {type(e).__name__}: {e}", json.dumps(d)[:2000]))
            continue
        yield Record(f"{source or Path(storage.name(path)).stem}-{d.get('orig_id', i)}", text, ents, rels,
                     source=source)


def read_nyt(sent_path: str | Path, pointer_path: str | Path, *, relation_map: Mapping[str, str] | None = None,
             bad: list[Malformed]) -> Iterator[Record]:
    """NYT24 line-aligned files: tokens in .sent, token spans (end inclusive) + relation in .pointer."""
    lines = zip_longest(text_lines(sent_path, bad), text_lines(pointer_path, bad), fillvalue=(0, ""))
    for (lineno, sent), (pline, ptr) in lines:
        if not (lineno and pline):  # one file ended before the other
            there, short = (sent_path, pointer_path) if lineno else (pointer_path, sent_path)
            bad.append(Malformed(str(there), lineno or pline, f"{storage.name(str(short))} ends before line "
                                 f"{lineno or pline} of {storage.name(str(there))}: the files are not line-aligned",
                                 (sent or ptr or "").strip()))
            continue
        if sent is None or ptr is None:  # not UTF-8: set aside by text_lines
            continue
        tokens = sent.split()
        text, spans = _join(tokens)
        rels = []
        try:
            for triple in filter(None, (t.strip() for t in ptr.split("|"))):
                hs, he, ts, te, rel = triple.split()
                ends = ((int(hs), int(he) + 1), (int(ts), int(te) + 1))
                for s, e in ends:
                    if not 0 <= s < e <= len(tokens):
                        raise ValueError(f"span {s}:{e} outside {len(tokens)} tokens")
                rels.append(RelationMention(_name(rel, relation_map),
                                            *(_mention(text, spans, s, e, "Entity") for s, e in ends)))
        except ValueError as e:
            bad.append(Malformed(str(pointer_path), lineno, str(e), ptr.strip()))
            continue
        yield Record(f"nyt-{lineno - 1}", text, relations=rels, source="nyt")


def _phee_spans(slot: dict) -> list[tuple[str, int]]:
    """PHEE slot -> (text, char start) of every part; a discontinuous mention contributes each part."""
    return [(t, s) for texts, offs in zip(slot.get("text") or [], slot.get("start") or [])
            for t, s in zip(texts, offs)]


def read_phee(path: str | Path, *, event_map: Mapping[str, str] | None = None,
              bad: list[Malformed]) -> Iterator[Record]:
    """PHEE JSON lines: events with a Trigger and main arguments (Subject, Treatment, Effect, Severity)
    whose sub-arguments (Drug, Dosage, Age, ...) nest inside them; all become flat roles."""
    def record(lineno: int, d: dict) -> Record:
        context, events = d["context"], []
        for ann in d["annotations"]:
            for ev in ann["events"]:
                if not (trig := _phee_spans(ev["Trigger"])):
                    raise ValueError(f"event {ev.get('event_id')} has no trigger text")
                args = []
                for main in ("Subject", "Treatment", "Effect", "Severity"):
                    slot = ev.get(main)
                    if isinstance(slot, dict):  # the main argument, then its sub-arguments
                        subs = [(k, v) for k, v in slot.items() if isinstance(v, dict) and "text" in v]
                        args += [Argument(to_role_name(role), t, "Entity", s, s + len(t))
                                 for role, part in [(main, slot), *subs] for t, s in _phee_spans(part)]
                t, s = trig[0]
                events.append(EventMention(_name(ev["event_type"], event_map), t, tuple(args), s, s + len(t)))
        return Record(f"phee-{d.get('id', lineno)}", context, events=events, source="phee")
    return parse_json_lines(str(path), record, bad)


def read_wikievents(path: str | Path, *, event_map: Mapping[str, str] | None = None,
                    entity_map: Mapping[str, str] | None = None, bad: list[Malformed]) -> Iterator[Record]:
    """WikiEvents JSON lines (one document a line, document-level token offsets, end exclusive), split
    into one Record per sentence. An argument outside its trigger's sentence cannot be expressed in a
    sentence-level record; such arguments are reported in `bad` (reason 'cross-sentence argument')."""
    path = str(path)

    def records(lineno: int, d: dict) -> list[Record]:
        sent_tokens = [[t[0] for t in toks] for toks, _text in d["sentences"]]
        sent_of = dict(enumerate((si, k) for si, toks in enumerate(sent_tokens) for k in range(len(toks))))
        if len(sent_of) != len(d["tokens"]):
            raise ValueError(f"sentences hold {len(sent_of)} tokens, the document {len(d['tokens'])}")
        joined = [_join(s) for s in sent_tokens]

        def locate(m: dict) -> tuple[int, int, int]:  # a document token span -> (sentence, char span)
            si, k0 = sent_of[m["start"]]
            _, k1 = sent_of[m["end"] - 1]
            return si, joined[si][1][k0][0], joined[si][1][k1][1]
        mentions = {m["id"]: m for m in d["entity_mentions"]}
        ents, events = [[] for _ in joined], [[] for _ in joined]  # per sentence
        for m in d["entity_mentions"]:
            si, cs, ce = locate(m)
            ents[si].append(EntityMention(joined[si][0][cs:ce], _name(m["entity_type"], entity_map), cs, ce))
        for ev in d["event_mentions"]:
            si, ts, te = locate(ev["trigger"])
            text, args = joined[si][0], []
            for a in ev["arguments"]:
                m = mentions[a["entity_id"]]
                asi, cs, ce = locate(m)
                if asi != si:
                    bad.append(Malformed(path, lineno, "cross-sentence argument",
                                         json.dumps({"doc_id": d["doc_id"], "event": ev["id"], **a})))
                    continue
                args.append(Argument(to_role_name(a["role"]), text[cs:ce], _name(m["entity_type"], entity_map), cs, ce))
            events[si].append(EventMention(_name(ev["event_type"], event_map), text[ts:te], tuple(args), ts, te))
        return [Record(f"wikievents-{d['doc_id']}-{si}", text, ents[si], events=events[si], source="wikievents")
                for si, (text, _) in enumerate(joined)]
    return chain.from_iterable(parse_json_lines(path, records, bad))
