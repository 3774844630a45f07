"""The two scans of a Wikidata dump, on Ray or as a plain loop: parts of the dump -> small
`DumpSummary`s that merge associatively, so the driver holds O(classes + properties), never O(items)."""
from __future__ import annotations

import bisect
import pickle
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, NamedTuple

from knowcoder_ray.schema.dump import MIN_RANGE_BYTES, byte_ranges, compression_of, iter_lines, read_dump
from knowcoder_ray.schema.wikidata import (
    P_INSTANCE_OF, P_SUBCLASS_OF, Malformed, Truncated, entity_aliases, entity_text, item_targets,
    literal_targets, num, parse_line, property_record, statements,
)

if TYPE_CHECKING:
    from knowcoder_ray.schema.build import BuildConfig


class ScanTargets(NamedTuple):
    """What the second scan looks for, decided from the first: ids whose labels are needed, event classes."""

    needed: frozenset[str]
    events: frozenset[str]


@dataclass
class DumpSummary:
    """What a batch of lines contributes; merges associatively and commutatively.

    classes: qid -> [label, description, P279 parents, aliases] for items with a P279 statement.
    properties: pid -> record (label, description, datatype, head, tail, examples).
    usage: qid -> number of items with P31 = qid; examples: qid -> [[numeric id, label], ...] (lowest ids).
    nodes: id -> [label, description, aliases] (second scan); events: qid -> [instances, Counter of pids].
    """

    lines: Counter[int] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    malformed: list[list] = field(default_factory=list)  # [range, index, reason, text]
    classes: dict[str, list] = field(default_factory=dict)
    properties: dict[str, dict] = field(default_factory=dict)
    usage: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list] = field(default_factory=dict)
    nodes: dict[str, list] = field(default_factory=dict)
    events: dict[str, list] = field(default_factory=dict)

    def merge(self, other: "DumpSummary", max_examples: int) -> "DumpSummary":
        self.lines.update(other.lines)
        self.counts.update(other.counts)
        self.usage.update(other.usage)
        self.malformed += other.malformed
        for mine, theirs in ((self.classes, other.classes), (self.properties, other.properties),
                             (self.nodes, other.nodes)):
            mine.update((k, v) for k, v in theirs.items() if k not in mine)  # the first value of a key stays
        for q, ex in other.examples.items():
            mine = self.examples.setdefault(q, [])
            for e in ex:
                _keep_lowest(mine, e, max_examples)
        for q, (n, props) in other.events.items():
            mine = self.events.setdefault(q, [0, Counter()])
            mine[0] += n
            mine[1].update(props)
        return self


def _keep_lowest(kept: list, item: list, k: int) -> None:
    if item not in kept:
        bisect.insort(kept, item)
        del kept[k:]


def summarize(rows: Iterable[tuple[int, int, bytes]], config: BuildConfig, plan: ScanTargets | None = None) -> DumpSummary:
    """The summary of some dump lines: the first scan without `plan`, the second with it."""
    s = DumpSummary()
    for rng, index, raw in rows:
        s.lines[rng] += 1
        try:
            entity = parse_line(raw)
            if entity is None:
                s.counts["structural"] += 1
            elif plan is None:
                for why in _first_scan(s, entity, config):  # a claim of the wrong kind: reported, not dropped
                    s.counts["malformed_claims"] += 1
                    s.malformed.append([rng, index, why, raw.decode("utf-8", "replace")])
            else:
                _second_scan(s, entity, plan, config)
        except (Malformed, KeyError, TypeError, AttributeError) as e:
            if plan is None:  # the second scan sees the same lines; report them once
                cut = isinstance(e, Truncated)
                why = str(e) if isinstance(e, Malformed) else f"unexpected structure: {type(e).__name__}: {e}"
                s.counts["truncated" if cut else "malformed"] += 1
                s.malformed.append([rng, index, why, "" if cut else raw.decode("utf-8", "replace")])
    return s


