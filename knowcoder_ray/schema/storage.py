"""Schema library files at a local path or an s3:// / gs:// URI: the Parquet schema table and text files."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from knowcoder_ray.schema.dump import resolve
from knowcoder_ray.schema.types import SchemaLibrary

_STRINGS = pa.list_(pa.string())
SCHEMA = pa.schema([
    ("name", pa.string()), ("kind", pa.string()), ("parents", _STRINGS), ("wikidata_id", pa.string()),
    ("label", pa.string()), ("description", pa.string()), ("examples", _STRINGS),
    ("head_types", _STRINGS), ("tail_types", _STRINGS), ("role_names", _STRINGS),
    ("role_types", pa.list_(_STRINGS)),
])


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def write_text(uri: str, text: str) -> None:
    fs, path = resolve(uri)
    with fs.open_output_stream(path) as f:
        f.write(text.encode("utf-8"))


def read_text(uri: str) -> str:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_parquet(library: SchemaLibrary, uri: str) -> None:
    """The library as one Parquet table, one row per type (`SchemaLibrary.to_rows`)."""
    fs, path = resolve(uri)
    pq.write_table(pa.Table.from_pylist(library.to_rows(), schema=SCHEMA), path, filesystem=fs)


def read_parquet(uri: str) -> SchemaLibrary:
    fs, path = resolve(uri)
    table = pq.read_table(path, filesystem=fs)
    missing = [f.name for f in SCHEMA if f.name not in table.column_names and f.name not in ("role_names", "role_types")]
    if missing:
        raise ValueError(f"{uri}: not a schema table, missing columns {missing}")
    return SchemaLibrary.from_rows(table.to_pylist())
