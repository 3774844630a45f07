"""The schema-following corpus: every sample parses back with the codec to the source annotations of
the classes its prompt shows, on the fixtures of the automatic sources and on every real benchmark."""
import json

import pytest

from knowcoder_ray.codec.render import TASK_KIND
from knowcoder_ray.data import pipeline
from knowcoder_ray.data.benchmarks import BENCHMARKS, load_benchmark
from knowcoder_ray.data.following import FollowingTransform, Sampling, parse_benchmark_arg, plan, restrict
from knowcoder_ray.data.pipeline import Item, ShardSpec
from knowcoder_ray.data.sources import benchmark_library
from corpora_helpers import INSTRUCTIE, LSEE, UNIVERSALNER, annotations, parse_back

CONFIG = Sampling(seed=7, shard_size=5, distractors=3)


@pytest.fixture(scope="module")
def library(data_dir):
    return benchmark_library(data_dir)


@pytest.fixture(scope="module")
def transform(library):
    return FollowingTransform(library, CONFIG)


def check_example(transform, ex, rows):
    """Each row: at most shard_size classes, positives and distractors together cover positives + k,
    and the output parses back to exactly the record's annotations of the row's classes."""
    assert rows, ex.record.id
    for task in {r["task"] for r in rows}:
        task_rows = [r for r in rows if r["task"] == task]
        known = {t.name: t for t in ex.types if t.kind == TASK_KIND[task]}
        shown = [n for r in task_rows for n in r["types"]]
        assert len(shown) == len(set(shown))  # each class in one schema shard
        positives = set(known) | {a[0] for a in annotations(task, ex.record)}
        assert positives <= set(shown) or task == "eae"
        if task != "eae":
            assert len(set(shown) - positives) == min(CONFIG.distractors, len(set(transform.pool[TASK_KIND[task]]) - positives))
        for r in task_rows:
            assert 1 <= len(r["types"]) <= CONFIG.shard_size and r["source"] == ex.record.source
            types = [known.get(n) or transform.index.get(TASK_KIND[task], n) for n in r["types"]]
            back = parse_back(task, r["output"], types, transform.library)
            assert annotations(task, back) == annotations(task, restrict(ex.record, task, {t.name: t for t in types}))
            assert r["prompt"].endswith(f'sentence = "{ex.record.text}"\n\nOutput:\n')  # raw, as released
            if task == "eae":
                for e in back.events:
                    assert f'"{e.trigger}" is the trigger of event type "{e.type}"' in r["prompt"]


@pytest.mark.parametrize("source,path", [("universalner", UNIVERSALNER), ("instructie", INSTRUCTIE), ("lsee", LSEE)])
def test_fixture_sources_parse_back(transform, source, path):
    spec = plan(**{source: [str(path)]})[0]
    bad: list = []
    n = 0
    for item in pipeline.read_shard(spec, bad):
        try:
            ex = transform.example(spec, item)
        except ValueError:
            continue  # the malformed fixture records (quarantined in the pipeline tests)
        check_example(transform, ex, [row for _, row in transform.rows(spec, item)])
        n += 1
    assert n == {"universalner": 3, "instructie": 3, "lsee": 4}[source] and not bad


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_parses_back(transform, data_dir, name):
    split = BENCHMARKS[name].splits[0]
    spec = ShardSpec(f"t-{name}", name, "benchmark", name, 0, 60, extra=(split, str(data_dir)))
    records, schema = load_benchmark(name, data_dir, split)
    n_tasks = set()
    for rec in records[:60]:
        item = Item(rec.id, (rec, schema))
        rows = [row for _, row in transform.rows(spec, item)]
        n_tasks |= {r["task"] for r in rows}
        check_example(transform, transform.example(spec, item), rows)
    assert n_tasks == set(BENCHMARKS[name].tasks)


def test_seed_makes_the_corpus_deterministic(library, data_dir):
    spec = plan(benchmarks=["conll04:dev"], data_dir=str(data_dir))[0]
    records, schema = load_benchmark("conll04", data_dir, "dev")
    items = [Item(r.id, (r, schema)) for r in records[:30]]

    def corpus(seed):
        t = FollowingTransform(library, Sampling(seed=seed, shard_size=5, distractors=3))
        return [row for it in items for _, row in t.rows(spec, it)]
    assert corpus(1) == corpus(1)
    assert [r["types"] for r in corpus(1)] != [r["types"] for r in corpus(2)]


def test_distractors_and_shards_are_configurable(library, data_dir):
    records, schema = load_benchmark("nyt", data_dir, "test")
    spec = plan(benchmarks=["nyt:test"], data_dir=str(data_dir))[0]
    item = Item(records[0].id, (records[0], schema))
    rows = [r for _, r in FollowingTransform(library, Sampling(shard_size=100, distractors=0)).rows(spec, item)]
    assert len(rows) == 1 and sorted(rows[0]["types"]) == sorted(schema.names("relation"))
    rows = [r for _, r in FollowingTransform(library, Sampling(shard_size=4, distractors=4)).rows(spec, item)]
    assert len(rows) == -(-(len(schema) + 4) // 4) and all(len(r["types"]) <= 4 for r in rows)


def test_benchmark_arguments():
    assert parse_benchmark_arg("conll04") == ("conll04", "train")
    assert parse_benchmark_arg("phee:dev") == ("phee", "dev")
    with pytest.raises(ValueError, match="no train split"):
        parse_benchmark_arg("nyt")
    with pytest.raises(ValueError, match="unknown benchmark"):
        parse_benchmark_arg("ace05")


def test_no_tasks_is_refused(data_dir, tmp_path, capsys):
    """`--tasks ,` (or tasks: []) built a corpus of nothing, every record quarantined, and exited 0."""
    from knowcoder_ray.cli import main

    args = ["data", "following", "--lsee", str(LSEE), "--data-dir", str(data_dir), "--out", str(tmp_path / "o"),
            "--executor", "local", "--quiet", "--tasks", ","]
    assert main(args) == 2 and not (tmp_path / "o").exists()
    assert capsys.readouterr().err.startswith("knowcoder data following: tasks: ")



def test_a_nul_character_in_the_text_parses_back(transform):
    """JSON may hold "\\u0000"; the output wrote it raw into its string literal, which `ast` refuses ('source
    code string cannot contain null bytes'): the sample's output could not be read back."""
    conv = [{"from": "human", "value": "Text: Ada\u0000Lovelace met Bob."}, {"from": "gpt", "value": "I've read this text."},
            {"from": "human", "value": "What describes person in the text?"},
            {"from": "gpt", "value": json.dumps(["Ada\u0000Lovelace", "Bob"])}]
    spec, item = ShardSpec("s", "universalner", "lines", "p"), Item("k", json.dumps({"conversations": conv}))
    ex = transform.example(spec, item)
    check_example(transform, ex, [row for _, row in transform.rows(spec, item)])