def _first_scan(s: DumpSummary, entity: dict, config: BuildConfig) -> list[str]:
    """Adds one entity to `s`; returns its problems (claims that are not items where items belong)."""
    eid, etype = entity["id"], entity["type"]
    claims = entity.get("claims") or {}
    if etype == "property":
        record = property_record(eid, entity, claims)  # read everything before counting: may raise
        s.counts["properties"] += 1
        s.properties.setdefault(eid, record)  # an entity twice in the dump: its first version, as `merge` keeps
        return []
    if etype != "item":
        s.counts[f"skipped_{etype}"] += 1
        return []
    label = entity_text(entity, "labels")
    parents = item_targets(claims, P_SUBCLASS_OF)
    instance_of = item_targets(claims, P_INSTANCE_OF)
    problems = [f"{eid}: {pid} claim with a {bad[0][0]} value {bad[0][1]!r:.60}, not an item "
                "(the claim is ignored, the rest of the entity is used)"
                for pid in (P_INSTANCE_OF, P_SUBCLASS_OF) if (bad := literal_targets(claims, pid))]
    if parents and eid not in s.classes:
        s.classes[eid] = [label, entity_text(entity, "descriptions"), parents, entity_aliases(entity, config.max_aliases)]
    s.counts["items"] += 1
    for target in instance_of:
        s.usage[target] += 1
        if label and config.max_examples:
            _keep_lowest(s.examples.setdefault(target, []), [num(eid), label], config.max_examples)
    return problems


def _second_scan(s: DumpSummary, entity: dict, plan: ScanTargets, config: BuildConfig) -> None:
    eid = entity["id"]
    if eid in plan.needed and eid not in s.nodes:
        s.nodes[eid] = [entity_text(entity, "labels"), entity_text(entity, "descriptions"), entity_aliases(entity, config.max_aliases)]
    if entity["type"] != "item" or not plan.events:
        return
    claims = entity.get("claims") or {}
    hits = [t for t in item_targets(claims, P_INSTANCE_OF) if t in plan.events]
    if hits:
        used = [p for p in claims if any(True for _ in statements(claims, p))]
        s.merge(DumpSummary(events={t: [1, used] for t in hits}), config.max_examples)


def _summarize_batch(batch, config: BuildConfig, plan: ScanTargets | None):
    import pyarrow as pa

    rows = zip(*(batch.column(c).to_pylist() for c in ("range", "line", "text")))
    return pa.table({"summary": [pickle.dumps(summarize(rows, config, plan))]})


def summarize_range(uri: str, rng: int, start: int, end: float, config: BuildConfig,
                    plan: ScanTargets | None) -> DumpSummary:
    """The summary of one byte range of a plain dump, read and parsed where this runs."""
    return summarize(iter_lines(uri, rng, start, end), config, plan)


def scan_ray(uri: str, config: BuildConfig, plan: ScanTargets | None = None, parallelism: int = -1,
             min_range_bytes: int = MIN_RANGE_BYTES) -> DumpSummary:
    """One scan on the Ray cluster: summaries of parts of the dump, merged here in dump order.

    A plain dump is split into byte ranges (`byte_ranges`; default 4 per cluster CPU), each read, parsed and
    summarized by its own Ray task: only one small summary per range crosses the object store. Plain tasks,
    not Ray Data: a Ray Data execution first spends about a second learning its resource limits (half of a
    scan of a 160 MB dump). A compressed dump is one stream, so it is a Ray Data pipeline: one task reads
    it and summarize tasks parse its blocks of lines in parallel behind the reader."""
    import ray

    if compression_of(uri) is not None:
        ds = read_dump(uri, parallelism=parallelism, block_lines=config.batch_lines)
        ds = ds.map_batches(_summarize_batch, batch_format="pyarrow", batch_size=config.batch_lines,
                            fn_kwargs={"config": config, "plan": plan})
        total = DumpSummary()
        for row in ds.iter_rows():
            total.merge(pickle.loads(row["summary"]), config.max_examples)
        return total

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    ranges = byte_ranges(uri, parallelism if parallelism > 0 else 4 * cpus, min_range_bytes)  # names a missing file
    task = ray.remote(num_cpus=1)(summarize_range)
    config_ref, plan_ref = ray.put(config), ray.put(plan)  # shipped once, not with every task
    total, done, pending, running = DumpSummary(), {}, iter(enumerate(ranges)), {}
    merged = 0
    while merged < len(ranges):
        # a window of ranges, running or done but not merged yet: the driver holds few summaries at a time
        room = min(2 * cpus - len(running), 4 * cpus - len(running) - len(done))
        for rng, (start, end) in islice(pending, max(room, 0)):
            running[task.remote(uri, rng, start, end, config_ref, plan_ref)] = rng
        (ref,), _ = ray.wait(list(running), num_returns=1)
        done[running.pop(ref)] = ray.get(ref)
        while merged in done:  # in dump order: the same result as the plain loop, whatever finishes first
            total.merge(done.pop(merged), config.max_examples)
            merged += 1
    return total
