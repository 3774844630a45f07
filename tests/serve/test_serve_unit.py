"""The serving layer without Ray: reading user class code, the config and its Serve file, the request
mapping (limits, unknown types) and the merge of shard outputs into a response."""
import argparse
from pathlib import Path

import pytest
import yaml

from knowcoder_ray.codec.parse import Parser
from knowcoder_ray.infer.extraction import parse_rows
from knowcoder_ray.tokens import TokenCounter
from knowcoder_ray.schema.types import Role, SchemaLibrary, SchemaType
from knowcoder_ray.schema.classcode import ClassCodeError, read_class_code
from knowcoder_ray.serve.config import ServeConfig
from knowcoder_ray.serve.extract import RequestError, check_limits, make_plan, resolve_schema, run, search
from knowcoder_ray.serve.models import ExtractRequest

SERVE_YAML = Path(__file__).resolve().parents[2] / "knowcoder_ray/serve/serve_config.yaml"
LIB = SchemaLibrary([
    SchemaType("Person", "entity", description="A human being."),
    SchemaType("Scientist", "entity", parents=("Person",), description="A person who does research."),
    SchemaType("Location", "entity", description="A place."),
    SchemaType("Organization", "entity", description="A company or institution."),
    SchemaType("WorkFor", "relation", head_types=("Person",), tail_types=("Organization",)),
    SchemaType("LiveIn", "relation", head_types=("Person",), tail_types=("Location",)),
    SchemaType("ConflictEvent", "event"),
    SchemaType("Attack", "event", parents=("ConflictEvent",), roles=(Role("attacker", ("Person",)), Role("target"))),
])
CODE = '''from typing import List

class Person(Entity):
\t"""
\tDescription: A human being.
\tExamples: Ada Lovelace, Alan Turing
\t"""
\tpass

class Organization(Entity):
\tpass

class WorkFor(Relation):
\tdef __init__(self, head_entity: Person, tail_entity: Organization | "Company"):
\t\tsuper().__init__(head_entity=head_entity, tail_entity=tail_entity)

class Attack(Event):
\tdef __init__(self, trigger: str, attacker: List[ Person ], target: List[ Entity ]):
\t\tsuper().__init__(trigger=trigger)

class Marry(Event):
\tdef __init__(self, trigger: str, *args):
\t\targ_names = ["spouse", "place"]
\t\tsuper().__init__(trigger=trigger, arg_names=arg_names, *args)
'''


def test_class_code_is_read_with_kinds_constraints_and_roles():
    types = {t.name: t for t in read_class_code(CODE)}
    assert [t.kind for t in types.values()] == ["entity", "entity", "relation", "event", "event"]
    assert types["Person"].description == "A human being." and types["Person"].examples == ("Ada Lovelace", "Alan Turing")
    assert types["WorkFor"].head_types == ("Person",) and types["WorkFor"].tail_types == ("Organization", "Company")
    assert types["Attack"].roles == (Role("attacker", ("Person",)), Role("target", ()))
    assert [r.name for r in types["Marry"].roles] == ["spouse", "place"]
    # a subclass of a served library type takes its kind from the library
    (sub,) = read_class_code("class Chemist(Scientist):\n\tpass\n", LIB)
    assert (sub.kind, sub.parents) == ("entity", ("Scientist",))


@pytest.mark.parametrize("code, line, words", [
    ("class A(Entity)\n\tpass\n", 1, "syntax error"),
    ("class A(Entity):\n\tpass\n\nclass B(Foo):\n\tpass\n", 4, "unknown base class 'Foo'"),
    ("class A(Entity):\n\tpass\nopen('/tmp/x', 'w')\n", 3, "only class definitions"),
    ("x = __import__('os').system('true')\n", 1, "only class definitions"),
    ("class A(Entity, Relation):\n\tpass\n", 1, "mixed kinds"),
    ("class A(Entity):\n\tpass\nclass A(Entity):\n\tpass\n", 3, "defined twice"),
    ("@register\nclass A(Entity):\n\tpass\n", 2, "decorators"),
    ("class A(mod.Base):\n\tpass\n", 1, "plain name"),
    ("import os\n", None, "defines no"),
])
def test_malformed_class_code_names_the_line(code, line, words):
    with pytest.raises(ClassCodeError) as e:
        read_class_code(code, LIB)
    assert e.value.line == line and words in e.value.message


