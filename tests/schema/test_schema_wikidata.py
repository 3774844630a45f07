"""The Wikidata schema builder on a dump in the real format (tests/fixtures/wikidata_dump.json.bz2, made by
tests/fixtures/wikidata_fixture.py): streaming reader, taxonomy, constraints, names, descriptions,
roles, malformed lines, selection, Parquet and .py round trips, the CLI."""
import bz2
import gzip
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from knowcoder_ray import storage
from knowcoder_ray.schema import Role, SchemaLibrary, SchemaType, is_class_name
from knowcoder_ray.schema import dump, pyfile, table
from knowcoder_ray.schema.assemble import dedupe_class_names
from knowcoder_ray.schema.build import BuildConfig, build
from knowcoder_ray.schema.descriptions import fill_descriptions, missing_descriptions_tsv, parse_descriptions_tsv
from knowcoder_ray.schema.select import corpus_types, select

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DUMP = FIXTURES / "wikidata_dump.json.bz2"
sys.path.insert(0, str(FIXTURES))
import wikidata_fixture as gen  # noqa: E402  (the generator of the committed dump)


@pytest.fixture(scope="module")
def raw_lines() -> list[bytes]:
    data = bz2.decompress(DUMP.read_bytes())
    assert data.startswith(b"[\n") and data.endswith(b"\n]\n")
    return data.split(b"\n")[:-1]


@pytest.fixture(scope="module")
def plain(tmp_path_factory, raw_lines) -> Path:
    p = tmp_path_factory.mktemp("dump") / "wikidata_dump.json"
    p.write_bytes(b"\n".join(raw_lines) + b"\n")
    return p


@pytest.fixture(scope="module")
def built(ray_cluster):
    return build(str(DUMP), BuildConfig(), use_ray=True)


@pytest.fixture(scope="module")
def lib(built) -> SchemaLibrary:
    return built.library


def test_fixture_is_current_and_small(raw_lines):
    """The committed dump is what the generator writes (regenerate with the script after changing it)."""
    assert raw_lines == gen.dump_bytes(gen.entities()).split(b"\n")[:-1]
    assert DUMP.stat().st_size < 100_000 and 250 < len(raw_lines) < 400


