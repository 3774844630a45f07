"""Build a KnowCoder schema library from a Wikidata JSON dump, on a Ray cluster or in one process.

What becomes what (KnowCoder paper, section 3.1; the released library used the 2022-07-04 dump):
- entity types: the classes used as P31 "instance of" targets and the classes relation constraints name,
  with their P279 "subclass of" ancestors. Parents: the kept P279 targets, cycles broken and redundant
  parents (ancestors of another parent) dropped, so the classes form a DAG Python could define.
  Examples: labels of the instances with the lowest QIDs (the oldest, usually best known items).
- relation types: properties whose datatype is in `BuildConfig.relation_datatypes`. Head / tail types:
  the P2308 "class" qualifiers of their P2302 subject type (Q21503250) / value type (Q21510865)
  constraints. Examples "(head, tail)": P1855 statements (the value is the subject, its qualifier of the
  same property the object).
- event types: the kept classes under `BuildConfig.event_root` (default Q1190554 "occurrence"), the root
  included and hung under `Event`. Roles: the properties used by at least `min_role_support` of the
  instances of the class and its subclasses (at most `max_roles`, most used first), named after the
  property label, typed by its value type constraint. Examples (trigger words): English label and aliases.
- names: English label (else "mul", en-gb, en-us) through `to_class_name`; the first holder (entities,
  then events, then relations; lowest id first) keeps a name, the others get their Wikidata id appended
  (``BankQ468756``). Missing descriptions stay empty and are listed (`missing_descriptions.tsv`) for a
  user to fill (`fill_descriptions`).

Two scans (scan.py): the first collects classes (items with P279), properties, P31 usage and instance
labels; the second, given the first, the labels of kept classes and example items without a P279 of their
own, and the properties used on event instances. Malformed lines are reported with their line numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from knowcoder_ray import storage
from knowcoder_ray.schema.descriptions import fill_descriptions, missing_descriptions_tsv, parse_descriptions_tsv
from knowcoder_ray.schema.dump import MIN_RANGE_BYTES, LineIndex, compression_of, file_size, iter_lines
from knowcoder_ray.schema.assemble import BuildReport, assemble, second_scan_targets
from knowcoder_ray.schema.scan import DumpSummary, scan_ray, summarize
from knowcoder_ray.schema.select import corpus_types, select
from knowcoder_ray.schema.types import SchemaLibrary
from knowcoder_ray.schema.wikidata import EVENT_ROOT, RELATION_DATATYPES
from knowcoder_ray.settings import Count, Positive, Section


class BuildConfig(Section):
    model_config = ConfigDict(frozen=True)

    # None or "none": no event types
    event_root: Annotated[str | None, AfterValidator(lambda v: None if v is None or v.lower() == "none" else v)] = EVENT_ROOT
    relation_datatypes: tuple[str, ...] = RELATION_DATATYPES
    max_examples: Count = 5
    max_roles: Count = 8
    min_role_support: Annotated[float, Field(ge=0, le=1)] = 0.2
    max_aliases: Count = 10
    batch_lines: Positive = 1000
    # the slice to keep (with ancestors and constraint types): names, Wikidata ids or labels, and the types
    # that Record JSONL corpora use; None and []: the whole library
    types: list[str] | None = None
    corpus: list[str] = []
    descriptions: str | None = None  # a filled-in missing_descriptions.tsv


class BuildInputError(ValueError):
    """An input of the build (the dump, a descriptions TSV) cannot be used."""


class DumpError(BuildInputError):
    """The dump cannot give a library at all (empty, or no Wikidata entity in it)."""


@dataclass
class BuildResult:
    library: SchemaLibrary
    report: BuildReport


def build(uri: str, config: BuildConfig | None = None, *, use_ray: bool = True, parallelism: int = -1,
          min_range_bytes: int = MIN_RANGE_BYTES) -> BuildResult:
    """Two scans of the dump at `uri` (local path or s3:// / gs:// URI) and the assembled library.
    With `use_ray` the scans run on the current cluster (`ray.init` first): a plain dump in `parallelism`
    byte ranges of at least `min_range_bytes` (see `dump.byte_ranges`)."""
    config = config or BuildConfig()
    file_size(uri)  # names a missing dump, or a folder, before any work

    def scan(plan):  # the plain loop: one summary of all the lines (what merging those of its parts gives)
        return (scan_ray(uri, config, plan, parallelism, min_range_bytes) if use_ray
                else summarize(iter_lines(uri), config, plan))

    s1 = scan(None)
    if not any(n for k, n in s1.counts.items() if k in ("items", "properties") or k.startswith("skipped_")):
        raise DumpError(_no_entities(uri, s1))
    plan, kept = second_scan_targets(s1, config)
    s2 = scan(plan) if plan.needed or plan.events else DumpSummary()
    return BuildResult(*assemble(s1, s2, config, plan, kept))


def _no_entities(uri: str, s1: DumpSummary) -> str:
    """Why a dump gave no entity at all: empty, cut before its first entity, or not a Wikidata JSON dump."""
    index = LineIndex(s1.lines)
    if not index.total:
        return f"{uri}: the dump is empty (no line)"
    first = min(s1.malformed, key=lambda m: index.line_number(m[0], m[1]), default=None)
    msg = f"{uri}: no Wikidata entity in its {index.total} line(s)"
    if first is not None:
        msg += f"; line {index.line_number(first[0], first[1])}: {first[2]}"
    cut = next((m[2] for m in s1.malformed if m[2].startswith("dump truncated")), None)
    if cut is not None and cut != first[2]:
        msg += f"; {cut}"
    if compression_of(uri) is None and storage.sniff_compression(uri) in ("gzip", "bz2"):
        msg += "; the file looks compressed: name it .json.gz or .json.bz2"  # compressed, but not named so
    return msg + " (expected a Wikidata JSON dump: a JSON array with one entity object per line)"


def build_schema(dump: str, out: str, config: BuildConfig | None = None, *, use_ray: bool = True,
                 parallelism: int = -1) -> BuildResult:
    """The schema phase: build the library from `dump`, keep the configured slice, fill in descriptions,
    and write schema.parquet, Entities.py / Relations.py / Events.py, report.json, malformed.jsonl and
    missing_descriptions.tsv under `out` (a path or URI). With `use_ray`, on the cluster `connect()` reaches."""
    from knowcoder_ray.schema import pyfile, table

    config = config or BuildConfig()
    # the other inputs first: one that cannot be used is named before the (long) scans of the dump
    types, bad = corpus_types(config.corpus)
    try:
        descriptions = parse_descriptions_tsv(storage.read_text(config.descriptions)) if config.descriptions else None
    except ValueError as e:
        raise BuildInputError(f"{config.descriptions}: {e}") from None
    if use_ray:
        from knowcoder_ray.connect import connect

        connect(log_to_driver=False)
    result = build(dump, config, use_ray=use_ray, parallelism=parallelism)
    library, report = result.library, result.report
    if config.types is not None or config.corpus:
        if bad:
            report.notes.append(f"corpus: {bad} lines are not records (skipped)")
        library, report.unmatched = select(library, [*(config.types or ()), *sorted(types)])
    if descriptions is not None:
        library, filled = fill_descriptions(library, descriptions)
        report.notes.append(f"descriptions filled in: {filled}")

    storage.makedirs(out)
    table.write_parquet(library, storage.join(out, "schema.parquet"))
    pyfile.write_pyfiles(library, out)
    storage.write_text(storage.join(out, "malformed.jsonl"),
                       "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in report.malformed))
    storage.write_text(storage.join(out, "missing_descriptions.tsv"), missing_descriptions_tsv(library))
    report.selected = {f"selected_{k}_types": len(library.of_kind(k)) for k in ("entity", "relation", "event")}
    storage.write_text(storage.join(out, "report.json"), json.dumps({
        "summary": report.summary(), "unresolved": report.unresolved,
        "dropped_cycle_edges": report.dropped_cycle_edges, "missing_labels": report.missing_labels,
        "unmatched": report.unmatched, "notes": report.notes, "truncated": report.truncated,
        "problems": library.validate()}, indent=1))
    return BuildResult(library, report)
