"""Shared helpers of the corpus and training tests: fixture paths, a small Wikidata-style library, parse-back
checks, and a small real corpus of CoNLL04 prompts."""
from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pyarrow.parquet as pq

from knowcoder_ray import storage
from knowcoder_ray.codec.parse import Parser
from knowcoder_ray.codec.render import render_output, render_prompt
from knowcoder_ray.data.benchmarks import load_benchmark
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import Role, SchemaLibrary, SchemaType

FIXTURES = Path(__file__).parent / "fixtures"
KELM = FIXTURES / "kelm_generated_corpus.jsonl"
KELM_TYPES = FIXTURES / "kelm_entity_types.jsonl"
UNIVERSALNER = FIXTURES / "universalner_pile_ner_type.json"
INSTRUCTIE = FIXTURES / "instructie_train_en.json"
LSEE = FIXTURES / "lsee_wiki_sentence_annotated.with_trigger.tsv"


def wikidata_library() -> SchemaLibrary:
    """The KELM fixture's classes, with Wikidata ids and labels as the released library has them."""
    e, r = "entity", "relation"
    return SchemaLibrary([
        SchemaType("Human", e, (), "Q5", "human", "Any member of Homo sapiens.", ("Douglas Adams",)),
        SchemaType("Organization", e, (), "Q43229", "organization", "A social entity with a collective goal."),
        SchemaType("SportsClub", e, ("Organization",), "Q847017", "sports club"),
        SchemaType("AssociationFootballClub", e, ("SportsClub",), "Q476028", "association football club"),
        SchemaType("Restaurant", e, ("Organization",), "Q11707", "restaurant"),
        SchemaType("Country", e, (), "Q6256", "country"),
        SchemaType("Station", e, (), "Q12819564", "station"),
        SchemaType("MetroStation", e, ("Station",), "Q928830", "metro station"),
        SchemaType("MemberOfSportsTeam", r, (), "P54", "member of sports team", head_types=("Human",),
                   tail_types=("SportsClub",)),
        SchemaType("Employer", r, (), "P108", "employer", head_types=("Human",), tail_types=("Organization",)),
        SchemaType("CountryOfCitizenship", r, (), "P27", "country of citizenship", head_types=("Human",),
                   tail_types=("Country",)),
        SchemaType("AdjacentStation", "event", (), "P197", "adjacent station",
                   roles=(Role("connecting_line"), Role("towards"), Role("direction"))),
    ])


def annotations(task: str, record: Record) -> list[tuple]:
    """The comparable content of a record for one task (what the codec must carry)."""
    if task == "ner":
        return [(e.type, e.text) for e in record.entities]
    if task == "re":
        return [(r.type, r.head.text, r.tail.text) for r in record.relations]
    if task == "ed":
        return [(e.type, e.trigger) for e in record.events]
    return [(e.type, e.trigger, tuple(sorted((a.role, a.text) for a in e.arguments))) for e in record.events]


def parse_back(task: str, output: str, types: list[SchemaType], library: SchemaLibrary | None = None) -> Record:
    """Read an output with the codec; it must be read cleanly (no errors, no unknown classes)."""
    res = Parser.for_types(task, types, library).parse(output)
    assert not res.errors and not res.hallucinated and not res.truncated, (output, res)
    return res.to_record("parsed", "")


def trigger_less_events(code: str) -> list[tuple]:
    """(type, ((role, entity type, text), ...)) of the trigger-less event items of an instance code,
    read with `ast` (the codec's event parser expects a trigger, which KELM events do not have)."""
    tree = ast.parse(code)
    results = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "results"][0]
    out = []
    for call in results.elts:
        args = tuple((kw.arg, v.func.id, v.args[0].value) for kw in call.keywords for v in kw.value.elts)
        out.append((call.func.id, args))
    return out


TRAIN_SEQ_LEN = 1024  # the training tests' sequence length


def conll04_pairs(data_dir, split: str = "test") -> list[tuple[str, str]]:
    """A small real corpus: KnowCoder NER and RE prompts with their outputs for CoNLL04 sentences."""
    records, library = load_benchmark("conll04", data_dir, split)
    ents, rels = library.of_kind("entity"), library.of_kind("relation")
    return ([(render_prompt("ner", ents, r.text), render_output("ner", r)) for r in records]
            + [(render_prompt("re", rels, r.text, library=library), render_output("re", r)) for r in records])


def read_rows(out: str) -> list[dict]:
    """All rows of a corpus written by `run`, in shard order (small corpora)."""
    manifest = json.loads(storage.read_bytes(storage.join(out, "manifest.json")))
    rows: list[dict] = []
    for m in manifest["shards"]:
        data = storage.read_bytes(storage.join(out, m["data"]))
        if m["data"].endswith(".parquet"):
            rows += pq.read_table(io.BytesIO(data)).to_pylist()
        else:
            rows += [json.loads(line) for line in data.split(b"\n") if line]  # not splitlines: U+2028 is data
    return rows
