"""The Python front door (knowcoder_ray.KnowCoder) and `knowcoder extract`, in this process, no Ray: an
oracle engine that answers every prompt with one fixed output checks spans, types, hallucinations and
errors end to end; the tiny transformers model checks the real engine path; bad arguments raise
ValueError naming what is wrong."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from engine_helpers import cached_engine_test_model

ORACLE = "engine_helpers:OracleEngine"
TEXT = "Ada Lovelace worked with Charles Babbage in London."
ANSWER = 'results = [\n\tPerson("Ada Lovelace"),\n\tLocation("London"),\n\tSpaceship("Babbage"),\n\tPerson(Charles\n]'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
    return cached_engine_test_model(tmp_path_factory.getbasetemp(), data_dir)


@pytest.fixture(scope="module")
def oracle(tiny, tmp_path_factory):
    """The tiny model's tokenizer (sharding counts tokens with it) and an oracle.json answering ANSWER."""
    out = tmp_path_factory.mktemp("oracle")
    for f in tiny.glob("tokenizer*"):
        shutil.copy(f, out)
    (out / "oracle.json").write_text(json.dumps({"answers": {}, "default": ANSWER}))
    return out


def test_extract_returns_typed_results_with_spans(oracle, data_dir):
    from knowcoder_ray import KnowCoder

    kc = KnowCoder.load(str(oracle), schema="benchmarks", engine=ORACLE, data_dir=str(data_dir))
    one = kc.extract(TEXT, types=["Person", "Location"], return_raw=True)
    assert [(e.type, e.text, e.start, e.end) for e in one.entities] == [
        ("Person", "Ada Lovelace", 0, 12), ("Location", "London", 44, 50)]
    assert one.hallucinated == ["Spaceship"] and len(one.errors) == 1 and "Charles" in one.errors[0]
    assert one.raw[0].types == ["Person", "Location"] and one.raw[0].output == ANSWER
    many = kc.extract([TEXT, "London is big."], task="ner", types=["Location"])
    assert [[e.text for e in r.entities] for r in many] == [["London"], ["London"]]
    assert many[1].entities[0].start == 0


def test_user_class_code_and_relations(oracle, data_dir):
    from knowcoder_ray import KnowCoder, load_schema

    code = ("class Person(Entity):\n\t\"\"\"A human being.\"\"\"\n\tpass\n\nclass City(Entity):\n\tpass\n\n"
            "class LivesIn(Relation):\n\tdef __init__(self, head_entity: Person, tail_entity: City):\n\t\tpass\n")
    (oracle / "oracle.json").write_text(json.dumps(
        {"answers": {}, "default": 'results = [\n\tLivesIn(Entity("Ada Lovelace"), Entity("London"))\n]'}))
    kc = KnowCoder.load(str(oracle), schema=load_schema("benchmarks", str(data_dir)), engine=ORACLE)
    r = kc.extract(TEXT, task="re", schema_code=code)
    assert [(x.type, x.head.text, x.tail.text) for x in r.relations] == [("LivesIn", "Ada Lovelace", "London")]
    assert r.relations[0].tail.start == 44
    (oracle / "oracle.json").write_text(json.dumps({"answers": {}, "default": ANSWER}))


@pytest.mark.parametrize("kwargs, message", [
    ({"types": ["Spaceship"]}, "unknown type names: Spaceship"),
    ({"types": ["WorkFor"]}, "task 'ner' takes entity types"),
    ({"task": "xx"}, "task"),
    ({"schema_code": "class A(Entity):\n\tx = 1\n"}, "malformed schema_code"),
    ({"schema_code": "import os\nos.system('touch /tmp/kc-pwned')\n"}, "malformed schema_code"),
    ({"triggers": [[{"type": "Attack", "trigger": "x"}]]}, "triggers"),
])
def test_bad_arguments_raise_value_error_naming_the_problem(oracle, data_dir, kwargs, message):
    from knowcoder_ray import KnowCoder

    kc = KnowCoder.load(str(oracle), schema="benchmarks", engine=ORACLE, data_dir=str(data_dir))
    with pytest.raises(ValueError, match=message):
        kc.extract(TEXT, **kwargs)
    with pytest.raises(ValueError, match="texts"):
        kc.extract([TEXT, ""])
    assert not os.path.exists("/tmp/kc-pwned")


