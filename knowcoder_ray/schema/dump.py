"""Streaming reader of Wikidata JSON dumps (`latest-all.json[.gz|.bz2]`), plain Python or as a Ray Dataset.

The dump is one JSON array, one entity per line (``[``, ``{...},`` lines, the last without the comma,
``]``), read in chunks, never whole. A plain file is split into byte ranges read in parallel; a compressed
one is a single stream (gzip and bzip2 cannot be entered in the middle), read by one task while the parsing
downstream still runs in parallel. A compressed dump that ends early or holds corrupt data yields what it
held, then one marker line (`TRUNCATED` + the decoder's message) that the parser reports as malformed: the
build goes on with what was read and names the cut.

A line is identified by (range, index in range); it belongs to the range its first byte falls in, so line
``k`` of range ``r`` is global line ``1 + sum(lines of ranges < r) + k`` (`LineIndex`).
"""
from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, islice, repeat

import pyarrow as pa
import pyarrow.fs as pafs

from knowcoder_ray.storage import filesystem

CHUNK = 1 << 20  # bytes per read call
BLOCK_LINES = 1000  # lines per Ray Data block from a read task
MIN_RANGE_BYTES = 16 << 20  # a plain dump is split into ranges of at least this size...
MAX_RANGE_BYTES = 32 << 20  # ...and at most this: a task's memory is bounded by its range, not the dump
LINE_SCHEMA = pa.schema([("range", pa.int32()), ("line", pa.int64()), ("text", pa.binary())])
TRUNCATED = b"\x00knowcoder:truncated\x00"  # marker line: no dump line starts with a NUL byte
COMPRESSIONS = {".bz2": "bz2", ".gz": "gzip"}  # by the end of the file name


def compression_of(path: str) -> str | None:
    return next((c for ending, c in COMPRESSIONS.items() if path.lower().endswith(ending)), None)


def file_size(uri: str) -> int:
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        raise IsADirectoryError(f"{uri} is a folder, not a Wikidata dump file")
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"Wikidata dump not found: {uri}")
    return info.size


def _split_lines(chunks: Iterator[bytes], start: int, end: float) -> Iterator[bytes]:
    """Lines (without the newline) whose first byte lies in [start, end), given the chunks read from byte
    `max(start - 1, 0)` (a line read from before `start` belongs to the previous range)."""
    tail, pos = b"", max(start - 1, 0)  # file offset of `tail`'s first byte
    for data in chunks:
        parts = (tail + data).split(b"\n")
        tail = parts.pop()
        for part in parts:
            if pos >= end:
                return
            if pos >= start:
                yield part
            pos += len(part) + 1
    if tail and start <= pos < end:
        yield tail


def _chunks(f, cut: list[str] | None = None) -> Iterator[bytes]:
    """The data of `f` in chunks; with `cut`, a decoder error (stream cut short, corrupt data) ends the
    chunks and is recorded there instead of raised."""
    read = getattr(f, "read1", f.read)  # read1: what a decoder has decoded so far is not lost at a cut
    while True:
        try:
            data = read(CHUNK)
        except (EOFError, OSError) as e:
            if cut is None:
                raise
            cut.append(f"{type(e).__name__}: {e}")
            return
        if not data:
            return
        yield data


def iter_range(uri: str, start: int = 0, end: float = float("inf")) -> Iterator[bytes]:
    """The raw lines of one byte range of a plain dump, or of the whole of a compressed dump."""
    fs, path = filesystem(uri)
    codec = compression_of(path)
    if codec is not None:
        if start != 0 or end != float("inf"):  # byte_ranges never splits one; a caller that does is wrong
            raise ValueError(f"{uri}: a compressed dump can only be read as one stream")
        cut: list[str] = []
        with fs.open_input_stream(path, compression=None) as raw:
            # stdlib decoders: both read multi-stream/multi-member files, as the real dumps are
            with bz2.BZ2File(raw) if codec == "bz2" else gzip.GzipFile(fileobj=raw) as f:
                yield from _split_lines(_chunks(f, cut), 0, end)
            if cut:
                yield TRUNCATED + f"the {codec} stream ends early or is corrupt ({cut[0]})".encode()
        return
    with fs.open_input_file(path) as f:
        f.seek(max(start - 1, 0))
        yield from _split_lines(_chunks(f), start, end)


def byte_ranges(uri: str, parallelism: int, min_bytes: int = MIN_RANGE_BYTES,
                max_bytes: int = MAX_RANGE_BYTES) -> list[tuple[int, float]]:
    """Split a plain dump into `parallelism` ranges of at least `min_bytes` (fewer if it is small), and
    into more when ranges would exceed `max_bytes`; a compressed dump is one range."""
    if compression_of(uri) is not None:
        return [(0, float("inf"))]
    size = file_size(uri)
    n = max(1, min(parallelism, size // max(min_bytes, 1)), -(-size // max(max_bytes, 1)))
    return [(size * i // n, size * (i + 1) // n if i + 1 < n else float("inf")) for i in range(n)]


def iter_lines(uri: str, rng: int = 0, start: int = 0, end: float = float("inf")) -> Iterator[tuple[int, int, bytes]]:
    """(range, index, raw line) of the byte range `rng` = [start, end); by default the whole dump as range 0."""
    return zip(repeat(rng), count(), iter_range(uri, start, end))


@dataclass
class LineIndex:
    """Turns (range, index) positions into 1-based global line numbers once every range is counted."""

    lines_per_range: dict[int, int]

    def line_number(self, rng: int, index: int) -> int:
        return 1 + sum(n for r, n in self.lines_per_range.items() if r < rng) + index

    @property
    def total(self) -> int:
        return sum(self.lines_per_range.values())


# ---- Ray Data -----------------------------------------------------------------------------------------

def _block(rng: int, first: int, lines: list[bytes]) -> pa.Table:
    return pa.table({"range": [rng] * len(lines), "line": range(first, first + len(lines)), "text": lines},
                    schema=LINE_SCHEMA)


def _read_range(uri: str, rng: int, start: int, end: float, block_lines: int) -> Iterator[pa.Table]:
    lines, first = iter_range(uri, start, end), 0
    while buf := list(islice(lines, block_lines)):
        yield _block(rng, first, buf)
        first += len(buf)
    if first == 0:  # an empty range is one empty block
        yield _block(rng, 0, [])


def read_dump(uri: str, *, parallelism: int = -1, block_lines: int = BLOCK_LINES,
              min_range_bytes: int = MIN_RANGE_BYTES):
    """The dump's lines as a streaming Ray Dataset (columns range:int32, line:int64, text:binary).
    `parallelism`: byte ranges of a plain dump (default 4 per cluster CPU; see `byte_ranges`)."""
    import ray
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class WikidataDumpDatasource(Datasource):
        def estimate_inmemory_data_size(self):
            return file_size(uri) if compression_of(uri) is None else None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda rng=rng, start=start, end=end: _read_range(uri, rng, start, end, block_lines),
                             BlockMetadata(num_rows=None, size_bytes=None if end == float("inf") else int(end - start),
                                           input_files=[uri], exec_stats=None),
                             schema=LINE_SCHEMA, per_task_row_limit=per_task_row_limit)
                    for rng, (start, end) in enumerate(byte_ranges(uri, parallelism, min_range_bytes))]

    file_size(uri)  # fail early, naming the missing path
    if parallelism <= 0:
        parallelism = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    n = len(byte_ranges(uri, parallelism, min_range_bytes))
    # one block per range as planned: no re-splitting of the read output into many small blocks
    return ray.data.read_datasource(WikidataDumpDatasource(), override_num_blocks=n)
