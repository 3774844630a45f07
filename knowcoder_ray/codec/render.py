"""Rendering, the forward direction of the codec: schema types -> class code, records -> outputs,
and the full KnowCoder prompts for NER, RE, ED and EAE inside the official Input:/Output: wrapper.

The layout follows the released KnowCoder schema-following data byte for byte (tab indents, docstrings,
`List[ Entity ]` role hints, Python keywords as role names, the sentence line written raw, relation classes
with `Entity` hints and no entity classes, `results = [...]`), so the released KnowCoder-7B models can be
prompted unchanged. `Layout` names the two departures a user may want instead.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from knowcoder_ray.records import EventMention, Record
from knowcoder_ray.schema.classcode import (  # noqa: F401  (quote, render_class: part of the codec API)
    ENTITY_BASE, EVENT_BASE_EAE, EVENT_BASE_ED, RELATION_BASE, quote, render_class,
)
from knowcoder_ray.schema.types import SchemaLibrary, SchemaType

TASKS = ("ner", "re", "ed", "eae")
TASK_KIND = {"ner": "entity", "re": "relation", "ed": "event", "eae": "event",
             "ee": "event"}  # ee: events in two stages (ED, then EAE), a plan of the extraction

WRAPPER_INSTRUCTION = (
    "You are a highly skilled assistant at digesting and extracting information from textual content. "
    "Below is an input containing standard type definitions and textual content. "
    "Please complete it with the extracted information in the form of structured code."
)
_INSTRUCTION = ("This is an object-oriented programming task: some {} Classes are defined above. "
                "Please instantiate all the corresponding {} Objects in the following sentence.")
TASK_INSTRUCTION = {"ner": _INSTRUCTION.format("Entity", "Entity"),
                    "re": _INSTRUCTION.format("Relation Classes and related Entity", "Relation"),
                    "ed": _INSTRUCTION.format("Event", "Event"), "eae": _INSTRUCTION.format("Event", "Event")}
STOP = '"""'  # generation stops at the closing triple quote of the next docstring


@dataclass(frozen=True)
class Layout:
    """How prompts are written; the default is the released layout."""

    escape: bool = False  # sentence and trigger hints as Python literals (`quote`: valid Python); released: raw text
    # RE prompts also define the entity classes relations name and type the head/tail hints with them;
    # released: `head_entity: Entity, tail_entity: Entity` only
    relation_entity_classes: bool = False


RELEASED = Layout()


def prompt_types(task: str, types: Iterable[SchemaType], library: SchemaLibrary | None = None,
                 layout: Layout = RELEASED) -> list[SchemaType]:
    """The task's types (RE with `relation_entity_classes`: after the entity types they name)."""
    types = list(types)
    kind = TASK_KIND[task]
    if bad := [t.name for t in types if t.kind != kind]:
        raise ValueError(f"{task} prompt takes {kind} types; got {bad}")
    if task != "re" or library is None or not layout.relation_entity_classes:
        return types
    refs = dict.fromkeys(n for t in types for n in (*t.head_types, *t.tail_types) if n in library)
    return [library[n] for n in refs] + types


def _literal(s: str, layout: Layout) -> str:
    return quote(s) if layout.escape else f'"{s}"'


def render_instruction(task: str, triggers: Sequence[tuple[str, str]] = (), layout: Layout = RELEASED) -> str:
    text = TASK_INSTRUCTION[task]
    if task == "eae" and triggers:
        confirmed = "; ".join(f"{_literal(trig, layout)} is the trigger of event type {_literal(typ, layout)}"
                              for typ, trig in triggers)
        text += f" It is important to note that the triggers of the events are confirmed as follows: {confirmed}."
    return f'"""\n{text}\n"""\n'


def wrap(code: str) -> str:
    """The fixed wrapper used at SFT and inference time."""
    return f"{WRAPPER_INSTRUCTION}\nInput:\n{code}\nOutput:\n"


def render_prompt(task: str, types: Iterable[SchemaType], sentence: str, *,
                  library: SchemaLibrary | None = None, triggers: Sequence[tuple[str, str]] = (),
                  layout: Layout = RELEASED, shots: Sequence[tuple[str, str]] = ()) -> str:
    """Full prompt. `triggers` (EAE only) lists the confirmed (event type, trigger) pairs; `shots` are
    (sentence, output) examples written before the sentence (few-shot prompting)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return wrap(prompt_prefix(task, types, library=library, layout=layout)
                + prompt_suffix(task, sentence, triggers, layout, shots))


def prompt_prefix(task: str, types: Iterable[SchemaType], *, library: SchemaLibrary | None = None,
                  layout: Layout = RELEASED) -> str:
    """The code before the sentence, the same for every sentence of a schema shard: base, then type classes."""
    shown = [render_class(t, task, layout.relation_entity_classes) for t in prompt_types(task, types, library, layout)]
    bases = {"ner": [ENTITY_BASE], "re": [ENTITY_BASE, RELATION_BASE], "ed": [EVENT_BASE_ED],
             "eae": [ENTITY_BASE, EVENT_BASE_EAE]}[task]
    return "\n\n".join([*bases, *shown]) + "\n\n"


def prompt_suffix(task: str, sentence: str, triggers: Sequence[tuple[str, str]] = (), layout: Layout = RELEASED,
                  shots: Sequence[tuple[str, str]] = ()) -> str:
    """The instruction and sentence line, after the few-shot `shots` written the same way with their outputs."""
    examples = "".join(f"{render_instruction(task, (), layout)}sentence = {_literal(s, layout)}\n{out}\n\n"
                       for s, out in shots)
    return examples + render_instruction(task, triggers, layout) + f"sentence = {_literal(sentence, layout)}\n"


# ---- outputs -----------------------------------------------------------------------------------------

def _entity_call(type_: str, text: str) -> str:
    return f"{type_}({quote(text)})"


def render_event(e: EventMention, with_arguments: bool) -> str:
    if not with_arguments:
        return _entity_call(e.type, e.trigger)
    roles: dict[str, list[str]] = {}
    for a in e.arguments:
        roles.setdefault(a.role, []).append(_entity_call(a.type or "Entity", a.text))
    parts = [f"trigger = {quote(e.trigger)}"] + [f"{r} = [{', '.join(v)}]" for r, v in roles.items()]
    return f"{e.type}({', '.join(parts)})"


def render_output(task: str, record: Record, typed_relations: bool = False) -> str:
    """The expected completion for `record` (what the model should generate), e.g.
    ``results = [\\n\\tPerson("Michel Roux Junior")\\n]``. Relations use ``Entity(...)`` heads and tails
    as in the released SFT data; `typed_relations` writes the entity types instead (instance codes)."""
    if task == "ner":
        items = [_entity_call(e.type, e.text) for e in record.entities]
    elif task == "re":
        def arg(m):
            return _entity_call(m.type if typed_relations and m.type else "Entity", m.text)
        items = [f"{r.type}({arg(r.head)}, {arg(r.tail)})" for r in record.relations]
    elif task in ("ed", "eae"):
        items = [render_event(e, task == "eae") for e in record.events]
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return "results = [\n" + ",\n".join(f"\t{i}" for i in items) + "\n]" if items else "results = []"
