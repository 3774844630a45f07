"""Request and response bodies of the HTTP API (and its OpenAPI docs). Empty or ill-typed bodies are a
422 here; limits of the served config (413) and schema problems (400) are the ingress's.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

Task = Literal["ner", "re", "ed", "eae"]


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: StrictStr = Field(min_length=1, description="event class name, e.g. 'Attack'")
    trigger: StrictStr = Field(min_length=1, description="the trigger word in the text")


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"task": "ner", "text": "Ada Lovelace worked with Charles Babbage in London.", "types": ["Person", "Location"]},
        {"task": "re", "texts": ["John works for Acme Corp."],
         "schema_code": "class Person(Entity):\n\tpass\n\nclass Organization(Entity):\n\tpass\n\n"
                        "class WorkFor(Relation):\n\tdef __init__(self, head_entity: Person, "
                        "tail_entity: Organization):\n\t\tpass\n"},
    ]})

    task: Task = Field(description="ner | re | ed | eae")
    text: StrictStr | None = Field(None, min_length=1, description="one text (or use `texts`)")
    texts: list[StrictStr] | None = Field(None, min_length=1, description="a batch of texts (or use `text`)")
    types: list[StrictStr] | None = Field(
        None, min_length=1, description="library type names to extract; with neither `types` nor `schema_code` "
                                        "the whole library of the task's kind is used (sharded)")
    schema_code: StrictStr | None = Field(
        None, min_length=1, description="your own KnowCoder-style class code (read with ast, never executed)")
    triggers: list[list[Trigger]] | None = Field(
        None, description="eae only: confirmed triggers per text; without them events run in two stages (ED, then EAE)")
    return_raw: StrictBool = Field(False, description="include every prompt's raw model output")

    @model_validator(mode="after")
    def _check(self) -> "ExtractRequest":
        # lone surrogates anywhere in the request's strings are refused, naming the field and the position
        # (JSON "\ud800" escapes decode to one: such a string is not Unicode text, not even writable as UTF-8)
        fields: list[tuple[str, str]] = [("text", self.text or ""), ("schema_code", self.schema_code or "")]
        fields += [(f"{f}[{i}]", t) for f in ("texts", "types") for i, t in enumerate(getattr(self, f) or ())]
        fields += [(f"triggers[{i}][{j}].{k}", getattr(t, k)) for i, per in enumerate(self.triggers or ())
                   for j, t in enumerate(per) for k in ("type", "trigger")]
        for where, value in fields:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"`{where}` holds a lone surrogate (U+{ord(value[e.start]):04X}) at character "
                                 f"{e.start}: not valid Unicode text") from None
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of `text` or `texts`")
        if self.texts is not None and any(not t for t in self.texts):
            raise ValueError("`texts` must not contain empty strings")
        if self.triggers is not None:
            if self.task != "eae":
                raise ValueError("`triggers` is only for task 'eae'")
            if len(self.triggers) != len(self.all_texts()):
                raise ValueError("`triggers` needs one list per text")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or ())


class EntityOut(BaseModel):
    text: str
    type: str
    start: int | None = None
    end: int | None = None


class RelationOut(BaseModel):
    type: str
    head: EntityOut
    tail: EntityOut


class ArgumentOut(BaseModel):
    role: str
    text: str
    type: str
    start: int | None = None
    end: int | None = None


class EventOut(BaseModel):
    type: str
    trigger: str
    start: int | None = None
    end: int | None = None
    arguments: list[ArgumentOut] = []


class RawOutput(BaseModel):
    stage: Task = Field(description="the prompt's task (eae requests without triggers also run ed first)")
    shard: int = Field(description="index into the response's `shards` of that stage")
    types: list[str] = Field(description="classes the prompt asked for")
    prompt_chars: int
    output: str


class TextResult(BaseModel):
    text: str
    entities: list[EntityOut] = []
    relations: list[RelationOut] = []
    events: list[EventOut] = []
    hallucinated: list[str] = Field([], description="class names the model produced that the prompts did not define")
    errors: list[str] = Field([], description="output items that could not be read")
    truncated: bool = False
    raw: list[RawOutput] | None = None


class ExtractResponse(BaseModel):
    task: Task
    model: str
    shards: dict[str, list[list[str]]] = Field(description="per stage, the type names of each schema shard")
    prompts: int = Field(description="number of prompts sent to the engine replicas")
    results: list[TextResult]


class SchemaInfo(BaseModel):
    name: str
    kind: str
    parents: list[str]
    label: str = ""
    description: str = ""
    wikidata_id: str | None = None
    head_types: list[str] | None = None
    tail_types: list[str] | None = None
    roles: list[dict] | None = None


class SchemaSearchResponse(BaseModel):
    total: int
    types: list[SchemaInfo]


class Health(BaseModel):
    status: str
    model: str
    adapter: str | None
    library_types: int
    retried_prompts: int = Field(0, description="prompts re-sent after an engine replica was lost")
