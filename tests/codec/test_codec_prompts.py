"""Rendered prompts compared against literal expected text, one per task, and one test per layout fact of
the released KnowCoder SFT format (raw sentence line, Python keywords as role names in ED/EAE classes and
outputs, `class Event(Entity)`, the RE layout, the wrapper)."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from knowcoder_ray.codec import (
    Layout, Parser, prompt_prefix, prompt_suffix, render_class, render_output, render_prompt, wrap,
)
from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention
from knowcoder_ray.schema import Role, SchemaLibrary, SchemaType

WRAP_HEAD = (
    "You are a highly skilled assistant at digesting and extracting information from textual content. "
    "Below is an input containing standard type definitions and textual content. Please complete it with "
    "the extracted information in the form of structured code.\nInput:\n"
)
ENTITY_BASE = 'class Entity:\n\t"""\n\tThe base class for all entities.\n\t"""\n\tdef __init__(self, name: str):\n\t\tself.name = name\n\n'

PERSON = SchemaType("Person", description="A human being.", examples=("Barack Obama", "Marie Curie"))
TVSHOW = SchemaType("TvShow", parents=("CreativeWork",), description="A television program.")
CREATIVE = SchemaType("CreativeWork", description="A work of art.")
LOCATED = SchemaType("LocatedIn", "relation", description="Located in a place.", examples=("(Ontario, Canada)",),
                     head_types=("Location",), tail_types=("Location", "Country"))
LOCATION = SchemaType("Location", description="A place.")
COUNTRY = SchemaType("Country", parents=("Location",), description="A nation.")
MARRIAGE = SchemaType("Marriage", "event", description="Two people marry.", examples=("married", "wedding"),
                      roles=(Role("spouse", ("Person",)), Role("place")))
LIB = SchemaLibrary([PERSON, TVSHOW, CREATIVE, LOCATED, LOCATION, COUNTRY, MARRIAGE])


def test_ner_prompt_literal():
    got = render_prompt("ner", [TVSHOW, PERSON], 'Michel Roux Junior hosts "Professional Master Chef".')
    assert got == WRAP_HEAD + ENTITY_BASE + (
        'class TvShow(CreativeWork):\n\t"""\n\tDescription: A television program.\n\tExamples: \n\t"""\n\tpass\n\n'
        'class Person(Entity):\n\t"""\n\tDescription: A human being.\n\tExamples: Barack Obama, Marie Curie\n\t"""\n\tpass\n\n'
        '"""\nThis is an object-oriented programming task: some Entity Classes are defined above. Please instantiate '
        'all the corresponding Entity Objects in the following sentence.\n"""\n'
        'sentence = "Michel Roux Junior hosts "Professional Master Chef"."\n\nOutput:\n'   # raw, as released
    )


def test_escape_option_writes_a_python_string_literal():
    got = render_prompt("ner", [PERSON], 'He said "hi"\nthen left.', layout=Layout(escape=True))
    assert got.endswith('sentence = "He said \\"hi\\"\\nthen left."\n\nOutput:\n')
    raw = render_prompt("ner", [PERSON], 'He said "hi"\nthen left.')
    assert raw.endswith('sentence = "He said "hi"\nthen left."\n\nOutput:\n')


def test_re_prompt_released_layout_entity_hints_and_no_entity_classes():
    got = render_prompt("re", [LOCATED], "Kurush is in Dokuzparinsky District.", library=LIB)
    assert got == WRAP_HEAD + ENTITY_BASE + (
        'class Relation:\n\t"""\n\tThe base class for all relations.\n\t"""\n'
        '\tdef __init__(self, head_entity: Entity, tail_entity: Entity):\n'
        '\t\tself.head_entity = head_entity\n\t\tself.tail_entity = tail_entity\n\n'
        'class LocatedIn(Relation):\n\t"""\n\tDescription: Located in a place.\n\tExamples: (Ontario, Canada)\n\t"""\n'
        '\tdef __init__(self, head_entity: Entity, tail_entity: Entity):\n'
        '\t\tsuper().__init__(head_entity = head_entity, tail_entity = tail_entity)\n\n'
        '"""\nThis is an object-oriented programming task: some Relation Classes and related Entity Classes are '
        'defined above. Please instantiate all the corresponding Relation Objects in the following sentence.\n"""\n'
        'sentence = "Kurush is in Dokuzparinsky District."\n\nOutput:\n'
    )


