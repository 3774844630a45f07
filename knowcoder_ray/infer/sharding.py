"""Schema sharding: split a schema too large for one prompt (up to the full library) into shards whose
prompt head (instruction + classes) fits a token budget; every prompt of a shard starts with its head,
which the engines' prefix reuse keys on. Every shard runs for each sentence (merged in `extraction`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from knowcoder_ray.codec.render import RELEASED, Layout, prompt_prefix, prompt_suffix, render_class, wrap
from knowcoder_ray.schema.types import SchemaLibrary, SchemaType
from knowcoder_ray.tokens import TokenCounter

_MARK = "\x00"


def shared_head(prefix_code: str) -> str:
    """The part of a wrapped prompt before the sentence part: wrapper instruction, `Input:`, class definitions."""
    return wrap(prefix_code + _MARK).split(_MARK, 1)[0]


@dataclass(frozen=True)
class Shard:
    """One prompt-sized slice of a schema for one task."""

    task: str
    types: tuple[SchemaType, ...]   # the task's types in this shard (RE: relations; their entity classes are added)
    head: str                       # shared head of every prompt of this shard
    prefix_code: str
    layout: Layout = RELEASED

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    def prompt(self, sentence: str, triggers: Sequence[tuple[str, str]] = (),
               shots: Sequence[tuple[str, str]] = ()) -> str:
        """Exactly `render_prompt(task, types, sentence, ...)`, reusing the prefix."""
        return wrap(self.prefix_code + prompt_suffix(self.task, sentence, triggers, self.layout, shots))


def make_shard(task: str, types: Sequence[SchemaType], library: SchemaLibrary | None = None,
               layout: Layout = RELEASED) -> Shard:
    code = prompt_prefix(task, types, library=library, layout=layout)
    return Shard(task, tuple(types), shared_head(code), code, layout)


def shard_schema(task: str, types: Sequence[SchemaType], budget: int, count: TokenCounter,
                 library: SchemaLibrary | None = None, layout: Layout = RELEASED) -> list[Shard]:
    """Split `types` (in order) into shards whose head fits in `budget` tokens: greedy packing on per-class
    token counts (RE also pays once per shard for the entity classes its constraints bring in), then an exact
    count of each head; a shard still over budget is halved. A class over the budget gets a shard of its own
    (the engine's official head+tail cut then applies)."""
    types = list(types)
    if not types:
        return []
    fixed = count([shared_head(prompt_prefix(task, [], library=library, layout=layout))])[0]
    with_entities = task == "re" and library is not None and layout.relation_entity_classes
    extra_names = sorted({n for t in types for n in (*t.head_types, *t.tail_types)}) if with_entities else []
    extra = [library[n] for n in extra_names if n in library]
    cost_of = dict(zip([t.name for t in types] + [e.name for e in extra],
                       count(["\n\n" + render_class(t, task, layout.relation_entity_classes) for t in types] +
                             ["\n\n" + render_class(e, task) for e in extra])))
    groups: list[list[SchemaType]] = [[]]
    used, shown = fixed, set()
    for t in types:
        brings = [n for n in dict.fromkeys((*t.head_types, *t.tail_types)) if n in cost_of and n != t.name]
        needs = [n for n in brings if n not in shown]
        if groups[-1] and used + cost_of[t.name] + sum(cost_of[n] for n in needs) > budget:
            groups.append([])  # a new shard, which shows every class `t` brings
            used, shown, needs = fixed, set(), brings
        groups[-1].append(t)
        shown.update(needs)
        used += cost_of[t.name] + sum(cost_of[n] for n in needs)
    return [s for g in groups for s in _fit(task, g, budget, count, library, layout)]


def _fit(task: str, group: list[SchemaType], budget: int, count: TokenCounter,
         library: SchemaLibrary | None, layout: Layout) -> list[Shard]:
    shard = make_shard(task, group, library, layout)
    if len(group) == 1 or count([shard.head])[0] <= budget:
        return [shard]
    mid = len(group) // 2
    return [s for half in (group[:mid], group[mid:]) for s in _fit(task, half, budget, count, library, layout)]
