"""Sharded extraction: records -> prompt rows (one per record and schema shard) -> texts -> parsed and merged
predictions, clean for users or as written for evaluation (`TaskPlan`). Executing the rows is a function handed
in: in-process (`local_executor`), on Ray Data (`eval.dataflow`) or in the Serve ingress. Rows are plain dicts
of strings and ints (Arrow friendly).

Two-stage events ("ee", as the official evaluation runs them): stage 1 is ED over the coarse types (each event
type's top ancestor in the schema, e.g. `ConflictEvent`); stage 2 is EAE over the subtypes of those detected.
A trigger is confirmed only with a type the prompt defines (released data: `"wife" is the trigger of event type
"Marriage"` next to `class Marriage`), so a coarse type the stage-2 prompt lacks is not named, as officially.
The final events are the stage-2 events, plus any stage-1 event of a leaf type whose trigger stage 2 did not
return (so one-level schemas keep their detections).
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field

from knowcoder_ray.codec.parse import Parser
from knowcoder_ray.codec.render import RELEASED, TASK_KIND, Layout, prompt_types, render_output
from knowcoder_ray.infer.engine import Prompt
from knowcoder_ray.infer.sharding import Shard, shard_schema
from knowcoder_ray.records import EventMention, Record
from knowcoder_ray.schema.types import SchemaLibrary, SchemaType
from knowcoder_ray.tokens import TokenCounter

STAGE1_TASK = {"ner": "ner", "re": "re", "ed": "ed", "ee": "ed"}

Executor = Callable[[list[dict]], list[dict]]  # rows -> the same rows with "output" and parse fields


def coarse_name(library: SchemaLibrary, name: str) -> str:
    """The top ancestor of an event type within the schema (itself when it has no parent there)."""
    up = [a for a in library.ancestors(name) if a in library and library[a].kind == "event"]
    return up[-1] if up else name


class TaskPlan:
    """How one task runs over one schema: the shards of stage 1 and, for "ee", of stage 2.

    key: unique among a run's plans (rows carry it back). types: default the schema's of the task's kind (events:
    the leaf types), sharded to fit `budget` tokens per prompt head. shots: few-shot records, reduced to the
    prompt's classes. as_written: predictions as the model wrote them (evaluation: the metrics decide what
    repeats and hallucinations count); else only the prompts' classes and roles, each mention once.
    """

    def __init__(self, key: str, task: str, library: SchemaLibrary, types: Sequence[SchemaType] | None = None,
                 budget: int = 3000, count: TokenCounter | None = None, layout: Layout = RELEASED,
                 shots: Sequence[Record] = (), as_written: bool = False) -> None:
        if task not in STAGE1_TASK:
            raise ValueError(f"unknown plan task {task!r}; expected one of {tuple(STAGE1_TASK)}")
        self.key, self.task, self.library, self.budget, self.two_stage = key, task, library, budget, task == "ee"
        self.layout, self.shots, self.as_written = layout, list(shots), as_written
        self._shot_cache: dict[tuple, list[tuple[str, str]]] = {}
        self.count = count or TokenCounter()
        if types is None:
            types = library.of_kind(TASK_KIND[task])
            if TASK_KIND[task] == "event":  # the leaf event types
                parents = {p for t in types for p in t.parents}
                types = [t for t in types if t.name not in parents]
        self.types = list(types)
        self.leaf_names = {t.name for t in self.types}
        stage1 = self.types
        if task == "ee":  # detection over the coarse types
            stage1 = [library[n] for n in dict.fromkeys(coarse_name(library, t.name) for t in self.types)]
        self.shards1 = shard_schema(STAGE1_TASK[task], stage1, budget, self.count, library, layout)
        self._shards2: OrderedDict[frozenset[str], list[Shard]] = OrderedDict()

    def _shot_pairs(self, stage: int, shard: Shard) -> list[tuple[str, str]]:
        """(sentence, output) of each shot, keeping only mentions of the shard's classes."""
        key = (stage, shard.names)
        if key not in self._shot_cache:
            names = set(shard.names)
            self._shot_cache[key] = pairs = []
            for r in self.shots:  # render_output writes the mentions of the shard's task only
                events = r.events
                if self.two_stage and stage == 1:
                    events = [EventMention(coarse_name(self.library, e.type), e.trigger) for e in events]
                kept = Record(r.id, r.text, [e for e in r.entities if e.type in names],
                              [x for x in r.relations if x.type in names], [e for e in events if e.type in names])
                pairs.append((r.text, render_output(shard.task, kept)))
        return self._shot_cache[key]

    def _row(self, record: Record, stage: int, index: int, shard: Shard, triggers=()) -> dict:
        triggers = [(t, trig) for t, trig in triggers if t in shard.names]  # hints name defined classes only
        shown = prompt_types(shard.task, shard.types, self.library, shard.layout)  # RE: with entity classes
        return {"plan": self.key, "record_id": record.id, "source": record.source, "task": shard.task,
                "stage": stage, "shard": index,
                "prompt": shard.prompt(record.text, triggers, self._shot_pairs(stage, shard) if self.shots else ()),
                "prefix_chars": len(shard.head), "names": [t.name for t in shown]}

    def stage1_rows(self, record: Record) -> list[dict]:
        return [self._row(record, 1, i, s) for i, s in enumerate(self.shards1)]

    def stage2_rows(self, record: Record, detected_events: Sequence[EventMention]) -> list[dict]:
        """EAE rows over the subtypes of the detected coarse types (shards cached: equal sets share prefixes)."""
        triggers = list(dict.fromkeys((e.type, e.trigger) for e in detected_events))
        key = frozenset(t for t, _ in triggers)
        if key not in self._shards2:
            types = [t for t in self.types if coarse_name(self.library, t.name) in key]
            self._shards2[key] = shard_schema("eae", types, self.budget, self.count, self.library, self.layout)
            while len(self._shards2) > 256:
                self._shards2.popitem(last=False)
        return [self._row(record, 2, i, s, triggers) for i, s in enumerate(self._shards2[key])]