def test_re_prompt_option_includes_constraint_entity_classes():
    got = render_prompt("re", [LOCATED], "Kurush is in Dokuzparinsky District.", library=LIB,
                        layout=Layout(relation_entity_classes=True))
    assert got == WRAP_HEAD + ENTITY_BASE + (
        'class Relation:\n\t"""\n\tThe base class for all relations.\n\t"""\n'
        '\tdef __init__(self, head_entity: Entity, tail_entity: Entity):\n'
        '\t\tself.head_entity = head_entity\n\t\tself.tail_entity = tail_entity\n\n'
        'class Location(Entity):\n\t"""\n\tDescription: A place.\n\tExamples: \n\t"""\n\tpass\n\n'
        'class Country(Location):\n\t"""\n\tDescription: A nation.\n\tExamples: \n\t"""\n\tpass\n\n'
        'class LocatedIn(Relation):\n\t"""\n\tDescription: Located in a place.\n\tExamples: (Ontario, Canada)\n\t"""\n'
        '\tdef __init__(self, head_entity: Location, tail_entity: Location | Country):\n'
        '\t\tsuper().__init__(head_entity = head_entity, tail_entity = tail_entity)\n\n'
        '"""\nThis is an object-oriented programming task: some Relation Classes and related Entity Classes are '
        'defined above. Please instantiate all the corresponding Relation Objects in the following sentence.\n"""\n'
        'sentence = "Kurush is in Dokuzparinsky District."\n\nOutput:\n'
    )


def test_ed_prompt_literal():
    got = render_prompt("ed", [MARRIAGE], "They married in May.")
    assert got == WRAP_HEAD + (
        'class Event:\n\t"""\n\tThe base class for all events.\n\t"""\n'
        '\tdef __init__(self, trigger: str, arg_names, *args):\n\t\tself.trigger = trigger\n'
        '\t\tself.arguments = {}\n\t\tfor arg_name, arg_values in zip(arg_names, args):\n'
        '\t\t\tself.arguments[arg_name] = arg_values\n\n'
        'class Marriage(Event):\n\t"""\n\tDescription: Two people marry.\n\tExamples: married, wedding, \n\t"""\n'
        '\tdef __init__(self, trigger: str, *args):\n\t\targ_names = ["spouse", "place"]\n'
        '\t\tsuper().__init__(trigger = trigger, arg_names = arg_names, *args)\n\n'
        '"""\nThis is an object-oriented programming task: some Event Classes are defined above. Please instantiate '
        'all the corresponding Event Objects in the following sentence.\n"""\n'
        'sentence = "They married in May."\n\nOutput:\n'
    )


def test_eae_prompt_literal_with_confirmed_trigger():
    got = render_prompt("eae", [MARRIAGE], "Ann married Bob in Rome.", triggers=[("Marriage", "married")])
    assert got == WRAP_HEAD + ENTITY_BASE + (
        'class Event:\n\t"""\n\tThe base class for all events.\n\t"""\n'
        '\tdef __init__(self, trigger: str):\n\t\tself.trigger = trigger\n\n'
        'class Marriage(Event):\n\t"""\n\tDescription: Two people marry.\n\t"""\n'
        '\tdef __init__(\n\t\tself,\n\t\ttrigger: str, # Examples: married, wedding, \n'
        '\t\tspouse: List[ Person ],\n\t\tplace: List[ Entity ]\n\t):\n'
        '\t\tsuper().__init__(trigger = trigger)\n\t\tself.spouse = spouse\n\t\tself.place = place\n\n'
        '"""\nThis is an object-oriented programming task: some Event Classes are defined above. Please instantiate '
        'all the corresponding Event Objects in the following sentence. It is important to note that the triggers '
        'of the events are confirmed as follows: "married" is the trigger of event type "Marriage".\n"""\n'
        'sentence = "Ann married Bob in Rome."\n\nOutput:\n'
    )