def test_request_schema_resolution_and_limits():
    cfg = ServeConfig(model_dir="m", library="l", max_text_chars=10, max_texts=2)
    with pytest.raises(RequestError) as e:
        check_limits(ExtractRequest(task="ner", text="x" * 11), cfg)
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        check_limits(ExtractRequest(task="ner", texts=["a", "b", "c"]), cfg)
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        resolve_schema(ExtractRequest(task="ner", text="a", types=["Person", "Nope", "Zzz"]), LIB)
    assert e.value.status == 400 and e.value.detail["unknown"] == ["Nope", "Zzz"]
    with pytest.raises(RequestError) as e:
        resolve_schema(ExtractRequest(task="re", text="a", types=["Person"]), LIB)
    assert e.value.status == 400 and e.value.detail["wrong_kind"] == {"Person": "entity"}
    # user classes take precedence over library types of the same name; library names may be mixed in
    # a head/tail type defined nowhere ("Company") is refused, naming it
    with pytest.raises(RequestError) as e:
        resolve_schema(ExtractRequest(task="ner", text="a", schema_code=CODE), LIB)
    assert e.value.status == 400 and "'Company'" in e.value.detail["error"]
    code = CODE + "\nclass Company(Organization):\n\tpass\n"
    lib, types = resolve_schema(ExtractRequest(task="ner", text="a", schema_code=code, types=["Location"]), LIB)
    assert [t.name for t in types] == ["Person", "Organization", "Company", "Location"]
    assert lib["Person"].examples == ("Ada Lovelace", "Alan Turing") and "Scientist" in lib
    assert resolve_schema(ExtractRequest(task="ed", text="a"), LIB) == (LIB, None)  # whole library


def _scripted(outputs_by_types: dict[tuple[str, ...], str], sentence: str = ""):
    """An executor answering the prompts about `sentence` by the classes they show, `results = []`
    otherwise (it checks the merge, not a model)."""
    def output(row):
        return outputs_by_types.get(tuple(row["names"]), "results = []") if sentence in row["prompt"] else "results = []"

    def execute(rows):
        return parse_rows(rows, map(output, rows), {r["plan"]: LIB for r in rows})
    return execute


def test_shard_outputs_are_parsed_per_shard_merged_and_deduplicated():
    req = ExtractRequest(task="ner", texts=["Ada met Bob in Paris.", "Nothing."], return_raw=True)
    plan = make_plan(req, LIB, None, 60, TokenCounter())  # small budget: one class per shard
    names = [list(s.names) for s in plan.shards1]
    assert len(names) > 1 and sum(names, []) == LIB.names("entity")
    body = run(req, plan, _scripted({
        ("Person",): 'results = [ Person("Ada"), Person("Bob"), Dragon("Smaug") ]',
        ("Scientist",): 'results = [ Scientist("Ada"), Person("Bob") ]',  # Person is not in this shard
        ("Location",): 'results = [ Location("Paris"), Location("Paris"), Location("Rom',
    }, sentence="Ada met Bob"))
    assert body["shards"] == {"ner": names} and body["prompts"] == len(names) * 2
    first = body["results"][0]
    assert [(e["type"], e["text"]) for e in first["entities"]] == [
        ("Person", "Ada"), ("Person", "Bob"), ("Scientist", "Ada"), ("Location", "Paris")]
    assert first["hallucinated"] == ["Dragon", "Person"] and first["truncated"]
    for raw in first["raw"]:  # the raw outputs parse to the same mentions with an independent Parser
        parsed = Parser.for_types("ner", [LIB[n] for n in raw["types"]], LIB).parse(raw["output"])
        assert all(e.to_dict() in [{**x, "start": None, "end": None} for x in first["entities"]]
                   for e in parsed.entities if e.type in raw["types"])
    assert [(e["start"], e["end"]) for e in first["entities"]] == [(0, 3), (8, 11), (0, 3), (15, 20)]
    assert body["results"][1]["entities"] == [] and len(body["results"][1]["raw"]) == len(names)


