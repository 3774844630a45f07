"""The unified annotation record: a sentence with its entity mentions, relations and events.

Types are library class names (e.g. ``Person``), the same names that the prompts show and the parser
returns, so gold records, model predictions and metrics speak one vocabulary. Offsets are optional
character offsets into `text` (end exclusive); metrics match by string, as the official scorer does.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EntityMention:
    text: str
    type: str = "Entity"
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict:
        return {"text": self.text, "type": self.type, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, d: dict) -> "EntityMention":
        return cls(d["text"], d.get("type") or "Entity", d.get("start"), d.get("end"))


@dataclass(frozen=True)
class RelationMention:
    type: str
    head: EntityMention
    tail: EntityMention

    def to_dict(self) -> dict:
        return {"type": self.type, "head": self.head.to_dict(), "tail": self.tail.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RelationMention":
        return cls(d["type"], EntityMention.from_dict(d["head"]), EntityMention.from_dict(d["tail"]))


@dataclass(frozen=True)
class Argument:
    role: str
    text: str
    type: str = "Entity"
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict:
        return {"role": self.role, "text": self.text, "type": self.type, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, d: dict) -> "Argument":
        return cls(d["role"], d["text"], d.get("type") or "Entity", d.get("start"), d.get("end"))


@dataclass(frozen=True)
class EventMention:
    type: str
    trigger: str
    arguments: tuple[Argument, ...] = ()
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict:
        return {"type": self.type, "trigger": self.trigger, "start": self.start, "end": self.end,
                "arguments": [a.to_dict() for a in self.arguments]}

    @classmethod
    def from_dict(cls, d: dict) -> "EventMention":
        return cls(d["type"], d["trigger"], tuple(Argument.from_dict(a) for a in d.get("arguments") or ()),
                   d.get("start"), d.get("end"))


@dataclass
class Record:
    """One annotated sentence. `source` names the dataset (e.g. 'crossner_ai'), used for per-source scores."""

    id: str
    text: str
    entities: list[EntityMention] = field(default_factory=list)
    relations: list[RelationMention] = field(default_factory=list)
    events: list[EventMention] = field(default_factory=list)
    source: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "source": self.source,
                "entities": [e.to_dict() for e in self.entities], "relations": [r.to_dict() for r in self.relations],
                "events": [e.to_dict() for e in self.events]}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        return cls(id=str(d["id"]), text=d["text"], source=d.get("source") or "",
                   entities=[EntityMention.from_dict(e) for e in d.get("entities") or ()],
                   relations=[RelationMention.from_dict(r) for r in d.get("relations") or ()],
                   events=[EventMention.from_dict(e) for e in d.get("events") or ()])


def span_of(text: str, mention: str, start: int | None = None) -> tuple[int, int] | None:
    """Character span of `mention` in `text`: the given start if it matches there, else the first match."""
    if start is not None and text[start:start + len(mention)] == mention:
        return start, start + len(mention)
    i = text.find(mention)
    return (i, i + len(mention)) if i >= 0 and mention else None
