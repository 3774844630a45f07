"""The streaming Ray Data machinery both corpora share: plan shards, transform, write, keep a manifest.

Shards, not Ray blocks, are the unit of work and of resumption. The planner cuts every input into shards
named `<source>-<file stem>-<hash of the URI>-<block index>`: JSON-lines/TSV files by byte ranges (a line
belongs to the block holding its first byte), JSON arrays by element boundaries, Parquet files by row
ranges, benchmarks by record ranges. Ray Data streams the pending specs through one `map_batches` stage on
an actor pool (or a local loop runs them); each call reads, transforms and writes, in this order,

    <out>/data/<shard>.parquet|jsonl      the rows (written to a temporary name, then moved)
    <out>/quarantine/<shard>.jsonl        malformed records with the reason (only when there are some)
    <out>/_shards/<shard>.json            the completion record: counts per task and source, tokens

A shard is done once its completion record exists; a rerun skips done shards and rewrites the others
under the same names, so an interrupted run resumes without duplicates. `<out>/manifest.json` sums the
completion records with a hash of the configuration; another configuration is refused unless told to
overwrite. Paths may be local or any URI pyarrow.fs understands (s3://, gs://).

Why not Ray Data's readers, writers and checkpointing (checked on Ray 2.60): its readers give a file to
one read task (read_text holds the file whole and cuts it with str.splitlines(), so an unescaped U+2028
in a JSON string splits a record), carry no line number or byte offset, and abort on one bad line or byte
(or drop the whole block, unaccounted); its writers name files per write task, bundle blocks, skip empty
ones, have one output and append on a rerun; its checkpointing needs a Read source, an id column kept in
the rows, never marks a shard whose records were all quarantined, and rewrites files under new names on
resume (not the same bytes). benchmarks/bench_corpus_readers.py measures both ways on one input.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from knowcoder_ray import storage
from knowcoder_ray.data.benchmarks import load_benchmark
from knowcoder_ray.data.readers import MALFORMED
from knowcoder_ray.storage import filesystem, sniff_compression
from knowcoder_ray.tokens import TokenCounter

DEFAULT_BLOCK_BYTES = 16 << 20
_LINE_EXTS = (".jsonl", ".tsv", ".txt", ".json")
INPUT_EXTS = (*_LINE_EXTS, *(e + c for e in _LINE_EXTS for c in (".gz", ".bz2", ".zst")), ".parquet")
_BETWEEN_ELEMENTS = re.compile(r"[ \t\r\n,]*")  # what _skip passes over in a JSON array
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark: some editors open a file with it; it is not part of a record


class PipelineError(RuntimeError):
    """The output location or the inputs are not usable as asked."""


# ---- file systems ------------------------------------------------------------------------------------

def expand_inputs(paths: Iterable[str]) -> list[str]:
    """Files named by `paths` (local or URIs): files as given, folders' files with a known extension,
    shell patterns (`s3://b/kelm/*.jsonl` too), listed through storage where the files are."""
    out: list[str] = []
    for p in paths:
        if not p:  # not the working directory
            raise PipelineError("an input path is empty")
        if any(c in p for c in "*?["):
            if not (matched := storage.glob(p)):
                raise PipelineError(f"input {p!r} matches no file")
            out += matched
        elif storage.isdir(p):
            if not (found := [f for f in storage.list_files(p, recursive=False)
                              if f.endswith(INPUT_EXTS) and not storage.name(f).startswith(".")]):
                raise PipelineError(f"input directory {p!r} holds no {'/'.join(INPUT_EXTS)} file")
            out += found
        elif storage.isfile(p):
            out.append(storage.absolute(p))
        else:
            raise PipelineError(f"input {p!r} does not exist")
    seen: dict[str, str] = {}  # a local file named twice, once through a link: its records would be read twice
    for f in out:
        if (first := seen.setdefault(f if storage.is_uri(f) else os.path.realpath(f), f)) != f:
            raise PipelineError(f"input {f!r} is the same file as {first!r}: an input is listed twice")
    return out


# ---- shard specs and planning ------------------------------------------------------------------------

@dataclass(frozen=True)
class ShardSpec:
    """One unit of work. kind: 'lines' (byte range; `first` is the number of newlines before byte
    start-1, for line numbers), 'compressed' (a whole gzip/bz2/zstd file of lines or a JSON array,
    `extra` = [codec]), 'json_array' (byte range of whole elements, `first` is the index of its first
    element), 'parquet' (row range), 'benchmark' (record range of `path` = benchmark name, `extra` =
    [split, data_dir]) or 'items' (`extra` holds the items)."""

    shard: str
    source: str
    kind: str
    path: str = ""
    start: int = 0
    stop: int = 0
    first: int = 0
    size: int = 0
    extra: tuple = ()


def _newlines_before(fs: pafs.FileSystem, path: str, cuts: list[int]) -> list[int]:
    """The number of newlines before each offset of `cuts` (ascending; one pass): shards' first line numbers."""
    out, seen, pos = [], 0, 0
    with fs.open_input_stream(path, compression=None) as f:
        for cut in cuts:
            while pos < cut and (chunk := f.read(min(1 << 20, cut - pos))):
                seen, pos = seen + chunk.count(b"\n"), pos + len(chunk)
            out.append(seen)
    return out