def test_events_two_stage_and_confirmed_triggers():
    req = ExtractRequest(task="eae", text="Rebels attacked the town.")
    plan = make_plan(req, LIB, None, 10_000, TokenCounter())
    body = run(req, plan, _scripted({
        ("ConflictEvent",): 'results = [ ConflictEvent("attacked") ]',
        ("Attack",): 'results = [ Attack(trigger="attacked", attacker=[Entity("Rebels")], target=[Entity("town")]) ]',
    }))
    assert body["shards"] == {"ed": [["ConflictEvent"]], "eae": [["Attack"]]} and body["prompts"] == 2
    (event,) = body["results"][0]["events"]
    assert event["type"] == "Attack" and [(a["role"], a["text"]) for a in event["arguments"]] == [
        ("attacker", "Rebels"), ("target", "town")]
    req = ExtractRequest(task="eae", texts=["Rebels attacked the town.", "Calm."],
                         triggers=[[{"type": "Attack", "trigger": "attacked"}], []])
    lib, types = resolve_schema(req, LIB)
    body = run(req, make_plan(req, lib, types, 10_000, TokenCounter()), _scripted({
        ("Attack",): 'results = [ Attack(trigger="attacked", attacker=[Entity("Rebels")]) ]'}))
    assert body["shards"] == {"eae": [["Attack"]]} and body["prompts"] == 1
    assert body["results"][0]["events"][0]["arguments"][0]["text"] == "Rebels" and body["results"][1]["events"] == []


def test_schema_search_ranks_names_before_descriptions():
    total, page = search(LIB, "person")  # "Person" by name, "Scientist" by its description
    assert total == 2 and [t.name for t in page] == ["Person", "Scientist"]
    assert [t.name for t in search(LIB, "", kind="relation")[1]] == ["WorkFor", "LiveIn"]
    assert search(LIB, "research")[1][0].name == "Scientist" and search(LIB, "zzz") == (0, [])


def test_config_and_serve_file():
    with pytest.raises(ValueError, match="unknown setting 'replicas'"):
        ServeConfig.model_validate({"model_dir": "m", "library": "l", "replicas": 2})
    with pytest.raises(ValueError, match="engine_config\n.*unknown setting 'temperature'"):
        ServeConfig.model_validate({"model_dir": "m", "library": "l", "engine_config": {"temperature": 0.7}})
    with pytest.raises(ValueError, match="model_dir\n.*Field required"):
        ServeConfig.model_validate({"library": "l"})
    assert ServeConfig(model_dir="m", library="l", num_replicas=2).engine_options()["num_replicas"] == 2
    auto = ServeConfig(model_dir="m", library="l").engine_options()
    assert auto["autoscaling_config"]["max_replicas"] >= auto["autoscaling_config"]["min_replicas"]

    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    doc = yaml.safe_load(SERVE_YAML.read_text())
    deploy = ServeDeploySchema.model_validate(doc)
    assert doc["http_options"]["host"] == "127.0.0.1"
    (app,) = deploy.applications
    assert app.import_path == "knowcoder_ray.serve.app:build_app"
    cfg = ServeConfig.model_validate(app.args)
    AutoscalingConfig(**cfg.autoscaling)  # Serve accepts the autoscaling settings


def test_cli_binds_loopback_by_default(tmp_path):
    from knowcoder_ray.cli import build_parser
    from knowcoder_ray.serve.cli import config_from_args

    conf = tmp_path / "serve.yaml"
    conf.write_text(yaml.safe_dump({"model_dir": "m", "library": "lib.parquet", "engine_config": {"max_new_tokens": 9}}))
    args = build_parser().parse_args(["serve", "--config", str(conf), "--replicas", "2", "--max-new-tokens", "32",
                                      "--set", "engine_config.device=cpu"])
    assert isinstance(args, argparse.Namespace) and args.host == "127.0.0.1"
    cfg = config_from_args(args)
    assert (cfg.model_dir, cfg.num_replicas, cfg.engine_config.max_new_tokens, cfg.engine_config.device) == ("m", 2, 32, "cpu")


@pytest.mark.parametrize("flag, value", [("--port", "99999"), ("--port", "0"), ("--port", "http"),
                                         ("--client-timeout", "-5"), ("--client-timeout", "0")])
def test_cli_refuses_a_bad_port_or_timeout_before_starting_anything(capsys, flag, value):
    from knowcoder_ray.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["serve", flag, value])
    assert e.value.code == 2 and f"argument {flag}: expected a whole number from 1 to " in capsys.readouterr().err
    assert build_parser().parse_args(["serve", "--port", "8001"]).port == 8001
