"""Schema sharding: a schema of thousands of types is split into prompt heads that fit the token budget,
and running every shard then merging gives the same result as one prompt holding the whole schema.

The model here is a rule engine that reads the prompt the way a perfect extractor would (the classes it
defines, the sentence, the confirmed triggers) and answers with the gold mentions of those classes, in
the codec's output format; so any difference between sharded and single-prompt runs is the sharding's.
"""
import re

import pytest

from knowcoder_ray.codec.render import render_output, render_prompt
from knowcoder_ray.data.benchmarks import load_benchmark
from knowcoder_ray.eval.metrics import score, tuples
from knowcoder_ray.infer.extraction import TaskPlan, coarse_name, local_executor, run_extraction
from engine_helpers import cached_engine_test_model
from knowcoder_ray.infer.sharding import shard_schema
from knowcoder_ray.tokens import TokenCounter
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import Role, SchemaLibrary, SchemaType

_CLASS = re.compile(r"^class (\w+)\(", re.M)
_HINT = re.compile(r'"[^"]*" is the trigger of event type "([^"]*)"')


def sentence_of(prompt: str) -> str:
    """The sentence of a prompt: its sentence line is written raw, as in the released data."""
    return prompt[prompt.rindex('\nsentence = "') + len('\nsentence = "'):prompt.rindex('"\n\nOutput:')]


class RuleEngine:
    """Answers each prompt with the gold mentions whose classes the prompt defines."""

    def __init__(self, records, library):
        self.gold = {r.text: r for r in records}
        self.library = library
        self.calls = 0

    def generate(self, prompts):
        self.calls += 1
        return [self._answer(p.text) for p in prompts]

    def _answer(self, text):
        shown = set(_CLASS.findall(text))
        sentence = sentence_of(text)
        gold = self.gold[sentence]
        if "Relation Objects" in text:
            return render_output("re", Record("", sentence, relations=[r for r in gold.relations if r.type in shown]))
        if "Entity Objects" in text:
            return render_output("ner", Record("", sentence, entities=[e for e in gold.entities if e.type in shown]))
        if "\tdef __init__(\n\t\tself," in text:  # stage 2 (EAE form): arguments of the subtypes shown
            return render_output("eae", Record("", sentence, events=[e for e in gold.events if e.type in shown]))
        # stage 1: detection over coarse types
        events = [type(e)(coarse_name(self.library, e.type), e.trigger) for e in gold.events
                  if coarse_name(self.library, e.type) in shown]
        return render_output("ed", Record("", sentence, events=events))


