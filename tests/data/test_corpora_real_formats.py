"""The source readers on what the real KELM, UniversalNER, InstructIE and LSEE files hold (shapes taken
from the datasets' own samples): KELM dates and disambiguators, qualifier rows without their statement,
word-boundary spans, multi-question records, InstructIE's composite types and older entity layout, LSEE
lines with several triggers, NaN values."""
import json

import pytest
from corpora_helpers import UNIVERSALNER, wikidata_library

from knowcoder_ray.data.sources import (KelmStats, SourceError, TypeIndex, read_instructie, read_kelm, read_lsee,
                                        read_universalner)
from knowcoder_ray.schema.types import SchemaLibrary, SchemaType


@pytest.fixture(scope="module")
def index():
    extra = [SchemaType("TelevisionSeries", "entity", (), "Q5398426", "television series"),
             SchemaType("AstronomicalObject", "entity", (), "Q6999", "astronomical object"),
             SchemaType("ProgrammingLanguage", "entity", (), "Q9143", "programming language"),
             SchemaType("DateOfBirth", "relation", (), "P569", "date of birth", head_types=("Human",)),
             SchemaType("TimeOfDiscovery", "relation", (), "P575", "time of discovery"),
             SchemaType("Discoverer", "relation", (), "P61", "discoverer or inventor")]
    return TypeIndex(SchemaLibrary([*wikidata_library(), *extra]))


def _kelm(triples, sentence):
    return json.dumps({"triples": triples, "gen_sentence": sentence})


@pytest.mark.parametrize("date, sentence, surface", [
    ("01 January 1945", "Ada Smith was born in 1945.", "1945"),
    ("01 January 1945", "Ada Smith was born on 1 January 1945.", "1 January 1945"),
    ("01 January 1945", "Ada Smith was born on January 1, 1945.", "January 1, 1945"),
    ("00 March 1945", "Ada Smith was born in March 1945.", "March 1945"),
    ("00 1110", "Ada Smith was born in 1110.", "1110"),
    ("12 May 0980", "Ada Smith was born in 980.", "980"),
])
def test_kelm_normalised_dates_match_the_sentence(index, date, sentence, surface):
    rec = read_kelm(_kelm([["Ada Smith", "date of birth", date], ["Ada Smith", "instance of", "human"]], sentence), index)
    (rel,) = rec.relations
    assert (rel.type, rel.head.text, rel.tail.text) == ("DateOfBirth", "Ada Smith", surface)
    assert sentence[rel.tail.start:rel.tail.end] == surface


def test_kelm_names_with_disambiguators_are_found(index):
    line = _kelm([["The Planets ( 1999 TV series )", "instance of", "television series"],
                  ["Gustav Holst ( composer )", "instance of", "human"],
                  ["Gustav Holst ( composer )", "employer", "The Planets ( 1999 TV series )"]],
                 "The Planets is a 1999 TV series about Gustav Holst.")
    rec = read_kelm(line, index)
    assert [(e.type, e.text) for e in rec.entities] == [("TelevisionSeries", "The Planets"), ("Human", "Gustav Holst")]
    assert [(r.head.text, r.tail.text) for r in rec.relations] == [("Gustav Holst", "The Planets")]
    assert all(rec.text[e.start:e.end] == e.text for e in rec.entities)


def test_kelm_qualifier_rows_without_their_statement_are_counted_and_still_used(index):
    stats = KelmStats()
    line = _kelm([["Gzim Istrefi", "Carlstad United BK", "start time", "2010"],  # no statement links the two
                  ["Gzim Istrefi", "instance of", "human"], ["Carlstad United BK", "instance of", "sports club"]],
                 "Gzim Istrefi joined Carlstad United BK in 2010.")
    rec = read_kelm(line, index, stats=stats)
    assert stats.orphan_qualifiers == 1
    assert [(e.type, e.text) for e in rec.entities] == [("Human", "Gzim Istrefi"), ("SportsClub", "Carlstad United BK")]
    # a malformed 4-item row (a triple with an extra item) that names nothing usable: quarantined with the reason
    with pytest.raises(SourceError, match="qualifier row"):
        read_kelm(_kelm([["Nobody", "date of birth", "1945", "oops"]], "Nobody was born in 1945."), index,
                  stats=stats)
    assert stats.orphan_qualifiers == 2


def test_kelm_nan_is_refused(index):
    with pytest.raises(SourceError, match="non-finite"):
        read_kelm('{"triples": [["a", "b", "c"]], "gen_sentence": "a c", "score": NaN}', index)


def _uner(text, qa):
    conv = [{"from": "human", "value": f"Text: {text}"}, {"from": "gpt", "value": "I've read this text."}]
    for q, a in qa:
        conv += [{"from": "human", "value": f"What describes {q} in the text?"}, {"from": "gpt", "value": json.dumps(a)}]
    return {"conversations": conv, "id": "x"}