def test_prefix_and_suffix_compose_the_prompt():
    for task, types in [("ner", [PERSON]), ("re", [LOCATED]), ("ed", [MARRIAGE]), ("eae", [MARRIAGE])]:
        prompt = render_prompt(task, types, "A sentence.", library=LIB)
        assert prompt == wrap(prompt_prefix(task, types, library=LIB) + prompt_suffix(task, "A sentence."))


FROM_EVENT = SchemaType("Voyage", "event", description="A long journey by sea.", examples=("sailed",),
                        roles=(Role("vessel"), Role("from"), Role("to")))


def test_keyword_roles_in_ed_and_eae_classes_and_outputs():
    assert render_class(FROM_EVENT, "ed") == (
        'class Voyage(Event):\n\t"""\n\tDescription: A long journey by sea.\n\tExamples: sailed, \n\t"""\n'
        '\tdef __init__(self, trigger: str, *args):\n\t\targ_names = ["vessel", "from", "to"]\n'
        '\t\tsuper().__init__(trigger = trigger, arg_names = arg_names, *args)')
    assert render_class(FROM_EVENT, "eae") == (
        'class Voyage(Event):\n\t"""\n\tDescription: A long journey by sea.\n\t"""\n'
        '\tdef __init__(\n\t\tself,\n\t\ttrigger: str, # Examples: sailed, \n'
        '\t\tvessel: List[ Entity ],\n\t\tfrom: List[ Entity ],\n\t\tto: List[ Entity ]\n\t):\n'
        '\t\tsuper().__init__(trigger = trigger)\n\t\tself.vessel = vessel\n\t\tself.from = from\n\t\tself.to = to')
    r = Record("1", "They sailed from Lisbon.", events=[EventMention("Voyage", "sailed", (Argument("from", "Lisbon"),))])
    out = render_output("eae", r)
    assert out == 'results = [\n\tVoyage(trigger = "sailed", from = [Entity("Lisbon")])\n]'
    (e,) = Parser.for_types("eae", [FROM_EVENT]).parse(out).events
    assert [(a.role, a.text) for a in e.arguments] == [("from", "Lisbon")]


def test_entity_class_named_event():
    event = SchemaType("Event", description="Something that happens.", examples=("World War II", "Brexit"))
    got = prompt_prefix("ner", [event])
    assert got == ENTITY_BASE + (
        'class Event(Entity):\n\t"""\n\tDescription: Something that happens.\n\tExamples: World War II, Brexit\n'
        '\t"""\n\tpass\n\n')
    r = Parser.for_types("ner", [event]).parse('results = [\n\tEvent("Brexit")\n]')
    assert [(x.type, x.text) for x in r.entities] == [("Event", "Brexit")] and not r.hallucinated


def test_wrapper_and_few_shot_examples():
    assert wrap("CODE") == WRAP_HEAD + "CODE\nOutput:\n"
    got = prompt_suffix("ner", "Bob sleeps.", shots=[("Ann runs.", 'results = [\n\tPerson("Ann")\n]')])
    instruction = ('"""\nThis is an object-oriented programming task: some Entity Classes are defined above. Please '
                   'instantiate all the corresponding Entity Objects in the following sentence.\n"""\n')
    assert got == (instruction + 'sentence = "Ann runs."\nresults = [\n\tPerson("Ann")\n]\n\n'
                   + instruction + 'sentence = "Bob sleeps."\n')


OFFICIAL = Path("/work/.mirror/ICT-GoKnow+KnowCoder/repo")


def _released_samples():
    if not (OFFICIAL / "HEAD").exists() and not (OFFICIAL / ".git").exists():
        return None
    out = subprocess.run(["git", "-C", str(OFFICIAL), "show", "HEAD:sft/data/example_data/example_data.jsonl"],
                         capture_output=True, text=True)
    return [json.loads(x) for x in out.stdout.splitlines()] if out.returncode == 0 else None


