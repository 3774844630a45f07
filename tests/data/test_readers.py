"""Readers of the real formats: counts from SOURCE.md, offsets, and malformed input set aside."""
import json

import pytest

from knowcoder_ray.data.benchmarks import load_benchmark
from knowcoder_ray.data.readers import bio_chunks, read_bio, read_phee, read_spert_json

EXPECTED = {  # (sentences, entities, relations, events) of each test file, from ../shared/data SOURCE.md
    "crossner_ai": (431, 1809, 0, 0), "crossner_literature": (416, 2266, 0, 0), "crossner_music": (465, 3336, 0, 0),
    "crossner_politics": (651, 4209, 0, 0), "crossner_science": (543, 3089, 0, 0), "conll2003": (3453, 5628, 0, 0),
    "mit_restaurant": (1521, 3151, 0, 0), "mit_movie_trivia10k13": (1953, 5686, 0, 0), "conll04": (288, 1079, 422, 0),
    "nyt": (5000, 0, 8616, 0), "phee": (968, 0, 0, 1010), "wikievents": (492, 2673, 0, 365),
}


def test_counts_and_offsets_match_the_sources(data_dir):
    for name, expected in EXPECTED.items():
        bad = []
        records, schema = load_benchmark(name, data_dir, bad=bad)
        got = (len(records), sum(len(r.entities) for r in records), sum(len(r.relations) for r in records),
               sum(len(r.events) for r in records))
        assert got == expected, name
        for r in records:
            for m in [*r.entities, *(x for rel in r.relations for x in (rel.head, rel.tail)),
                      *(a for e in r.events for a in e.arguments)]:
                assert r.text[m.start:m.end] == m.text, (name, r.id, m)
            for e in r.events:
                assert r.text[e.start:e.end] == e.trigger
        used = {e.type for r in records for e in r.entities} | {x.type for r in records for x in r.relations} \
            | {e.type for r in records for e in r.events}
        if name != "wikievents":  # wikievents entity mentions are typed by KAIROS, its events are in the schema
            assert used <= set(schema.names()), (name, used - set(schema.names()))
        assert not [b for b in bad if b.reason != "cross-sentence argument"]
    bad = []
    load_benchmark("wikievents", data_dir, bad=bad)
    assert len(bad) == 3  # 566 arguments in SOURCE.md; 3 lie outside their trigger's sentence


def test_bio_chunks_conlleval_convention():
    assert bio_chunks(["B-a", "I-a", "O", "I-b", "I-b", "B-b", "I-a"]) == [("a", 0, 2), ("b", 3, 5), ("b", 5, 6), ("a", 6, 7)]