def _with_distractors(library: SchemaLibrary, n: int, kind: str) -> tuple[SchemaLibrary, list[SchemaType]]:
    """The dataset's types interleaved with `n` distractor classes (a library-sized schema)."""
    own = [t for t in library.of_kind(kind)]
    extra = []
    for i in range(n):
        desc = f"Distractor concept number {i}, a kind of thing that never occurs in these sentences."
        if kind == "entity":
            extra.append(SchemaType(f"Concept{i}", "entity", description=desc, examples=(f"example {i}",)))
        elif kind == "relation":
            extra.append(SchemaType(f"RelatesTo{i}", "relation", description=desc, head_types=("Person",),
                                    tail_types=(f"Concept{i % 50}",)))
        else:
            parent = f"Category{i % 40}Event"
            extra.append(SchemaType(f"Happening{i}", "event", parents=(parent,), description=desc,
                                    examples=("occurred",), roles=(Role("participant", ("Person",)),)))
    helpers = []
    if kind == "relation":
        helpers = [SchemaType(f"Concept{i}", "entity") for i in range(50)]
    if kind == "event":
        helpers = [SchemaType(f"Category{i}Event", "event", description="A distractor category.") for i in range(40)]
    mixed = []
    step = max(1, n // max(1, len(own)))
    for i, t in enumerate(extra):
        if i % step == 0 and own:
            mixed.append(own.pop(0))
        mixed.append(t)
    mixed += own
    return SchemaLibrary([*library, *helpers, *extra]), mixed


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def count(tmp_path_factory, data_dir):
    from transformers import AutoTokenizer

    model = cached_engine_test_model(tmp_path_factory.getbasetemp(), data_dir)
    return TokenCounter(AutoTokenizer.from_pretrained(model))


def test_thousands_of_types_fit_the_budget_and_cover_the_schema(data_dir, count):
    _, conll_lib = load_benchmark("conll04", data_dir)
    library, types = _with_distractors(conll_lib, 3000, "entity")
    shards = shard_schema("ner", types, 1500, count, library)
    assert len(shards) > 20
    assert [t.name for s in shards for t in s.types] == [t.name for t in types]  # all, once, in order
    heads = count([s.head for s in shards])
    assert max(heads) <= 1500
    assert sum(heads) / len(heads) > 1500 * 0.8  # packed, not one class per shard
    assert shards[3].prompt("A sentence .") == render_prompt("ner", shards[3].types, "A sentence .")


def extract(engine, records: list[Record], plan: TaskPlan) -> list[Record]:
    """Predictions for `records` with one engine, in this process (sharding and two stages included)."""
    out = run_extraction([("", plan, records)], local_executor(engine.generate, [plan]))
    return [out[("", plan.key, r.id)].record for r in records]


@pytest.mark.parametrize("name,task,kind,n", [
    ("conll04", "ner", "entity", 3000),
    ("conll04", "re", "relation", 1000),
    ("wikievents", "ee", "event", 1000),
])
def test_sharded_merge_equals_single_prompt(data_dir, count, name, task, kind, n):
    records, dataset_lib = load_benchmark(name, data_dir)
    records = [r for r in records if r.entities or r.relations or r.events][:25]
    library, types = _with_distractors(dataset_lib, n, kind)
    if task == "ee":  # the plan takes the leaf event types
        types = [t for t in types if not library.children(t.name)]
    engine = RuleEngine(records, library)
    # as the evaluation runs them: predictions kept as written (a gold repeat is predicted twice)
    single = TaskPlan("one", task, library, types, budget=10 ** 9, count=count, as_written=True)
    sharded = TaskPlan("many", task, library, types, budget=1200, count=count, as_written=True)
    assert len(single.shards1) == 1 and len(sharded.shards1) > (2 if task == "ee" else 10)
    one = extract(engine, records, single)
    many = extract(engine, records, sharded)
    assert engine.calls == (4 if task == "ee" else 2)  # one call per stage and run: it groups by prefix
    key = {"ner": lambda r: sorted((e.type, e.text) for e in r.entities),
           "re": lambda r: sorted((x.type, x.head.text, x.tail.text) for x in r.relations),
           "ee": lambda r: sorted((e.type, e.trigger, tuple(sorted((a.role, a.text) for a in e.arguments)))
                                  for e in r.events)}[task]
    assert [key(r) for r in many] == [key(r) for r in one]
    # and both are the gold mentions, repeats included (merging lost nothing): 100 in both metric modes
    metrics = {"ner": ["EC"], "re": ["RC"], "ee": ["TC", "AC"]}[task]
    for mode in ("official", "strict"):
        for m, s in score(records, many, metrics, mode=mode).items():
            assert s.overall.tp == s.overall.pred == s.overall.gold > 0, (mode, m)
            if mode == "strict":
                assert s.overall.gold == sum(len(tuples(r, m)) for r in records)


def test_two_stage_prompts_hold_only_subtypes_of_detected_categories(data_dir):
    records, library = load_benchmark("wikievents", data_dir)
    plan = TaskPlan("w", "ee", library)
    stage1 = plan.stage1_rows(records[0])
    assert len(stage1) == 1 and stage1[0]["task"] == "ed"
    assert set(stage1[0]["names"]) == {t.name for t in library.of_kind("event") if not t.parents}
    record = next(r for r in records if r.events)
    detected = [type(e)(coarse_name(library, e.type), e.trigger) for e in record.events]
    rows = plan.stage2_rows(record, detected)
    shown = {n for r in rows for n in r["names"]}
    assert shown == {t.name for t in plan.types if coarse_name(library, t.name) in {e.type for e in detected}}
    # the detected types are coarse ones the stage-2 prompts do not define: no hint names them
    assert all(set(_HINT.findall(r["prompt"])) <= set(r["names"]) for r in rows)
    assert not any(_HINT.findall(r["prompt"]) for r in rows)
    assert plan.stage2_rows(record, []) == []


def test_stage_two_hints_name_the_defined_class_of_one_level_schemas(data_dir):
    records, library = load_benchmark("phee", data_dir)
    plan = TaskPlan("p", "ee", library)
    record = next(r for r in records if r.events)
    detected = [type(e)(e.type, e.trigger) for e in record.events]  # PHEE types are their own coarse types
    rows = plan.stage2_rows(record, detected)
    e = detected[0]
    assert rows and all(f'"{e.trigger}" is the trigger of event type "{e.type}"' in r["prompt"]
                        and f"class {e.type}(Event)" in r["prompt"] for r in rows)