def test_released_sft_samples_byte_for_byte():
    """When the released KnowCoder repository is at hand (read at test time, never copied here): its
    classes read with our library reader and rendered again give each sample's prompt and output exactly."""
    from knowcoder_ray.schema.pyfile import read_pyfile

    samples = _released_samples()
    if samples is None:
        pytest.skip("the released KnowCoder repository is not available here")
    assert len(samples) == 9
    for i, d in enumerate(samples):
        prompt, output = d["one-stage"]["zero-shot"]["prompt"], d["one-stage"]["output"]
        task = ("ner" if "Entity Objects" in prompt else "re" if "Relation Objects" in prompt
                else "ed" if "arg_names" in prompt else "eae")
        problems = []
        types = read_pyfile(prompt[:prompt.index('"""\nThis is an object')],
                            {"ner": "entity", "re": "relation"}.get(task, "event"), f"sample {i}", problems)
        triggers = [(t, g) for g, t in re.findall(r'"([^"]*)" is the trigger of event type "([^"]*)"', prompt)]
        assert problems == [] and prompt_prefix(task, types) + prompt_suffix(task, d["sentence"], triggers) == prompt, i
        parsed = Parser.for_types(task, types).parse(output)
        assert render_output(task, parsed.to_record(str(i), d["sentence"])) == output and not parsed.hallucinated, i


def test_rendered_classes_are_valid_python_syntax():
    import ast
    for t in LIB:
        for task in (("ed", "eae") if t.kind == "event" else (None,)):
            ast.parse(render_class(t, task))  # parsed, never executed


def test_outputs_literal():
    r = Record("1", "Michel Roux Junior hosts Professional Master Chef",
               [EntityMention("Professional Master Chef", "TvShow"), EntityMention("Michel Roux Junior", "Person")],
               [RelationMention("LocatedIn", EntityMention("Kurush", "Location"), EntityMention("Dokuzparinsky District", "Location"))],
               [EventMention("Marriage", "married", (Argument("spouse", "Ann"), Argument("spouse", "Bob"), Argument("place", "Rome", "Location")))])
    assert render_output("ner", r) == 'results = [\n\tTvShow("Professional Master Chef"),\n\tPerson("Michel Roux Junior")\n]'
    assert render_output("re", r) == 'results = [\n\tLocatedIn(Entity("Kurush"), Entity("Dokuzparinsky District"))\n]'
    assert render_output("re", r, typed_relations=True) == \
        'results = [\n\tLocatedIn(Location("Kurush"), Location("Dokuzparinsky District"))\n]'
    assert render_output("ed", r) == 'results = [\n\tMarriage("married")\n]'
    assert render_output("eae", r) == ('results = [\n\tMarriage(trigger = "married", spouse = [Entity("Ann"), '
                                       'Entity("Bob")], place = [Location("Rome")])\n]')
    assert render_output("ner", Record("2", "nothing")) == "results = []"


def test_design_doc_output_examples_parse():
    ner = Parser("ner", ["TvShow", "Person"]).parse(
        'results = [ TvShow("Professional Master Chef"), Person("Michel Roux Junior") ]')
    assert [(e.type, e.text) for e in ner.entities] == [("TvShow", "Professional Master Chef"), ("Person", "Michel Roux Junior")]
    re_ = Parser("re", ["LocatedIn"]).parse('results = [ LocatedIn(Entity("Kurush"), Entity("Dokuzparinsky District")) ]')
    assert [(r.type, r.head.text, r.tail.text) for r in re_.relations] == [("LocatedIn", "Kurush", "Dokuzparinsky District")]
    ed = Parser("ed", ["Marriage"]).parse('results = [ Marriage("married") ]')
    assert [(e.type, e.trigger) for e in ed.events] == [("Marriage", "married")]
    eae = Parser("eae", ["Education"]).parse(
        'results = [ Education(trigger="graduate", institution=[Entity("MIT")], student=[Entity("Ann"), Entity("Bo")]) ]')
    (ev,) = eae.events
    assert ev.trigger == "graduate" and [(a.role, a.text) for a in ev.arguments] == \
        [("institution", "MIT"), ("student", "Ann"), ("student", "Bo")]
    assert Parser("ner", ["Person"]).parse("results = []").entities == []