def test_malformed_lines_are_set_aside_with_line_numbers(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("Ann\tB-person\nLee\tI-person\nbroken-line-without-tag\nvisits\tO\nRome\tX-location\n\nOk\tO\n")
    bad = []
    records = list(read_bio(p, bad=bad))
    assert [r.text for r in records] == ["Ann Lee visits Rome", "Ok"]
    assert [(b.line, b.reason) for b in bad] == [(3, "expected two columns (token, tag)"), (5, "bad BIO tag 'X-location'")]
    assert [e.text for e in records[0].entities] == ["Ann Lee"]


def test_malformed_json_records_are_set_aside(tmp_path):
    p = tmp_path / "spert.json"
    p.write_text(json.dumps([{"tokens": ["A", "b"], "entities": [{"type": "Peop", "start": 0, "end": 1}], "relations": []},
                             {"tokens": ["x"], "entities": [], "relations": [{"type": "Kill", "head": 0, "tail": 3}]}]))
    bad = []
    assert len(list(read_spert_json(p, bad=bad))) == 1 and bad[0].line == 1 and "IndexError" in bad[0].reason
    p = tmp_path / "phee.json"
    p.write_text('{"id": "1", "context": "x", "annotations": [{"events": [{"event_type": "A", "Trigger": {}}]}]}\nnot json\n'
                 + '{"id": ' + "[" * 50_000 + "]" * 50_000 + "}\n")  # the last: too deep for Python's decoder
    bad = []
    assert list(read_phee(p, bad=bad)) == [] and [b.line for b in bad] == [1, 2, 3]
    assert bad[2].reason.startswith("RecursionError")


def test_records_benchmark_reads_unified_jsonl_and_sets_aside_bad_lines(tmp_path):
    from knowcoder_ray.data.benchmarks import get_benchmark
    from knowcoder_ray.records import EntityMention, Record, RelationMention

    good = Record("a", "Ann lives in Rome.", [EntityMention("Ann", "Person"), EntityMention("Rome", "City")],
                  [RelationMention("LiveIn", EntityMention("Ann", "Person"), EntityMention("Rome", "City"))])
    p = tmp_path / "recs.jsonl"
    p.write_text(json.dumps(good.to_dict()) + "\n{\"id\": 1}\n")
    bad = []
    records, schema = load_benchmark(f"records:{p}", tmp_path, bad=bad)
    assert records == [good] and [b.line for b in bad] == [2]
    assert get_benchmark(f"records:{p}").tasks == ("ner", "re")
    assert schema["LiveIn"].head_types == ("Person",) and schema["City"].kind == "entity"


def test_nyt_files_that_are_not_line_aligned_lose_no_line_silently(tmp_path):
    """A .sent line without its .pointer line (or the reverse) was dropped without a word (zip)."""
    from knowcoder_ray.data.readers import read_nyt

    (tmp_path / "t.sent").write_text("Ann lives in Rome .\nBob works at Acme .\nNo pointer here .\n")
    (tmp_path / "t.pointer").write_text("0 0 3 3 /people/person/place_lived\n0 0 3 3 /business/person/company\n")
    bad = []
    assert [r.text for r in read_nyt(tmp_path / "t.sent", tmp_path / "t.pointer", bad=bad)] == [
        "Ann lives in Rome .", "Bob works at Acme ."]
    assert [(b.line, b.reason) for b in bad] == [(3, "t.pointer ends before line 3 of t.sent: the files are not "
                                                     "line-aligned")]
    (tmp_path / "t.pointer").write_text("\n\n\n0 0 1 1 /people/person/nationality\n")
    bad = []
    assert len(list(read_nyt(tmp_path / "t.sent", tmp_path / "t.pointer", bad=bad))) == 3
    assert [(b.line, b.path) for b in bad] == [(4, str(tmp_path / "t.pointer"))]


@pytest.mark.parametrize("entity, relation", [
    ({"type": "Peop", "start": -2, "end": 1}, None), ({"type": "Peop", "start": 2, "end": 1}, None),
    ({"type": "Peop", "start": 1, "end": 1}, None), ({"type": "Peop", "start": True, "end": 2}, None),
    ({"type": "Peop", "start": 0, "end": 9}, None), (None, {"type": "Kill", "head": -1, "tail": 0}),
    (None, {"type": "Kill", "head": 0, "tail": False}),
])
def test_spert_spans_and_relation_ends_out_of_range_are_set_aside(entity, relation, tmp_path):
    """Before, a negative or reversed token span gave an empty or wrong mention ('' of type Person) and a
    negative relation end named the last entity, with nothing set aside."""
    good = {"tokens": ["Ann", "met", "Bob"], "entities": [{"type": "Peop", "start": 0, "end": 1},
                                                         {"type": "Peop", "start": 2, "end": 3}], "relations": []}
    broken = json.loads(json.dumps(good))
    broken["entities"] += [entity] if entity else []
    broken["relations"] += [relation] if relation else []
    p = tmp_path / "spert.json"
    p.write_text(json.dumps([good, broken]))
    bad = []
    assert [[e.text for e in r.entities] for r in read_spert_json(p, bad=bad)] == [["Ann", "Bob"]]
    assert [b.line for b in bad] == [1]


def test_benchmark_text_files_with_a_bom_or_a_bad_byte(tmp_path):
    """A BOM opening a benchmark file is not part of its first token or record; a line that is not UTF-8 is set
    aside with its line number (before: a UnicodeDecodeError that named no file ended the whole read)."""
    from knowcoder_ray.data.readers import json_lines, read_nyt

    p = tmp_path / "bio.txt"
    p.write_bytes(b"\xef\xbb\xbfAnn\tB-person\nsaw\tO\nCaf\xe9\tB-location\n\nOk\tO\n")
    bad = []
    assert [(r.text, [e.text for e in r.entities]) for r in read_bio(p, bad=bad)] == [("Ann saw", ["Ann"]), ("Ok", [])]
    assert [(b.line, b.reason[:10]) for b in bad] == [(3, "not UTF-8:")]
    p = tmp_path / "phee.json"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"b": "\xff"}\n{"c": 3}\n')
    bad = []
    assert list(json_lines(p, bad)) == [(1, '{"a": 1}\n'), (3, '{"c": 3}\n')] and [b.line for b in bad] == [2]
    (tmp_path / "t.sent").write_bytes(b"\xef\xbb\xbfAnn lives in Rome .\nB\xffb is here .\nOk .\n")
    (tmp_path / "t.pointer").write_bytes(b"\xef\xbb\xbf0 0 3 3 /people/person/place_lived\n\n\n")
    bad = []
    assert [r.text for r in read_nyt(tmp_path / "t.sent", tmp_path / "t.pointer", bad=bad)] == [
        "Ann lives in Rome .", "Ok ."]
    assert [b.line for b in bad] == [2]
    p = tmp_path / "spert.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"tokens": ["A"], "entities": [], "relations": []}]).encode())
    assert [r.text for r in read_spert_json(p, bad=[])] == ["A"]


def test_a_malformed_wikievents_line_is_set_aside_by_the_schema_scan_too(data_dir, tmp_path):
    """The schema's scan for event types the ontology lacks read every line itself: a line the reader sets
    aside stopped it (a KeyError/TypeError traceback, or a JSON error naming no file)."""
    import shutil

    (tmp_path / "wikievents").mkdir()
    for name in ("dev.jsonl", "test.jsonl", "event_role_KAIROS.json"):
        shutil.copy(data_dir / "wikievents" / name, tmp_path / "wikievents" / name)
    with open(tmp_path / "wikievents" / "dev.jsonl", "a") as f:
        f.write('not json\n{"doc_id": "x"}\n{"doc_id": "y", "event_mentions": null}\n')
    bad = []
    records, schema = load_benchmark("wikievents", tmp_path, "dev", bad)
    assert (records, schema) == load_benchmark("wikievents", data_dir, "dev")
    assert len([b for b in bad if b.reason != "cross-sentence argument"]) == 3


def test_a_spert_file_that_is_not_json_is_named(data_dir, tmp_path):
    """A cut CoNLL04 file said only 'Expecting value: line 1 column 474145 (char 474144)'."""
    import shutil

    shutil.copytree(data_dir / "conll04", tmp_path / "conll04")
    path = tmp_path / "conll04" / "conll04_train.json"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match=f"^{path}: not a JSON array of sentences \\(Expecting"):
        load_benchmark("conll04", tmp_path, "train")