class ConfirmedTriggerPlan(TaskPlan):
    """EAE with triggers given per record id (a user's confirmed triggers): no detection stage; each
    record's prompts define the classes of its given event types (sharded like any schema)."""

    def __init__(self, key: str, library: SchemaLibrary, triggers: dict[str, list[tuple[str, str]]],
                 budget: int, count: TokenCounter) -> None:
        super().__init__(key, "ee", library, [], budget, count)  # no types to detect: no stage-1 shards
        self.triggers = triggers

    def stage2_rows(self, record: Record, detected_events) -> list[dict]:
        pairs = self.triggers.get(record.id) or []
        types = [self.library[n] for n in dict.fromkeys(t for t, _ in pairs)]
        shards = shard_schema("eae", types, self.budget, self.count, self.library)
        return [self._row(record, 2, i, s, pairs) for i, s in enumerate(shards)]


# ---- parsing -------------------------------------------------------------------------------------------

# (id(library), task, names) -> (weak reference to that library, parser). The weak reference guards
# against a new library that reuses a freed one's id (per-request libraries from user class code).
_PARSERS: OrderedDict[tuple, tuple[weakref.ref, Parser]] = OrderedDict()
PARSED = ("entities", "relations", "events", "errors", "hallucinated", "truncated")  # what parse_row adds


def parse_row(row: dict, library: SchemaLibrary) -> dict:
    """Parse one row's output against the classes its prompt showed; adds the parse fields."""
    key = (id(library), row["task"], tuple(row["names"]))
    cached = _PARSERS.get(key)
    if cached is not None and cached[0]() is library:
        parser = cached[1]
    else:
        parser = Parser.for_types(row["task"], [library[n] for n in row["names"]], library)
        _PARSERS[key] = (weakref.ref(library), parser)
        while len(_PARSERS) > 512:
            _PARSERS.popitem(last=False)
    parsed = parser.parse(row["output"]).to_dict(row["record_id"], "", row["source"])
    return {**row, **{k: parsed[k] for k in PARSED}}


def row_prompts(rows: Iterable[dict]) -> list[Prompt]:
    return [Prompt(r["prompt"], r["prefix_chars"]) for r in rows]


def parse_rows(rows: Iterable[dict], outputs: Iterable[str], libraries: dict[str, SchemaLibrary]) -> list[dict]:
    """The rows with the model's outputs (in row order), each parsed against its plan's library."""
    return [parse_row({**r, "output": o}, libraries[r["plan"]]) for r, o in zip(rows, outputs)]


def local_executor(generate: Callable[[list[Prompt]], list[str]], plans: Iterable[TaskPlan]) -> Executor:
    """Runs rows in this process: one engine call for all rows."""
    libraries = {p.key: p.library for p in plans}
    return lambda rows: parse_rows(rows, generate(row_prompts(rows)), libraries)


# ---- merging -------------------------------------------------------------------------------------------