def _shard_name(source: str, path: str, index: int) -> str:
    stem = PurePosixPath(path.split("://")[-1]).name.split(".")[0] or "input"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40]
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    return f"{source}-{stem}-{digest}-{index:05d}"


def plan_files(source: str, paths: Iterable[str], block_bytes: int = DEFAULT_BLOCK_BYTES,
               block_rows: int = 50_000) -> list[ShardSpec]:
    """Shard specs for the input files of one source (see the module docstring)."""
    specs: list[ShardSpec] = []
    for uri in expand_inputs(paths):
        fs, path = filesystem(uri)
        size, extra = fs.get_file_info(path).size, ()
        if uri.endswith(".parquet"):
            rows = pq.read_metadata(path, filesystem=fs).num_rows
            ranges, kind = [(s, min(s + block_rows, rows), 0) for s in range(0, rows, block_rows)], "parquet"
        elif (codec := sniff_compression(uri)) is not None:
            # a compressed stream cannot be cut by byte ranges: one shard reads the whole file
            ranges, kind, extra = [(0, size, 0)], "compressed", (codec,)
        elif uri.endswith(".json") and _starts_array(fs, path):
            with fs.open_input_stream(path, compression=None) as f:  # streamed: never held whole
                ranges, kind = _plan_json_array(f, size, block_bytes), "json_array"
        else:
            starts = list(range(0, size, block_bytes))
            before = _newlines_before(fs, path, [max(s - 1, 0) for s in starts])
            ranges, kind = [(s, min(s + block_bytes, size), n) for s, n in zip(starts, before)], "lines"
        specs += [ShardSpec(_shard_name(source, uri, i), source, kind, uri, s, e, first, size, extra)
                  for i, (s, e, first) in enumerate(ranges)]
    return specs


