"""The schema type model: names, taxonomy queries, selection, validation, row round trip."""
import pyarrow as pa
import pytest

from knowcoder_ray.schema import Role, SchemaError, SchemaLibrary, SchemaType, to_class_name, to_role_name

LIB = SchemaLibrary([
    SchemaType("Human", parents=("Person",), wikidata_id="Q5", description="Common name of Homo sapiens."),
    SchemaType("Person", parents=("Agent",), wikidata_id="Q215627"),
    SchemaType("Agent", wikidata_id="Q24229398"),
    SchemaType("Organization", parents=("Agent",), wikidata_id="Q43229"),
    SchemaType("Club", parents=("Organization",)),
    SchemaType("MemberOf", "relation", wikidata_id="P463", head_types=("Human",), tail_types=("Organization", "Club")),
    SchemaType("Education", "event", roles=(Role("student", ("Human",)), Role("institution", ("Organization",)))),
])


def test_names():
    assert to_class_name("programming language") == "ProgrammingLanguage"
    assert to_class_name("Restaurant_Name") == "RestaurantName"
    assert to_class_name("/people/person/nationality") == "PeoplePersonNationality"
    assert to_class_name("3D model") == "T3DModel" and to_class_name("entity") == "EntityType"
    assert to_role_name("Time_elapsed") == "time_elapsed" and to_role_name("from") == "from"  # as released
    assert to_role_name("StartDate") == "start_date"
    # Wikidata labels "none", "true", "false" give Python keywords: suffixed like the base class names
    assert [to_class_name(w) for w in ("none", "true", "False")] == ["NoneType", "TrueType", "FalseType"]
    with pytest.raises(SchemaError, match="not a valid entity class name"):
        SchemaType("not valid")
    assert SchemaType("Event").name == "Event"  # the released library's `class Event(Entity)`
    with pytest.raises(SchemaError, match="not a valid relation class name"):
        SchemaType("Relation", "relation")
    with pytest.raises(SchemaError, match="not a valid event class name"):
        SchemaType("Event", "event")
    with pytest.raises(SchemaError, match="kind must be"):
        SchemaType("X", kind="thing")
    assert SchemaType("X", "event", roles=(Role("from"),)).roles[0].name == "from"  # keyword roles, as released
    with pytest.raises(SchemaError, match="role 'a b'"):
        SchemaType("X", "event", roles=(Role("a b"),))


def test_taxonomy_queries():
    assert LIB.ancestors("Human") == ["Person", "Agent"]
    assert set(LIB.descendants("Agent")) == {"Person", "Human", "Organization", "Club"}
    assert LIB.children("Organization") == ["Club"]
    assert LIB.is_a("Club", "Agent") and not LIB.is_a("Agent", "Club")
    assert LIB.by_wikidata_id("Q5").name == "Human" and LIB.by_wikidata_id("Q1") is None
    assert LIB["MemberOf"].kind == "relation" and "Nope" not in LIB
    with pytest.raises(KeyError, match="unknown schema type 'Nope'"):
        LIB["Nope"]


def test_select_keeps_ancestors_and_constraint_types():
    sub = LIB.select(["Human", "Club"])
    assert sorted(sub.names()) == ["Agent", "Club", "Human", "Organization", "Person"]
    # a relation brings the entity types its constraints name, with their ancestors
    assert set(LIB.select(["MemberOf"]).names()) >= {"MemberOf", *LIB["MemberOf"].head_types, *LIB["MemberOf"].tail_types}
    with pytest.raises(KeyError, match="Nope"):
        LIB.select(["Nope"])


def test_validate_reports_unknown_references_and_cycles():
    assert LIB.validate() == []
    broken = SchemaLibrary([SchemaType("A", parents=("B",)), SchemaType("B", parents=("A",)),
                            SchemaType("R", "relation", head_types=("Ghost",))])
    problems = broken.validate()
    assert "A: inheritance cycle through 'B'" in problems and "R: unknown constraint type 'Ghost'" in problems
    assert broken.ancestors("A") == ["B"]  # cycles are tolerated by queries


def test_rows_round_trip_through_arrow():
    table = pa.Table.from_pylist(LIB.to_rows())
    assert SchemaLibrary.from_rows(table.to_pylist()) == LIB
