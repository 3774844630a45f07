"""The schema library as one Parquet table (local path or URI), one row per type; `load_library` reads
either form a library is kept in (the table, or the released Entities.py / Relations.py / Events.py)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from knowcoder_ray.schema.types import SchemaError, SchemaLibrary, SchemaType
from knowcoder_ray.storage import filesystem

_STRINGS = pa.list_(pa.string())
SCHEMA = pa.schema([
    ("name", pa.string()), ("kind", pa.string()), ("parents", _STRINGS), ("wikidata_id", pa.string()),
    ("label", pa.string()), ("description", pa.string()), ("examples", _STRINGS),
    ("head_types", _STRINGS), ("tail_types", _STRINGS), ("role_names", _STRINGS),
    ("role_types", pa.list_(_STRINGS)),
])


def write_parquet(library: SchemaLibrary, uri: str) -> None:
    """The library as one Parquet table, one row per type (`SchemaLibrary.to_rows`)."""
    fs, path = filesystem(uri)
    pq.write_table(pa.Table.from_pylist(library.to_rows(), schema=SCHEMA), path, filesystem=fs)


def read_parquet(uri: str) -> SchemaLibrary:
    fs, path = filesystem(uri)
    table = pq.read_table(path, filesystem=fs)
    missing = [f.name for f in SCHEMA if f.name not in table.column_names and f.name not in ("role_names", "role_types")]
    if missing:
        raise ValueError(f"{uri}: not a schema table, missing columns {missing}")
    types = []
    for i, row in enumerate(table.to_pylist(), start=1):
        try:
            if not isinstance(row["name"], str):
                raise ValueError("type without a name")
            types.append(SchemaType.from_row(row))
        except (ValueError, TypeError) as e:  # SchemaError: a bad name, kind or role
            raise ValueError(f"{uri}: row {i}: {e}") from None
    try:
        return SchemaLibrary(types)
    except SchemaError as e:  # a name twice
        raise ValueError(f"{uri}: {e}") from None


def load_library(uri: str) -> SchemaLibrary:
    """A Parquet schema table, or a folder of Entities.py / Relations.py / Events.py read with `ast`, never
    imported (path or URI)."""
    from knowcoder_ray.schema.pyfile import read_pyfiles

    uri = str(uri)
    if uri.endswith(".parquet"):
        return read_parquet(uri)
    try:
        return read_pyfiles(uri)
    except FileNotFoundError as e:
        raise ValueError(f"schema library {uri!r}: expected a .parquet table or a folder of "
                         f"Entities.py/Relations.py/Events.py ({e})") from None