def plan_items(source: str, name: str, items: list, per_shard: int) -> list[ShardSpec]:
    """Shard specs that carry their (small, JSON-able) items, e.g. definition-code groups."""
    return [ShardSpec(_shard_name(source, name, i // per_shard), source, "items", name, i,
                      min(i + per_shard, len(items)), extra=tuple(items[i:i + per_shard]))
            for i in range(0, len(items), per_shard)]


def plan_benchmark(name: str, split: str, data_dir: str, per_shard: int = 5_000) -> list[ShardSpec]:
    data_dir = storage.absolute(data_dir)
    n = len(_benchmark(name, split, data_dir)[0])
    return [ShardSpec(_shard_name("benchmark", f"{name}.{split}", i // per_shard), name, "benchmark", name,
                      i, min(i + per_shard, n), extra=(split, data_dir))
            for i in range(0, max(n, 1), per_shard)]


def _starts_array(fs: pafs.FileSystem, path: str) -> bool:
    with fs.open_input_stream(path, compression=None) as f:
        return f.read(4096).removeprefix(BOM).lstrip()[:1] == b"["


def _plan_json_array(f, size: int, block_bytes: int, chunk: int = 1 << 20,
                     max_element: int = 64 << 20) -> list[tuple[int, int, int]]:
    """(start, stop, first element index) byte ranges of whole elements of the JSON array in `f`, ~block_bytes
    each, read a chunk at a time (the driver holds one chunk and one element, never the file). Latin-1 (JSON's
    structure is ASCII) makes text offsets byte offsets. A syntax error (or an element over `max_element`)
    ends planning with a final range from there on, which the reader quarantines with the decoder's message."""
    dec = json.JSONDecoder()
    text, base, eof = "", 0, False  # text[i] is file byte base + i

    def more(i: int) -> int:  # drops the text before i (planned already), adds the next chunk; i's new offset
        nonlocal text, base, eof
        eof = not (data := f.read(chunk))
        text, base = text[i:] + data.decode("latin-1"), base + i
        return 0

    def skip(i: int) -> int:
        while (i := _skip(text, i)) == len(text) and not eof:
            i = more(i)
        return i

    while "[" not in text and not eof:
        more(0)
    i = skip(text.index("[") + 1)
    ranges, start, first, k = [], base + i, 0, 0
    while i < len(text) and text[i] != "]":
        try:
            _, end = dec.raw_decode(text, i)
            if end == len(text) and not eof:
                raise ValueError("a number may go on in the next chunk")
        except (ValueError, RecursionError):  # JSONDecodeError too: maybe only cut by the chunk, else malformed
            if not eof and len(text) - i < max_element:
                i = more(i)
                continue
            if base + i > start:
                ranges.append((start, base + i, first))
            ranges.append((base + i, size, k))
            return ranges
        k += 1
        i = skip(end)
        if base + i - start >= block_bytes:
            ranges.append((start, base + i, first))
            start, first = base + i, k
    if k > first:
        ranges.append((start, base + i, first))
    return ranges


def _skip(text: str, i: int) -> int:
    return _BETWEEN_ELEMENTS.match(text, i).end()


# ---- reading one shard -------------------------------------------------------------------------------

@dataclass
class Item:
    key: str          # where the record came from: "<file>:<line | row | element>" or an id
    payload: object   # a line (str), a dict, a Record, or a spec item
    line: int | None = None    # 1-based line number in the (decompressed) file, for line inputs
    offset: int | None = None  # byte offset of that line in the (decompressed) file


def read_shard(spec: ShardSpec, bad: list[dict]) -> Iterator[Item]:
    """The records of one shard. Unreadable bytes or JSON syntax go to `bad` with the reason."""
    if spec.kind == "items":
        yield from (Item(f"{spec.path}:{spec.start + i}", it) for i, it in enumerate(spec.extra))
        return
    if spec.kind == "benchmark":
        records, schema, malformed = _benchmark(spec.path, *spec.extra)
        if spec.start == 0:  # the reader's own malformed records are reported once, by the first shard
            bad += [quarantine_row(spec, f"{m.path}:{m.line}", m.reason, m.raw) for m in malformed]
        yield from (Item(r.id, (r, schema)) for r in records[spec.start:spec.stop])
        return
    fs, path = filesystem(spec.path)
    name = PurePosixPath(path).name
    if spec.kind == "parquet":  # the row groups overlapping the range, cut to it
        with fs.open_input_file(path) as f:
            pf, row0 = pq.ParquetFile(f), 0
            for g in range(pf.num_row_groups):
                n, first = pf.metadata.row_group(g).num_rows, max(spec.start, row0)
                if first < min(spec.stop, row0 + n):
                    rows = pf.read_row_group(g).slice(first - row0, spec.stop - first).to_pylist()
                    yield from (Item(f"{name}:{first + j}", row) for j, row in enumerate(rows))
                row0 += n
    elif spec.kind == "json_array":  # the planner cut at element boundaries: read exactly the range
        with fs.open_input_file(path) as f:
            f.seek(spec.start)
            yield from _array_items(f.read(spec.stop - spec.start), spec, name, bad)
    elif spec.kind == "compressed":
        yield from _compressed_items(fs, path, spec, name, bad)
    else:
        data, base = _read_range(fs, path, spec.start, spec.stop)
        yield from _line_items(data, base, spec.first + 2 if spec.start > 0 else 1, spec, name, bad)


def _line_items(data: bytes, offset: int, line_no: int, spec: ShardSpec, name: str, bad: list[dict]) -> Iterator[Item]:
    """Records of whole lines: split on "\n" only (a stray "\r" or other Unicode line break inside a
    record is data, not a line end), a trailing "\r" dropped. Empty lines hold no record; a line of only
    whitespace is quarantined, as is one that is not UTF-8. A BOM opening the file is dropped."""
    if offset == 0 and data.startswith(BOM):
        data, offset = data[len(BOM):], len(BOM)
    for i, raw in enumerate(data.split(b"\n")):  # the empty piece after a final "\n" is skipped as empty
        here, offset = offset, offset + len(raw) + 1
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            continue
        where = {"line": line_no + i, "offset": here}
        key = f"{name}:{line_no + i}"
        if not line.strip():
            bad.append(quarantine_row(spec, key, "line holds only whitespace (tabs or spaces), no record",
                                      line.decode("latin-1"), **where))
            continue
        try:
            yield Item(key, line.decode("utf-8"), **where)
        except UnicodeDecodeError as e:
            bad.append(quarantine_row(spec, key, f"not UTF-8: {e}", line[:2000].decode("latin-1"), **where))


def _compressed_items(fs: pafs.FileSystem, path: str, spec: ShardSpec, name: str, bad: list[dict]) -> Iterator[Item]:
    """A gzip/bz2/zstd file: decompressed as a stream, its lines (or its JSON array) read as above. A
    stream cut short (a truncated download) is an error naming the file and what was read."""
    codec, data = spec.extra[0], bytearray()
    try:
        with fs.open_input_stream(path, compression=None) as raw, pa.CompressedInputStream(raw, codec) as f:
            while chunk := f.read(1 << 20):
                data += chunk
    except OSError as e:
        lines = data.count(b"\n")
        raise PipelineError(f"{spec.path}: the {codec} stream is cut or corrupt after {len(data):,} decompressed "
                            f"bytes ({lines:,} complete lines; nothing of this file was written): {e}") from None
    if bytes(data[:4096]).removeprefix(BOM).lstrip()[:1] == b"[":  # a JSON array: its elements, from after the "["
        yield from _array_items(bytes(data[data.index(b"[") + 1:]), spec, name, bad)
    else:
        yield from _line_items(bytes(data), 0, 1, spec, name, bad)


def _read_range(fs: pafs.FileSystem, path: str, start: int, stop: int) -> tuple[bytes, int]:
    """Bytes of the lines that start in [start, stop): from the first line start at or after `start`
    through the end of the line holding byte stop-1; and the offset of those bytes."""
    with fs.open_input_file(path) as f:
        begin = max(start - 1, 0)
        f.seek(begin)
        data = f.read(stop - begin)
        if start > 0:  # the line holding byte start-1 belongs to the previous shard
            if (cut := data.find(b"\n")) < 0:
                return b"", stop  # no line starts in the range (it lies inside one long line)
            data, begin = data[cut + 1:], begin + cut + 1
        parts = [data]  # joined once: a long last line is not copied again for every chunk
        while data and not parts[-1].endswith(b"\n") and (more := f.read(1 << 20)):
            cut = more.find(b"\n")
            parts.append(more if cut < 0 else more[: cut + 1])
    return b"".join(parts), begin


def _array_items(data: bytes, spec: ShardSpec, name: str, bad: list[dict]) -> Iterator[Item]:
    text = data.decode("utf-8", errors="replace")
    dec, i, k = json.JSONDecoder(), _skip(text, 0), spec.first
    while i < len(text) and text[i] != "]":
        try:
            obj, end = dec.raw_decode(text, i)
        except (json.JSONDecodeError, RecursionError) as e:
            bad.append(quarantine_row(spec, f"{name}:element {k}", f"JSON array unreadable from here on: {e}",
                                      text[i:i + 2000]))
            return
        yield Item(f"{name}:{k}", obj)
        k, i = k + 1, _skip(text, end)


@lru_cache(maxsize=8)
def _benchmark(name: str, split: str, data_dir: str):
    bad: list = []
    records, schema = load_benchmark(name, data_dir, split, bad)
    return records, schema, bad


def quarantine_row(spec: ShardSpec, key: str, reason: str, raw, line: int | None = None,
                   offset: int | None = None) -> dict:
    if not isinstance(raw, str):  # a parsed record (str keys, any values: default=str) or a Record
        raw = json.dumps(raw, ensure_ascii=False, default=str)
    return {"shard": spec.shard, "source": spec.source, "path": spec.path, "key": key, "line": line,
            "offset": offset, "reason": reason, "raw": raw[:2000]}


# ---- transforms and token counts ---------------------------------------------------------------------

class Transform:
    """What a corpus does to one record. Subclasses set `corpus` and `schema` (the output columns, with
    n_tokens) and implement `fingerprint()` (the settings the configuration hash covers),
    `rows(spec, item)` -> [(task, row without n_tokens)], raising one of MALFORMED for a malformed
    record, and `token_text(row)`, the text the token count covers."""

    corpus = ""
    schema: pa.Schema = pa.schema([])

    def counters(self) -> dict[str, int]:
        """Running totals of what records lost without being quarantined (e.g. KELM facts whose names are
        not in the sentence); each shard's share goes into its completion record and the manifest."""
        return {}


# ---- processing one shard ----------------------------------------------------------------------------

def encode_rows(rows: list[dict], schema: pa.Schema, fmt: str) -> bytes:
    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    if fmt == "jsonl":  # rows are checked (_check_unicode); a quarantined record's lone surrogate is escaped
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8", "backslashreplace")
    raise PipelineError(f"unknown output format {fmt!r}; expected parquet or jsonl")


def _check_unicode(pairs: list[tuple[str, dict]]) -> None:
    """Rows are written as UTF-8: a lone surrogate (JSON's escape of half a UTF-16 pair, "\\ud83d") cannot be."""
    for s in (s for _, row in pairs for v in row.values() for s in (v if isinstance(v, list) else [v])
              if isinstance(s, str)):
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"the text holds a lone surrogate {s[e.start]!r} (half of a UTF-16 pair, escaped in "
                             "the JSON): not valid Unicode") from None


def process_shard(transform: Transform, spec: ShardSpec, out: str, fmt: str, counter: TokenCounter) -> dict:
    """Read, transform and count one shard in memory, then commit it: data file, quarantine file, completion
    record. Every record read is written (as rows) or quarantined: records = written + quarantined."""
    t0 = time.perf_counter()
    before = Counter(transform.counters())
    produced, bad, written = [], [], 0  # produced: (task, row) pairs
    for item in read_shard(spec, bad):
        try:
            pairs = transform.rows(spec, item)
            _check_unicode(pairs)
            reason = None if pairs else "the record gives no row (nothing of it is usable)"
        except MALFORMED as e:
            reason = f"{type(e).__name__}: {e}"
        if reason:
            bad.append(quarantine_row(spec, item.key, reason, item.payload, item.line, item.offset))
            continue
        written += 1
        produced += pairs
    rows = [row for _, row in produced]
    counters = {k: v - before.get(k, 0) for k, v in transform.counters().items()}
    for row, n in zip(rows, counter([transform.token_text(r) for r in rows])):
        row["n_tokens"] = n
    data_rel = f"data/{spec.shard}.{fmt}"
    storage.write_bytes(storage.join(out, data_rel), encode_rows(rows, transform.schema, fmt))
    q_rel = f"quarantine/{spec.shard}.jsonl" if bad else None
    if bad:
        storage.write_bytes(storage.join(out, q_rel), encode_rows(bad, pa.schema([]), "jsonl"))
    by_task, by_source = Counter(task for task, _ in produced), Counter(row["source"] for row in rows)
    tok_task, tok_source = Counter(), Counter()
    for task, row in produced:
        tok_task[task] += row["n_tokens"]
        tok_source[row["source"]] += row["n_tokens"]
    marker = {
        "shard": spec.shard, "source": spec.source, "path": spec.path, "start": spec.start, "stop": spec.stop,
        "records": written + len(bad), "written": written, "rows": len(rows), "quarantined": len(bad),
        "n_tokens": sum(tok_task.values()), "by_task": dict(by_task), "by_source": dict(by_source),
        "tokens_by_task": dict(tok_task), "tokens_by_source": dict(tok_source),
        "counters": counters, "data": data_rel, "quarantine": q_rel, "seconds": round(time.perf_counter() - t0, 3),
    }
    storage.write_bytes(storage.join(out, f"_shards/{spec.shard}.json"), json.dumps(marker).encode())
    return marker


class ShardWriter:
    """The Ray Data actor: holds the transform (and its schema library) and commits shards."""

    def __init__(self, transform: Transform, out: str, fmt: str, tokenizer: str | None) -> None:
        self.transform, self.out, self.fmt = transform, out, fmt
        self.counter = TokenCounter(tokenizer)

    def __call__(self, batch: dict) -> dict:
        try:
            markers = [process_shard(self.transform, s, self.out, self.fmt, self.counter) for s in batch["spec"]]
        except (PipelineError, FileNotFoundError) as e:  # an input's fault (a cut .gz): the driver raises it,
            markers = [{"error": str(e)}]                 # as Ray Data's wrapping of a raise loses its type
        return {"marker": [json.dumps(m) for m in markers]}


# ---- running a corpus --------------------------------------------------------------------------------

def config_hash(transform: Transform, specs: list[ShardSpec], fmt: str, counter: TokenCounter) -> str:
    cfg = {"corpus": transform.corpus, "transform": transform.fingerprint(), "format": fmt,
           "tokens": counter.kind, "specs": [[s.shard, s.kind, s.path, s.start, s.stop, s.size] for s in specs]}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def completed(out: str) -> dict[str, dict]:
    """Completion records of the shards already written under `out`."""
    return {storage.name(p)[: -len(".json")]: _read_json(p)
            for p in storage.list_files(storage.join(out, "_shards"), recursive=False) if p.endswith(".json")}


def _read_json(path: str) -> dict:
    try:
        return json.loads(storage.read_bytes(path))
    except ValueError as e:  # damaged from outside (the pipeline writes whole files)
        raise PipelineError(f"{path} is not valid JSON ({e}); write to a new path or pass overwrite") from None


def _prepare(out: str, chash: str, overwrite: bool) -> None:
    """Check (or reset) the output location and remove temporaries a killed run left behind."""
    mpath = storage.join(out, "manifest.json")
    if not overwrite and storage.isfile(mpath):
        old = _read_json(mpath).get("config_hash")
        if old != chash:
            raise PipelineError(f"{out} holds a corpus built with another configuration (config_hash {old}, "
                                f"now {chash}); write to a new path or pass overwrite")
    elif not overwrite and completed(out):
        raise PipelineError(f"{out} holds shard records but no manifest.json; write to a new path or pass overwrite")
    subs = [storage.join(out, sub) for sub in ("data", "quarantine", "_shards")]
    if overwrite and not (storage.isfile(mpath) or completed(out)) and any(map(storage.list_files, subs)):
        raise PipelineError(f"{out} is not a corpus folder (no manifest.json) but holds files under data/, quarantine/ "
                            "or _shards/; overwrite replaces only a corpus: write to a new path")
    for folder in subs:
        if overwrite:
            storage.remove(folder)
        storage.makedirs(folder)
        for p in storage.list_files(folder, recursive=False):
            if ".tmp-" in storage.name(p):
                storage.remove(p)


def write_manifest(out: str, transform: Transform, specs: list[ShardSpec], fmt: str, counter: TokenCounter,
                   chash: str) -> dict:
    planned = {s.shard for s in specs}
    shards = [m for k, m in sorted(completed(out).items()) if k in planned]
    totals: dict = {k: Counter() for k in ("by_task", "by_source", "tokens_by_task", "tokens_by_source", "counters")}
    files: dict[str, Counter] = {}  # per input file: records in = records written + quarantined
    for m in shards:
        for k in totals:
            totals[k].update(m.get(k, {}))
        files.setdefault(m["path"], Counter()).update(
            {k: m.get(k, 0) for k in ("records", "written", "quarantined", "rows")})
    manifest = {
        "corpus": transform.corpus, "format": fmt, "config_hash": chash, "config": transform.fingerprint(),
        "token_counter": counter.kind, "columns": transform.schema.names,
        "shards_planned": len(specs), "shards_complete": len(shards), "complete": len(shards) == len(specs),
        **{k: sum(m[k] for m in shards) for k in ("records", "rows", "quarantined", "n_tokens")},
        **{k: dict(sorted(v.items())) for k, v in totals.items()},
        "files": {p: {**dict(c), "balanced": c["records"] == c["written"] + c["quarantined"]}
                  for p, c in sorted(files.items())},
        "shards": shards,
    }
    storage.write_bytes(storage.join(out, "manifest.json"), json.dumps(manifest, indent=1).encode())
    return manifest


def run(transform: Transform, specs: list[ShardSpec], out: str, *, fmt: str = "parquet",
        tokenizer: str | None = None, workers: int | None = None, executor: str = "ray",
        overwrite: bool = False, progress: Callable[[dict, int, int], None] | None = None,
        max_shards: int | None = None) -> dict:
    """Process every pending shard of `specs` into `out`; the manifest. executor 'ray': Ray Data on the
    current cluster (ray.init first; `workers` actors, default its CPUs); 'local': one shard after
    another in this process. `max_shards`: stop after that many (rerun to go on)."""
    if not str(out).strip():  # "" would be joined into /data, /_shards, ... at the file system root
        raise PipelineError("the output location is blank: name a folder or URI")
    if len({s.shard for s in specs}) != len(specs):
        raise PipelineError("shard names collide: an input is listed twice")
    counter = TokenCounter(tokenizer)
    chash = config_hash(transform, specs, fmt, counter)
    _prepare(out, chash, overwrite)
    done = {m["shard"] for m in write_manifest(out, transform, specs, fmt, counter, chash)["shards"]}
    pending = [s for s in specs if s.shard not in done][:max_shards]
    try:
        if pending:
            markers = ((process_shard(transform, s, out, fmt, counter) for s in pending) if executor == "local"
                       else _run_ray(transform, pending, out, fmt, tokenizer, workers))
            for i, marker in enumerate(markers, 1):
                if progress:
                    progress(marker, i, len(pending))
    finally:  # also after a failure or Ctrl-C: the manifest then lists what is done
        manifest = write_manifest(out, transform, specs, fmt, counter, chash)
    return manifest


def _run_ray(transform, pending, out, fmt, tokenizer, workers) -> Iterator[dict]:
    import ray.data

    if not ray.is_initialized():
        raise PipelineError("executor 'ray' needs a Ray cluster: call ray.init() first (or use executor 'local')")
    n = min(workers or max(1, int(ray.cluster_resources().get("CPU", 1))), len(pending))
    # the specs travel as Python objects (Ray Data pickles them), one block each
    ds = ray.data.from_items([{"spec": s} for s in pending], override_num_blocks=len(pending))
    ds = ds.map_batches(ShardWriter, fn_constructor_kwargs={"transform": transform, "out": out, "fmt": fmt,
                                                            "tokenizer": tokenizer},
                        batch_size=1, num_cpus=1, concurrency=n)
    for row in ds.iter_rows():
        if "error" in (marker := json.loads(row["marker"])):
            raise PipelineError(marker["error"])
        yield marker


def print_progress(name: str) -> Callable[[dict, int, int], None]:
    """A progress line per committed shard on stderr (a log-friendly progress display)."""
    t0 = time.perf_counter()
    total = Counter()

    def show(marker: dict, i: int, n: int) -> None:
        total.update(rows=marker["rows"], bad=marker["quarantined"], tok=marker["n_tokens"], rec=marker["records"])
        rate = total["rec"] / max(time.perf_counter() - t0, 1e-9)
        print(f"[{name}] {i}/{n} shards  {marker['shard']}: {marker['rows']} rows, {marker['quarantined']} "
              f"quarantined | total {total['rows']:,} rows, {total['bad']:,} quarantined, {total['tok']:,} tokens, "
              f"{rate:,.0f} records/s", file=sys.stderr, flush=True)
    return show