def test_reader_streams_ranges_and_compressed_forms(ray_cluster, tmp_path, plain, raw_lines):
    gz = tmp_path / "d.json.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, gz, DUMP):
        assert [line for _, _, line in dump.iter_lines(str(path))] == raw_lines
    ranges = dump.byte_ranges(str(plain), 4, min_bytes=1)
    assert len(ranges) == 4 and dump.byte_ranges(str(DUMP), 4, min_bytes=1) == [(0, float("inf"))]
    with pytest.raises(ValueError, match="only be read as one stream"):  # a range of a compressed dump
        next(dump.iter_range(str(gz), *ranges[1]))
    size = plain.stat().st_size  # ranges are capped in size, whatever the parallelism: bounded task memory
    capped = dump.byte_ranges(str(plain), 1, min_bytes=1, max_bytes=size // 3 - 1)
    assert len(capped) == 4 and max(min(e, size) - s for s, e in capped) <= size // 3 - 1
    # through Ray Data: 4 byte ranges read in parallel, positions -> global line numbers
    rows = dump.read_dump(str(plain), parallelism=4, min_range_bytes=1).take_all()
    counts: dict[int, int] = {}
    for r in rows:
        counts[r["range"]] = counts.get(r["range"], 0) + 1
    index = dump.LineIndex(counts)
    by_number = {index.line_number(r["range"], r["line"]): r["text"] for r in rows}
    assert len(counts) == 4 and by_number == {i + 1: line for i, line in enumerate(raw_lines)}
    with pytest.raises(FileNotFoundError, match="not found"):
        dump.read_dump(str(tmp_path / "missing.json"))


def test_malformed_lines_are_reported_with_line_numbers(built, raw_lines):
    report = built.report
    bad = set(gen.malformed_lines(json.loads(raw_lines[1].rstrip(b","))))
    expected = [i + 1 for i, line in enumerate(raw_lines) if line.rstrip(b",") in bad]
    assert len(expected) == 7
    assert [m["line"] for m in report.malformed] == expected
    reasons = " | ".join(m["reason"] for m in report.malformed)
    for why in ("invalid JSON", "not a JSON object", "without a string 'id'", "invalid UTF-8",
                "'claims' is not an object", "KeyError: 'datavalue'", "invalid id 'Q-5'"):
        assert why in reasons
    assert all(m["text"] for m in report.malformed)
    c = report.counts
    assert c["lines"] == len(raw_lines) and c["structural"] == 2 and c["skipped_lexeme"] == 1
    assert c["items"] + c["properties"] + c["skipped_lexeme"] + c["structural"] + len(expected) == len(raw_lines)


def test_ray_and_plain_loop_agree(built, plain):
    local = build(str(plain), BuildConfig(), use_ray=False)
    assert local.library == built.library
    assert local.report.malformed == built.report.malformed and local.report.counts == built.report.counts


def test_ray_tasks_over_byte_ranges_agree_with_the_plain_loop(built, plain, s3_server):
    """A plain dump is scanned by one Ray task per byte range: 5 ranges here, malformed lines among them,
    from a local path and from a bucket (the tasks open their own ranges)."""
    _, bucket, _ = s3_server
    uri = f"s3://{bucket}/dumps/wikidata_dump.json"
    storage.write_bytes(uri, plain.read_bytes())
    for path in (str(plain), uri):
        assert len(dump.byte_ranges(path, 5, min_bytes=1)) == 5
        ranged = build(path, BuildConfig(), use_ray=True, parallelism=5, min_range_bytes=1)
        assert ranged.library == built.library
        assert ranged.report.malformed == built.report.malformed and ranged.report.counts == built.report.counts


def test_taxonomy(lib, built):
    assert lib["Human"].parents == ("Person",)  # P279 entity dropped: an ancestor of person
    assert lib["Person"].parents == ("EntityType",) and lib["EntityType"].parents == ()
    assert lib["SovereignState"].parents == ("Country", "State")
    assert lib["BigCity"].parents == ("City",) and lib.ancestors("BigCity")[:3] == ["City", "HumanSettlement", "Location"]
    # the P279 cycle administrative territorial entity <-> territorial entity is broken once, and reported
    assert built.report.dropped_cycle_edges == [("Q1496967", "Q56061")]
    assert lib["TerritorialEntity"].parents == ("Location",)
    assert lib["AdministrativeTerritorialEntity"].parents == ("TerritorialEntity",)
    events = {t.name for t in lib.of_kind("event")}
    assert events == {"Occurrence", "EventType", "Conflict", "ArmedConflict", "War", "Battle", "Marriage",
                      "Election", "SportingEvent"}
    assert lib["Occurrence"].parents == ()  # the root hangs under Event, not under entity
    assert lib["Battle"].parents == ("ArmedConflict",) and lib.is_a("Battle", "Occurrence")
    assert "Q35120" not in {t.wikidata_id for t in lib.of_kind("event")}
    assert lib.validate() == []
    assert lib.by_wikidata_id("Q3305213").name == "Painting"  # a class with no P279: label from the second scan


def test_constraints_and_relation_examples(lib, built):
    spouse = lib["Spouse"]
    assert spouse.wikidata_id == "P26" and spouse.label == "spouse"
    # Q95074 is not in the dump, the deprecated value type constraint (organization) is ignored
    assert spouse.head_types == ("Human",) and spouse.tail_types == ("Human",)
    assert spouse.examples == ("(Barack Obama, Michelle Obama)",)
    assert lib["Capital"].head_types == ("AdministrativeTerritorialEntity", "Country")
    assert lib["FoundedBy"].tail_types == ("Human", "Organization")
    assert lib["Population"].examples == ("(Berlin, 3644826)",)
    assert lib["DateOfBirth"].examples == ("(Douglas Adams, 1952-03-11)",)
    assert lib["CountryP17"].head_types == () and lib["CountryP17"].tail_types == ("Country",)
    relations = {t.wikidata_id for t in lib.of_kind("relation")}
    assert {"P214", "P18", "P856", "P625", "P373"}.isdisjoint(relations)  # ids, media, urls, coordinates, strings
    assert {"P26", "P1082", "P569", "P1476"} <= relations
    assert set(built.report.unresolved) == {"Q95074", "Q4115189"}


def test_names(lib, built):
    names = [t.name for t in lib]
    assert len(names) == len(set(names)) and all(is_class_name(n) for n in names)
    assert lib.by_wikidata_id("Q22687").name == "Bank" and lib.by_wikidata_id("Q468756").name == "BankQ468756"
    assert lib.by_wikidata_id("Q35120").name == "EntityType" and lib.by_wikidata_id("Q1656682").name == "EventType"
    assert lib.by_wikidata_id("P2309").name == "RelationType"
    assert lib.by_wikidata_id("Q6256").name == "Country" and lib.by_wikidata_id("P17").name == "CountryP17"
    assert lib.by_wikidata_id("Q16521").name == "Taxon"  # only a "mul" label
    assert lib.by_wikidata_id("Q4167836").name == "Q4167836" and built.report.missing_labels == ["Q4167836"]
    assert dedupe_class_names([("Q1", "bank"), ("Q2", "bank"), ("Q3", "bank Q2"), ("Q4", "entity")]) == {
        "Q1": "Bank", "Q2": "BankQ2_2", "Q3": "BankQ2", "Q4": "EntityType"}


def test_entity_examples_and_event_roles(lib):
    human = lib["Human"]
    assert human.examples[:3] == ("Douglas Adams", "Barack Obama", "Lionel Messi")  # lowest QIDs first
    assert "Paris" not in human.examples  # a deprecated P31 does not count
    assert lib["Marriage"].examples == ("marriage", "matrimony", "wedlock")
    battle = lib["Battle"]
    assert [r.name for r in battle.roles][:3] == ["location", "point_in_time", "participant"]
    assert battle.role("location").entity_types == ("Location",)
    assert "commons_category" not in {r.name for r in battle.roles}  # string datatype: not a role
    assert lib["Election"].role("candidate") == Role("candidate", ("Human",))
    # a parent event gathers the roles used on its subclasses' instances
    assert {"location", "point_in_time", "participant"} <= {r.name for r in lib["ArmedConflict"].roles}
    assert lib["SportingEvent"].role("participating_team").entity_types == ("SportsClub",)


def test_missing_descriptions_recorded_and_filled(lib, built):
    missing = {m["name"] for m in built.report.missing_descriptions}
    assert {"BigCity", "AssociationFootballClub", "SportingEvent", "ParticipatingTeam", "Q4167836"} <= missing
    assert missing == {t.name for t in lib if not t.description}
    tsv = missing_descriptions_tsv(lib)
    header, *rows = tsv.splitlines()
    assert header.split("\t") == ["name", "kind", "wikidata_id", "label", "description"] and len(rows) == len(missing)
    filled_tsv = "\n".join([header] + [r + f"described {r.split(chr(9))[0]}" for r in rows])
    filled, n = fill_descriptions(lib, parse_descriptions_tsv(filled_tsv))
    assert n == len(missing) and all(t.description for t in filled)
    assert filled["BigCity"].description == "described BigCity"
    with pytest.raises(ValueError, match="header"):
        parse_descriptions_tsv("foo\tbar\nx\ty")


def test_selection_and_corpus(lib, tmp_path):
    sub, missing = select(lib, ["Spouse", "Q178561", "riverbank?", "sovereign state"])
    assert missing == ["riverbank?"]
    assert {"Spouse", "Human", "Person", "EntityType", "Battle", "ArmedConflict", "Conflict", "Occurrence",
            "Location", "SovereignState", "Country", "State", "Organization"} == set(sub.names())
    assert sub.validate() == []
    records = [{"id": "1", "text": "Barack Obama married Michelle Obama.",
                "entities": [{"text": "Barack Obama", "type": "Human"}],
                "relations": [{"type": "Spouse", "head": {"text": "Barack Obama", "type": "Human"},
                               "tail": {"text": "Michelle Obama", "type": "Human"}}],
                "events": [{"type": "Marriage", "trigger": "married", "arguments": []}]}]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    types, bad = corpus_types([str(corpus)])
    assert types == {"Human", "Spouse", "Marriage"} and bad == 1
    sub, missing = select(lib, types)
    assert missing == [] and {"Marriage", "EventType", "Occurrence", "Location"} <= set(sub.names())


def test_parquet_and_pyfile_round_trip(lib, tmp_path):
    table.write_parquet(lib, str(tmp_path / "schema.parquet"))
    from_parquet = table.read_parquet(str(tmp_path / "schema.parquet"))
    assert from_parquet == lib
    files = pyfile.write_pyfiles(from_parquet, str(tmp_path / "py"))
    assert [Path(f).name for f in files] == ["Entities.py", "Relations.py", "Events.py"]
    assert pyfile.read_pyfiles(str(tmp_path / "py")) == lib
    entities = (tmp_path / "py" / "Entities.py").read_text()
    assert entities.startswith("class Entity:\n") and "class Human(Person):" in entities
    assert entities.index("class Person(") < entities.index("class Human(")  # parents first
    events = (tmp_path / "py" / "Events.py").read_text()
    assert events.startswith("class Event:\n") and "def __init__(self, trigger: str, arg_names, *args):" in events
    # fields that the class code would lose still round trip, through the metadata literal
    tricky = SchemaLibrary([
        SchemaType("City", examples=("Washington, D.C.", "Paris")),
        SchemaType("Capital", "relation", wikidata_id="P36", label="capital", description="seat, of government",
                   examples=("(France, Paris)", "(Germany, Berlin)"), head_types=("City",), tail_types=("City",)),
        SchemaType("Wedding", "event", description="a ceremony", examples=("wedding", "married"),
                   roles=(Role("spouse", ("City",)), Role("place"))),
    ])
    pyfile.write_pyfiles(tricky, str(tmp_path / "tricky"))
    assert pyfile.read_pyfiles(str(tmp_path / "tricky")) == tricky


RELEASED_STYLE = '''class Entity:
    """
    The base class for all entities.
    """
    def __init__(self, name: str):
        self.name = name

class Person(Entity):
    """
    Description: being that has certain capacities or attributes.
    Examples: Ada Lovelace, Alan Turing
    """
    pass

class Nationality(SocialGroup):
    """
    Description:
    Examples: French, German
    """
    pass
'''
RELEASED_EVENT = '''class Event:
    """
    The base class for all events.
    """
    def __init__(self, trigger: str):
        self.trigger = trigger

class Education(Event):
    """
    Description: Educational institution attended by subject.
    """
    def __init__(
        self,
        trigger: str,  # Examples: school, graduate, student,
        institution: List[Entity],
        student: List[Person | Human],
    ):
        super().__init__(trigger=trigger)
        self.institution = institution
        self.student = student
'''


def test_reads_released_layout_with_ast_only():
    people = pyfile.read_pyfile(RELEASED_STYLE, "entity")
    assert [t.name for t in people] == ["Person", "Nationality"]
    assert people[0].examples == ("Ada Lovelace", "Alan Turing") and people[0].parents == ()
    assert people[1].parents == ("SocialGroup",) and people[1].description == ""
    (edu,) = pyfile.read_pyfile(RELEASED_EVENT, "event")
    assert edu.roles == (Role("institution"), Role("student", ("Person", "Human")))
    assert edu.examples == ("school", "graduate", "student")
    # a file that would run code on import is only read, never run
    hostile = "import os\nos.system('false')\nclass Bomb(Entity):\n    '''Description: x'''\n    pass\n"
    assert [t.name for t in pyfile.read_pyfile(hostile, "entity")] == ["Bomb"]
    problems = []  # a broken class is reported and skipped, never raised for the whole file
    assert pyfile.read_pyfile("class (", "entity", "Entities.py", problems) == []
    assert len(problems) == 1 and "not valid Python" in problems[0].reason


def test_cli_build_select_and_convert(ray_cluster, tmp_path, capsys):
    from knowcoder_ray.cli import main

    out = tmp_path / "lib"
    assert main(["schema", "build", str(DUMP), "--out", str(out), "--types", "Spouse,Battle,NotAType"]) == 0
    for name in ("schema.parquet", "Entities.py", "Relations.py", "Events.py", "malformed.jsonl",
                 "missing_descriptions.tsv", "report.json"):
        assert (out / name).is_file(), name
    malformed = [json.loads(line) for line in (out / "malformed.jsonl").read_text().splitlines()]
    assert len(malformed) == 7 and all({"line", "reason", "text"} <= set(m) for m in malformed)
    report = json.loads((out / "report.json").read_text())
    assert report["unmatched"] == ["NotAType"] and report["problems"] == []
    assert report["summary"]["malformed"] == 7 and report["summary"]["selected_relation_types"] == 1
    rows = pq.read_table(out / "schema.parquet")
    assert "Battle" in rows.column("name").to_pylist() and "Spouse" in rows.column("name").to_pylist()
    assert main(["schema", "from-py", str(out), str(tmp_path / "back.parquet")]) == 0
    assert table.read_parquet(str(tmp_path / "back.parquet")) == table.read_parquet(str(out / "schema.parquet"))
    assert main(["schema", "to-py", str(tmp_path / "back.parquet"), str(tmp_path / "py2")]) == 0
    assert (tmp_path / "py2" / "Events.py").read_text() == (out / "Events.py").read_text()