@dataclass
class Extraction:
    """The merged prediction for one record of one plan, with what the shards' outputs looked like."""

    record: Record
    outputs: list[dict] = field(default_factory=list)  # per row: stage, shard, output, errors, hallucinated
    stage1_events: list[EventMention] = field(default_factory=list)


def dedupe(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def _clean(parsed: Record, names: set[str], library: SchemaLibrary) -> Record:
    """Only the classes the prompt defined (and each event's own roles), each mention once."""
    events = [EventMention(e.type, e.trigger, tuple(a for a in e.arguments if library[e.type].role(a.role)),
                           e.start, e.end) for e in parsed.events if e.type in names]
    return Record(parsed.id, parsed.text, dedupe(e for e in parsed.entities if e.type in names),
                  dedupe(r for r in parsed.relations if r.type in names), dedupe(events), parsed.source)


def merge_stage(ex: Extraction, rows: Iterable[dict], plan: TaskPlan) -> None:
    """Merge one stage's parsed rows of one record into `ex`, in shard order (the official per-type metrics
    depend on the order)."""
    merge = (lambda old, new: old + new) if plan.as_written else (lambda old, new: dedupe([*old, *new]))
    for row in sorted(rows, key=lambda r: (r["stage"], r["shard"])):
        parsed = Record.from_dict({"id": row["record_id"], "text": "", "entities": row["entities"],
                                   "relations": row["relations"], "events": row["events"]})
        if not plan.as_written:
            parsed = _clean(parsed, set(row["names"]), plan.library)
        ex.record.entities = merge(ex.record.entities, parsed.entities)
        ex.record.relations = merge(ex.record.relations, parsed.relations)
        if row["stage"] == 1 and row["task"] == "ed":
            ex.stage1_events = merge(ex.stage1_events, parsed.events)
        else:
            ex.record.events = merge(ex.record.events, parsed.events)
        ex.outputs.append({k: row[k] for k in ("task", "stage", "shard", "output", "errors", "hallucinated",
                                               "truncated")})


def extraction_steps(jobs: Sequence[tuple[str, TaskPlan, Sequence[Record]]]
                     ) -> Generator[list[dict], list[dict], dict[tuple[str, str, str], Extraction]]:
    """A generator: yields the rows to execute (stage 1, then stage 2), is sent them executed, returns
    {(group, plan key, record id): Extraction}; run synchronously (`run_extraction`) or on an event loop (Serve)."""
    plans = {p.key: p for _, p, _ in jobs}
    if len(plans) != len({id(p) for _, p, _ in jobs}):
        raise ValueError("two different plans share one key")
    results: dict[tuple[str, str, str], Extraction] = {}
    rows = []
    for group, plan, records in jobs:
        for r in records:
            key = (group, plan.key, r.id)
            if key in results:
                raise ValueError(f"record id {r.id!r} appears twice in plan {plan.key!r}")
            results[key] = Extraction(Record(r.id, r.text, source=r.source))
            rows.extend({**row, "group": group} for row in plan.stage1_rows(r))
    for stage in (1, 2):
        done = (yield rows) if rows else []
        by_key: dict[tuple[str, str, str], list[dict]] = {}
        for row in done:
            by_key.setdefault((row["group"], row["plan"], row["record_id"]), []).append(row)
        rows = []
        for key, ex in results.items():
            plan = plans[key[1]]
            merge_stage(ex, by_key.get(key, ()), plan)
            if stage == 2 and plan.two_stage:  # stage-2 events + leaf-type stage-1 events of triggers it missed
                covered = {e.trigger for e in ex.record.events}
                events = ex.record.events + [e for e in ex.stage1_events
                                             if e.type in plan.leaf_names and e.trigger not in covered]
                ex.record.events = events if plan.as_written else dedupe(events)
            elif plan.two_stage:  # the record's stage-2 prompt rows
                rows.extend({**row, "group": key[0]} for row in plan.stage2_rows(ex.record, ex.stage1_events))
            elif stage == 1:  # one stage: the detected events are final
                ex.record.events = list(ex.stage1_events)
    return results


def run_extraction(jobs: Sequence[tuple[str, TaskPlan, Sequence[Record]]],
                   execute: Executor) -> dict[tuple[str, str, str], Extraction]:
    """Run every (group, plan, records) job; `group` (e.g. a checkpoint name) travels with each row, so
    one executor call can serve many models."""
    steps = extraction_steps(jobs)
    try:
        rows = next(steps)
        while True:
            rows = steps.send(execute(rows))
    except StopIteration as done:
        return done.value

