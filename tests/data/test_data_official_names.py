"""Benchmark classes under the released evaluation's class names, and first-k-shot prompts."""
import pytest

from knowcoder_ray.data.benchmarks import BENCHMARKS, few_shot_records, load_benchmark
from knowcoder_ray.infer.extraction import TaskPlan


def test_conll04_takes_the_official_names(data_dir):
    records, lib = load_benchmark("conll04", data_dir, class_names="official")
    assert sorted(lib.names("entity")) == ["Human", "Organization", "Other", "SpatialEntity"]
    assert sorted(lib.names("relation")) == ["HeadquartersLocation", "Kill", "LocatedIn", "Residence", "WorkFor"]
    assert lib["Residence"].head_types == ("Human",) and lib["Residence"].tail_types == ("SpatialEntity",)
    assert lib["Human"].description.startswith("A person")
    project, _ = load_benchmark("conll04", data_dir)
    assert [(e.type, e.text) for e in project[0].entities] != [(e.type, e.text) for e in records[0].entities] or \
        not any(e.type == "Person" for e in project[0].entities)
    names = {"Person": "Human", "Location": "SpatialEntity", "LiveIn": "Residence", "OrgBasedIn": "HeadquartersLocation"}
    for a, b in zip(project, records):
        assert [(names.get(e.type, e.type), e.text) for e in a.entities] == [(e.type, e.text) for e in b.entities]
        assert [names.get(x.type, x.type) for x in a.relations] == [x.type for x in b.relations]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_is_consistent_under_official_names(data_dir, name):
    records, lib = load_benchmark(name, data_dir, class_names="official")
    kinds = {"entity": {e.type for r in records for e in r.entities},
             "relation": {x.type for r in records for x in r.relations},
             "event": {e.type for r in records for e in r.events}}
    for kind, used in kinds.items():
        assert used <= set(lib.names(kind)), (name, kind, used - set(lib.names(kind)))
    assert not {"Person", "Location", "EventEntity", "RestaurantName", "LiveIn"} & set(lib.names())


def test_unknown_naming_is_named(data_dir):
    with pytest.raises(ValueError, match="class_names must be one of"):
        load_benchmark("conll04", data_dir, class_names="wikidata")


def test_first_k_shots_come_from_train_and_show_only_the_shard_classes(data_dir):
    shots = few_shot_records("conll04", data_dir, 3, class_names="official")
    train, _ = load_benchmark("conll04", data_dir, "train", class_names="official")
    assert [s.id for s in shots] == [r.id for r in train if r.entities or r.relations][:3]
    records, lib = load_benchmark("conll04", data_dir, class_names="official")
    plan = TaskPlan("c", "ner", lib, shots=shots)
    (row,) = plan.stage1_rows(records[0])
    prompt = row["prompt"]
    for s in shots:
        assert f'sentence = "{s.text}"\nresults = [' in prompt
    assert prompt.count("sentence = ") == 4 and prompt.endswith(f'sentence = "{records[0].text}"\n\nOutput:\n')
    first = shots[0].entities[0]
    assert f'\t{first.type}("{first.text}")' in prompt
    with pytest.raises(ValueError, match="no train or dev split"):
        few_shot_records("nyt", data_dir, 5)