def test_universalner_spans_are_whole_words(index):
    text = "BASIC came before C, and C++ after it; Cobol is not C#."
    ex = read_universalner(_uner(text, [("programming language", ["C", "C++", "C#", "BASIC", "Co"])]), index)
    spans = {e.text: (e.start, e.end) for e in ex.record.entities}
    assert text[slice(*spans["C"])] == "C" and spans["C"][0] == text.index(" C,") + 1
    assert spans["C++"][0] == text.index("C++") and spans["C#"][0] == text.index("C#")
    assert spans["Co"] == (None, None)  # only inside "Cobol": not a mention of the text
    assert all(e.type == "ProgrammingLanguage" for e in ex.record.entities)


def test_universalner_multi_question_records(index):
    records = json.loads(UNIVERSALNER.read_text())
    rec = records[0]
    questions = [t["value"] for t in rec["conversations"][2::2]]
    answers = [json.loads(t["value"]) for t in rec["conversations"][3::2]]
    assert len(questions) > 1
    ex = read_universalner(rec, index)
    assert len(ex.types) == len(questions)
    got = {}
    for e in ex.record.entities:
        got.setdefault(e.type, []).append(e.text)
    for t, a in zip(ex.types, answers):
        assert got.get(t.name, []) == [x for x in dict.fromkeys(a) if x.strip()], (t.name, a)
    # an empty answer is a negative for its type: the type is listed, no mention
    ex = read_universalner(_uner("Ada met Bob.", [("person", ["Ada", "Bob"]), ("country", []), ("tv show", [])]), index)
    assert [t.name for t in ex.types] == ["Person", "Country", "TvShow"]
    assert [(e.type, e.text, e.start) for e in ex.record.entities] == [("Person", "Ada", 0), ("Person", "Bob", 8)]


def test_instructie_composite_and_suffixed_types_resolve(index):
    rec = {"id": "1", "cate": "Astronomy", "text": "NGC1313 was discovered by James Dunlop on September 27, 1826.",
           "relation": [{"head": "NGC1313", "head_type": "astronomical object type", "relation": "discoverer or inventor",
                         "tail": "James Dunlop", "tail_type": "organization/human"},
                        {"head": "NGC1313", "head_type": "astronomical object type", "relation": "time of discovery",
                         "tail": "September 27, 1826", "tail_type": "time"}]}
    ex = read_instructie(rec, index)
    ends = [(r.head.type, r.tail.type) for r in ex.record.relations]
    assert ends == [("AstronomicalObject", "Organization"), ("AstronomicalObject", "Entity")]
    rec["relation"][0]["tail_type"] = "human/organization"
    assert read_instructie(rec, index).record.relations[0].tail.type == "Human"


def test_instructie_older_layout_entity_list_is_read(index):
    rec = {"id": "2", "cate": "Person", "input": "Gzim Istrefi plays for Carlstad United BK.",
           "entity": [{"entity": "Gzim Istrefi", "entity_type": "human"},
                      {"entity": "Carlstad United BK", "entity_type": "association football club"}],
           "relation": [{"head": "Gzim Istrefi", "relation": "member of sports team", "tail": "Carlstad United BK"}]}
    ex = read_instructie(rec, index)
    assert [(e.type, e.text) for e in ex.record.entities] == [("Human", "Gzim Istrefi"),
                                                              ("AssociationFootballClub", "Carlstad United BK")]
    r = ex.record.relations[0]
    assert (r.type, r.head.type, r.tail.type) == ("MemberOfSportsTeam", "Human", "AssociationFootballClub")
    assert set(ex.tasks) == {"ner", "re"} and {"Human", "AssociationFootballClub", "MemberOfSportsTeam"} <= {t.name for t in ex.types}
    with pytest.raises(SourceError, match="non-finite"):
        read_instructie(json.dumps(rec).replace('"Person"', "NaN"), index)


def test_lsee_line_with_several_triggers_keeps_all(index):
    sentence = "Thomas Lincoln married Nancy Hanks and later divorced her."
    cols = ["m.1", "m.2", "m.3", sentence, "people.marriage.spouse,m.2,23,34", "people.marriage.spouse,m.1,0,14",
            "people.marriage.trigger,married,15,22", "people.divorce.trigger,divorced,45,53",
            "people.divorce.spouse,m.2,23,34"]
    ex = read_lsee("\t".join(cols), index)
    events = [(e.type, e.trigger, e.start, sorted((a.role, a.text) for a in e.arguments)) for e in ex.record.events]
    assert [e[:3] for e in events] == [("Marriage", "married", 15), ("Divorce", "divorced", 45)]
    assert events[0][3] == [("spouse", "Nancy Hanks"), ("spouse", "Thomas Lincoln")]
    assert events[1][3] == [("spouse", "Nancy Hanks")]
    assert [t.name for t in ex.types] == ["Marriage", "Divorce"]