@pytest.mark.parametrize("texts", [None, 5, {"a": "b"}])
def test_texts_that_are_not_a_string_or_a_list_are_refused(oracle, data_dir, texts):
    from knowcoder_ray import KnowCoder

    kc = KnowCoder.load(str(oracle), schema="benchmarks", engine=ORACLE, data_dir=str(data_dir))
    with pytest.raises(ValueError, match=f"texts: expected a string or a list of strings, got {type(texts).__name__}"):
        kc.extract(texts)
    assert kc.extract((TEXT,), types=["Location"])[0].entities[0].text == "London"  # a tuple is a list


def test_tuples_of_types_and_triggers_are_lists_like_texts(oracle, data_dir):
    """Before: texts=(..,) worked but types=("Location",) was refused ("types: Input should be a valid list")."""
    from knowcoder_ray import KnowCoder

    kc = KnowCoder.load(str(oracle), schema="benchmarks", engine=ORACLE, data_dir=str(data_dir))
    assert [e.text for e in kc.extract(TEXT, types=("Person", "Location")).entities] == ["Ada Lovelace", "London"]
    r = kc.extract((TEXT,), task="eae", triggers=(({"type": "Attack", "trigger": "worked"},),))
    assert len(r) == 1 and r[0].text == TEXT
    with pytest.raises(ValueError, match="^types: Input should be a valid list"):
        kc.extract(TEXT, types="Person")  # a string is not a list of names
    with pytest.raises(ValueError, match="unknown type names: X0, X1, .*, X19 and 980 more$"):
        kc.extract(TEXT, types=[f"X{i}" for i in range(1000)])  # one line, not a thousand names


@pytest.mark.parametrize("engine, settings, message", [
    ("transformers", {"max_new_tokenz": 8}, r"^unknown setting 'max_new_tokenz' \(known: max_new_tokens, "),
    ("transformers", {"max_new_tokens": 0}, r"^max_new_tokens: Input should be greater than or equal to 1$"),
    # before: RuntimeError "DefaultCPUAllocator: can't allocate memory" at the first generate
    ("transformers", {"max_new_tokens": 10**11}, r"^max_new_tokens 100000000000 exceeds the model's context of 4096 "),
    ("os:system", {}, r"^engine 'os:system' is not a class$"),
    ("transformers", {"shard_tokens": 0}, r"^shard_tokens: expected a whole number of at least 1, got 0$"),
    ("transformers", {"shard_tokens": None}, r"^shard_tokens: expected a whole number of at least 1, got None$"),
    ("transformers", {"shard_tokens": "abc"}, r"^shard_tokens: expected a whole number of at least 1, got 'abc'$"),
    ("no_such_module:Engine", {}, r"^engine 'no_such_module:Engine' cannot be imported: No module named"),
])
def test_bad_engine_arguments_raise_one_line_value_errors(tiny, data_dir, engine, settings, message):
    from knowcoder_ray import KnowCoder

    with pytest.raises(ValueError, match=message):
        KnowCoder.load(str(tiny), schema="benchmarks", engine=engine, data_dir=str(data_dir), **settings)


def test_tiny_model_through_the_transformers_engine(tiny, data_dir):
    from knowcoder_ray import KnowCoder
    from knowcoder_ray.serve.models import TextResult

    kc = KnowCoder.load(str(tiny), schema="benchmarks", data_dir=str(data_dir), max_new_tokens=8)
    results = kc.extract([TEXT, "Paris is in France."], types=["Person", "Location"], return_raw=True)
    assert all(isinstance(r, TextResult) for r in results) and [r.text for r in results] == [TEXT, "Paris is in France."]
    assert all(len(r.raw) == 1 and r.raw[0].prompt_chars > len(r.text) for r in results)  # the model really ran


def test_cli_extract_prints_json_lines(oracle, data_dir):
    env = {**os.environ, "KNOWCODER_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "knowcoder_ray.cli", "extract", "--model", str(oracle), "--engine", ORACLE,
           "--types", "Person,Location"]
    done = subprocess.run(cmd + [TEXT, "London is big."], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [[(e["text"], e.get("start")) for e in r["entities"]] for r in lines] == [
        [("Ada Lovelace", 0), ("London", 44)], [("Ada Lovelace", None), ("London", 0)]]  # kept, as written, unplaced
    bad = subprocess.run(cmd[:-1] + ["Spaceship", TEXT], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "unknown type names: Spaceship" in bad.stderr and "Traceback" not in bad.stderr


def test_importing_the_package_stays_light():
    code = "import sys, knowcoder_ray; assert knowcoder_ray.KnowCoder; print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
