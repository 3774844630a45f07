"""Readers of the KELM, UniversalNER, InstructIE and LSEE formats on fixtures in their true field layout."""
import json

import pytest
from corpora_helpers import INSTRUCTIE, KELM, KELM_TYPES, LSEE, UNIVERSALNER, wikidata_library

from knowcoder_ray.data.sources import (KelmStats, SourceError, TypeIndex, benchmark_library, read_instructie,
                                        read_kelm, read_lsee, read_universalner)
from knowcoder_ray.data.understanding import load_entity_types
from knowcoder_ray.schema.table import load_library


@pytest.fixture(scope="module")
def index():
    return TypeIndex(wikidata_library())


def test_type_index_resolves_ids_labels_and_class_names(index):
    assert index.find("entity", "Q5").name == "Human"
    assert index.find("entity", "human").name == "Human"
    assert index.find("entity", "association football club").name == "AssociationFootballClub"
    assert index.find("relation", "P54").name == index.find("relation", "member of sports team").name
    assert index.find("entity", "member of sports team") is None  # kinds are kept apart
    made = index.get("entity", "tv show")
    assert (made.name, made.label, made.description) == ("TvShow", "tv show", "")


def test_kelm_types_through_p31_relations_and_qualifier_events(index):
    lines = KELM.read_text().splitlines()
    rec = read_kelm(lines[0], index, id="k0")
    assert [(e.type, e.text) for e in rec.entities] == [("Human", "Gzim Istrefi"),
                                                          ("AssociationFootballClub", "Carlstad United BK")]
    assert [(r.type, r.head.type, r.head.text, r.tail.type, r.tail.text) for r in rec.relations] == [
        ("MemberOfSportsTeam", "Human", "Gzim Istrefi", "AssociationFootballClub", "Carlstad United BK")]
    assert all(rec.text[e.start:e.end] == e.text for e in rec.entities)
    ev = read_kelm(lines[2], index).events
    assert [(e.type, e.trigger, [(a.role, a.text) for a in e.arguments]) for e in ev] == [
        ("AdjacentStation", "", [("connecting_line", "Seoul Subway Line 2"), ("towards", "Gangnam station"),
                                 ("direction", "Inner Ring Road")])]


def test_kelm_entity_type_table_and_what_is_lost(index):
    line = KELM.read_text().splitlines()[3]
    stats = KelmStats()
    untyped = read_kelm(line, index, stats=stats)  # no P31 in the line: relations between plain entities
    assert untyped.entities == [] and stats.untyped == 3
    assert [(r.type, r.head.type, r.tail.type) for r in untyped.relations] == [
        ("Employer", "Entity", "Entity"), ("CountryOfCitizenship", "Entity", "Entity")]
    table = load_entity_types(str(KELM_TYPES))
    stats = KelmStats()
    rec = read_kelm(line, index, table, stats=stats)
    assert [(e.type, e.text) for e in rec.entities] == [("Human", "Michel Roux Jr."), ("Restaurant", "Le Gavroche"),
                                                          ("Country", "United Kingdom")]
    assert [r.type for r in rec.relations] == ["Employer", "CountryOfCitizenship"]
    assert stats.untyped == 0


@pytest.mark.parametrize("line,reason", [(4, "unresolved"), (5, "3 or 4 non-empty strings"), (6, "Unterminated")])
def test_kelm_malformed_lines_say_why(index, line, reason):
    with pytest.raises(ValueError, match=reason):
        read_kelm(KELM.read_text().splitlines()[line], index)


def test_universalner_conversations(index):
    data = json.loads(UNIVERSALNER.read_text())
    ex = read_universalner(data[0], index)
    assert ex.record.id == "ner_0" and ex.tasks == ("ner",)
    assert [t.name for t in ex.types] == ["TvShow", "Person", "Nationality"]  # the empty answer is a negative
    assert [(e.type, e.text) for e in ex.record.entities] == [
        ("TvShow", "Professional Master Chef"), ("Person", "Michel Roux Junior"), ("Person", "Monica Galetti")]
    assert ex.record.text.startswith("I enjoyed") and all(
        ex.record.text[e.start:e.end] == e.text for e in ex.record.entities)
    with pytest.raises(SourceError, match="not JSON"):
        read_universalner(data[2], index)
    with pytest.raises(SourceError, match="unrecognized question"):
        read_universalner(data[3], index)


def test_instructie_records(index):
    lines = INSTRUCTIE.read_text().splitlines()
    ex = read_instructie(lines[0], index)
    assert ex.tasks == ("re",) and ex.record.id.startswith("841ef2af")
    assert [(r.type, r.head.text, r.tail.text) for r in ex.record.relations] == [
        ("TimeOfDiscovery", "NGC1313", "September 27, 1826"), ("DiscovererOrInventor", "NGC1313", "James Dunlop"),
        ("Of", "NGC1313", "Reticulum")]
    assert read_instructie(lines[2], index).record.relations == []
    with pytest.raises(SourceError, match="'relation' must be a list"):
        read_instructie(lines[3], index)


def test_lsee_tsv_lines(index):
    lines = LSEE.read_text().splitlines()
    ex = read_lsee(lines[0], index)
    (ev,) = ex.record.events
    assert (ev.type, ev.trigger, ev.start, ev.end) == ("Leadership", "executive", 27, 36)
    assert sorted((a.role, a.text) for a in ev.arguments) == [("organization", "Perfetti Van Melle"),
                                                              ("person", "Sameer Suneja")]
    assert ex.types[0].label == "leadership" and {r.name for r in ex.types[0].roles} == {"organization", "person"}
    neg = read_lsee(lines[1], index)
    assert neg.record.events == [] and neg.tasks == ("ed",)
    assert [a.role for a in read_lsee(lines[2], index).record.events[0].arguments] == ["spouse", "spouse", "from"]  # keyword roles as released
    with pytest.raises(SourceError, match="without a trigger"):
        read_lsee(lines[4], index)
    with pytest.raises(SourceError, match="outside the sentence"):
        read_lsee(lines[5], index)


def test_library_sources(tmp_path, data_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lib = wikidata_library()
    pq.write_table(pa.Table.from_pylist(lib.to_rows()), tmp_path / "lib.parquet")
    assert load_library(str(tmp_path / "lib.parquet")) == lib
    merged = benchmark_library(data_dir)
    assert {"Person", "WorkFor", "AdverseEvent", "PersonPlaceOfBirth"} <= set(merged.names())
    with pytest.raises(ValueError, match="Entities.py"):
        load_library(str(tmp_path))
    from knowcoder_ray.schema.pyfile import write_pyfiles

    write_pyfiles(lib, str(tmp_path / "py"))  # the released layout, read back with ast
    assert load_library(str(tmp_path / "py")) == lib


def test_a_data_folder_that_is_a_file_names_the_missing_benchmarks(tmp_path):
    """Was pyarrow's '[Errno 20] Failed to open local file '<file>/crossner/ai/test.txt'... Not a directory'."""
    (tmp_path / "data.txt").write_text("not a folder")
    with pytest.raises(FileNotFoundError, match=f"^benchmark data missing under {tmp_path}/data.txt"):
        benchmark_library(tmp_path / "data.txt")
