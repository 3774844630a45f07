"""The schema-understanding corpus: definition codes of the library, instance codes from KELM."""
import ast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowcoder_ray.data import pipeline
from knowcoder_ray.data.sources import TypeIndex, benchmark_library, read_kelm
from knowcoder_ray.schema.table import load_library
from knowcoder_ray.data.understanding import (UnderstandingTransform, definition_code, definition_groups,
                                              instance_codes, load_entity_types, plan)
from corpora_helpers import (KELM, KELM_TYPES, annotations, parse_back, read_rows, trigger_less_events,
                                 wikidata_library)


@pytest.mark.parametrize("which", ["wikidata", "benchmarks"])
def test_definition_groups_cover_the_library_in_definition_order(which, data_dir):
    lib = wikidata_library() if which == "wikidata" else benchmark_library(data_dir)
    groups = definition_groups(lib, max_group=4)
    assert groups == definition_groups(lib, max_group=4)  # deterministic
    assert set(lib.names()) == {n for g in groups for n in g}
    for g in groups:
        assert len(g) == len(set(g))
        for i, name in enumerate(g):  # every parent in the group is defined before its child
            assert all(g.index(p) < i for p in lib.parents(name) if p in g)
        parent_of_group = [n for n in g if any(c in g for c in lib.children(n))]
        assert len([n for n in g if n not in parent_of_group and not lib.children(n)]) <= 4
        code = definition_code(g, lib)
        ast.parse(code)  # valid Python
        assert [n.name for n in ast.parse(code).body] == g


def test_siblings_share_a_sample():
    lib = wikidata_library()
    groups = definition_groups(lib)
    assert ["Organization", "Restaurant", "SportsClub"] in groups  # a type with its children
    assert ["Organization", "SportsClub", "AssociationFootballClub"] in groups  # and with its ancestors


def test_instance_codes_parse_back_to_the_kelm_triples():
    lib = wikidata_library()
    index, table = TypeIndex(lib), load_entity_types(str(KELM_TYPES))
    seen = set()
    for line in KELM.read_text().splitlines()[:4]:
        rec = read_kelm(line, index, table)
        for task, code in instance_codes(rec):
            seen.add(task)
            ast.parse(code)
            assert code.startswith(f"# Extract the {dict(ner='entities', re='relations', ee='events')[task]} "
                                   "from the following sentence.\nsentence = ")
            if task == "ee":
                assert trigger_less_events(code) == [
                    (e.type, tuple((a.role, a.type, a.text) for a in e.arguments)) for e in rec.events]
                continue
            kind = {"ner": "entity", "re": "relation"}[task]
            back = parse_back(task, code, lib.of_kind(kind), lib)
            assert annotations(task, back) == annotations(task, rec)
            if task == "re":  # instance codes keep the entity types of heads and tails
                assert [(r.head.type, r.tail.type) for r in back.relations] == [
                    (r.head.type, r.tail.type) for r in rec.relations]
    assert seen == {"ner", "re", "ee"}


def test_understanding_pipeline_on_ray(ray_cluster, tmp_path):
    lib = wikidata_library()
    pq.write_table(pa.Table.from_pylist(lib.to_rows()), tmp_path / "library.parquet")
    lib = load_library(str(tmp_path / "library.parquet"))
    transform = UnderstandingTransform(lib, load_entity_types(str(KELM_TYPES)), max_group=4)
    specs = plan(lib, [str(KELM)], max_group=4, block_bytes=1000)
    m = pipeline.run(transform, specs, str(tmp_path / "out"), workers=2)
    assert m["complete"] and m["shards_planned"] == len(specs) > 2
    assert m["columns"] == ["text", "kind", "source", "n_tokens"]
    n_groups = len(definition_groups(lib, 4))
    assert m["by_task"] == {"definition": n_groups, "ner": 4, "re": 2, "ee": 1}
    assert m["by_source"] == {"library": n_groups, "kelm": 7}
    assert m["quarantined"] == 3 and m["records"] == n_groups + 7
    rows = read_rows(str(tmp_path / "out"))
    assert {r["kind"] for r in rows} == {"definition", "instance"}
    assert sum(r["n_tokens"] for r in rows) == m["n_tokens"] > 0
    assert pq.read_schema(next((tmp_path / "out" / "data").glob("kelm-*.parquet"))).names == m["columns"]
    bad = [line for f in (tmp_path / "out" / "quarantine").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(bad) == 3 and all('"reason"' in b for b in bad)


def test_an_entity_types_path_that_is_a_folder_is_one_line(data_dir, tmp_path, capsys):
    """`--entity-types DIR` ended in pyarrow's OSError traceback ('Cannot open for reading: ... is a directory')."""
    from knowcoder_ray.cli import main

    assert main(["data", "understanding", "--kelm", str(KELM), "--entity-types", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--data-dir", str(data_dir), "--executor", "local", "--quiet"]) == 2
    assert capsys.readouterr().err == f"knowcoder data: entity types table is not a file: {tmp_path}\n"


@pytest.mark.parametrize("line, message", [("not json", "not valid JSON (Expecting value"),
                                           ("[1]", "expected {'entity': str, 'instance_of': [str]}")])
def test_a_bad_entity_types_line_is_named(tmp_path, line, message):
    (tmp_path / "types.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError) as e:
        load_entity_types(str(tmp_path / "types.jsonl"))
    assert str(e.value).startswith(f"{tmp_path}/types.jsonl:1: {message}"), e.value


def test_definition_groups_of_a_deep_or_cyclic_taxonomy():
    """A library read from .py files may hold a subclass chain thousands deep (RecursionError before) or a
    cycle: the groups still cover it, parents first."""
    from knowcoder_ray.schema import SchemaLibrary, SchemaType

    deep = SchemaLibrary([SchemaType(f"C{i}", parents=(f"C{i + 1}",) if i < 2999 else ()) for i in range(3000)])
    groups = definition_groups(deep)
    assert {n for g in groups for n in g} == set(deep.names()) and groups[0][:2] == ["C2999", "C2998"]
    cyclic = SchemaLibrary([SchemaType("A", parents=("B",)), SchemaType("B", parents=("A",)),
                            SchemaType("C", parents=("A",))])
    assert definition_groups(cyclic) == [["B", "A", "C"], ["B", "A"]]
