"""The training data path: read a corpus with Ray Data, tokenize and pack it, and split it over the
Ray Train workers in a fixed order so a restarted run can skip exactly what it already trained on.
Rows are {"text"} (pretraining) or {"prompt", "output"} (SFT) in Parquet or JSON lines; malformed rows
are set aside with their reason and never reach the trainer.
"""
from __future__ import annotations

import functools
import os
from collections import Counter

import numpy as np
from ray.train import DataConfig

from knowcoder_ray import storage
from knowcoder_ray.settings import UsageError
from knowcoder_ray.train.config import DataSpec
from knowcoder_ray.train.packing import Sample, pack, pair_sample, text_samples

TRAIN_COLUMNS = ["input_ids", "labels", "position_ids"]  # what the model takes
DATA_COLUMNS = TRAIN_COLUMNS + ["n_tokens"]               # what workers read (real tokens, for throughput)
JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


class DataError(UsageError):
    """The corpus or tokenizer cannot be trained on, as the message says (no traceback at the CLI)."""


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The tokenizer of a model folder, loaded once per process."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(storage.local_copy(path))
    if tok.eos_token_id is None:
        raise DataError(f"tokenizer at {path} has no eos token; training needs one to end samples")
    if tok.pad_token_id is None:  # Llama-2 has none; padding is masked out of the loss anyway
        tok.pad_token = tok.eos_token
    return tok


def check_model_folder(path: str) -> None:
    """DataError unless `path` holds an HF model's config.json and weights, with readable safetensors headers
    (checked on the driver: the workers would fail with a traceback after the data was prepared)."""
    files = storage.list_files(path, recursive=False)
    names = {f.rsplit("/", 1)[-1] for f in files}
    if "config.json" not in names:
        raise DataError(f"model {path} is not a Hugging Face model folder (no config.json)")
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        raise DataError(f"model {path} holds no weights (*.safetensors or *.bin)")
    for f in files:
        check_safetensors(f)


def check_safetensors(f: str) -> None:
    """DataError when `f`, a local .safetensors file, has an unreadable header (its tensors are not read)."""
    from safetensors import safe_open

    if f.endswith(".safetensors") and os.path.isfile(f):
        try:
            with safe_open(f, "pt") as st:
                st.keys()
        except Exception as e:  # safetensors raises its own SafetensorError
            raise DataError(f"model weights {f} are not a readable safetensors file ({e})") from None


def _detect_format(path: str) -> str:
    """parquet or json, from the path's suffix or, for a folder, from the files in it."""
    names = [path.lower()] if path.lower().endswith((".parquet", *JSON_SUFFIXES)) else \
        [f.lower() for f in storage.list_files(path)]
    for fmt, suffixes in (("parquet", (".parquet",)), ("json", JSON_SUFFIXES)):
        if any(n.endswith(suffixes) for n in names):
            return fmt
    raise DataError(f"no .parquet or .json/.jsonl files at {path}")


def corpus_root(path: str) -> str:
    """The folder of rows: for a corpus written by `knowcoder data` (manifest.json next to data/), its
    data/ folder, so completion records and quarantined rows are not read as training rows."""
    data = storage.join(path, "data")
    return data if storage.isfile(storage.join(path, "manifest.json")) and storage.isdir(data) else path


def fmt_of(spec: DataSpec) -> str:
    return _detect_format(corpus_root(spec.path)) if spec.format == "auto" else spec.format


def read_corpus(spec: DataSpec, mask_prompt: bool):
    """The corpus as a Ray Dataset in file order, checked to have the columns training reads: prompt and
    output (SFT); text, else prompt and output (pretraining)."""
    import ray.data

    path = corpus_root(spec.path)
    fmt = fmt_of(spec)
    def open_():
        ds = ray.data.read_parquet(path, file_extensions=["parquet"]) if fmt == "parquet" else \
            ray.data.read_json(path, lines=True)
        return ds, ds.schema()

    ds, schema = _read_errors(path, fmt, open_)
    if schema is None:  # every file empty
        raise DataError(f"corpus {path} holds no rows")
    names = set(schema.names)
    columns = ["prompt", "output"] if mask_prompt or "text" not in names else ["text"]
    if not names.issuperset(columns):
        need = "prompt and output" if mask_prompt else "text, or prompt and output"
        raise DataError(f"corpus {path} has columns {sorted(names)}; training needs {need}")
    # not select_columns, which fails on a block (a file of a folder) lacking one: its rows are rejected one
    # by one with their reason. Parquet: other columns are dropped per file (their types may differ between
    # files); JSON blocks are pandas frames, which join whatever their other columns hold.
    if fmt == "parquet":
        ds = ds.map_batches(functools.partial(_project, columns=["prompt", "output"] if mask_prompt else
                                              ["text", "prompt", "output"]), batch_format="pyarrow", batch_size=None)
    ds.context.execution_options.preserve_order = True  # the packed order must not depend on timing
    return ds


def _project(table, columns: list[str]):
    """The `columns` of an Arrow block, nulls where its file has none."""
    import pyarrow as pa

    return pa.table({c: table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.string())
                     for c in columns})


def _first_bad_file(path: str, fmt: str) -> str | None:
    """'<file>[ line <n>]: <what>' for the first file under `path` that Ray cannot read (JSON lines: not UTF-8
    JSON objects; Parquet: no readable footer)."""
    import gzip
    import json

    import pyarrow.parquet as pq

    files = [path] if storage.isfile(path) else [f for f in storage.list_files(path) if (
        f.endswith(".parquet") if fmt == "parquet" else f.lower().endswith(JSON_SUFFIXES))]
    for f in files:
        if fmt == "parquet":
            fs, inner = storage.filesystem(f)
            try:
                pq.read_metadata(inner, filesystem=fs)
            except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
                return f"{f}: not a readable Parquet file ({str(e).splitlines()[0]})"
            continue
        data = storage.read_bytes(f)
        data = gzip.decompress(data) if f.lower().endswith(".gz") else data
        if data.startswith(b"\xef\xbb\xbf"):
            return f"{f} line 1: starts with a UTF-8 byte-order mark; save it without one"
        for n, line in enumerate(data.splitlines(), 1):
            try:
                row = json.loads(line.decode("utf-8")) if line.strip() else {}
            except UnicodeDecodeError as e:
                return f"{f} line {n}: not UTF-8 ({e.reason} at byte {e.start})"
            except ValueError as e:
                return f"{f} line {n}: not JSON ({e})"
            if not isinstance(row, dict):
                return f"{f} line {n}: a JSON {type(row).__name__}, not an object"
    return None


def _read_errors(path: str, fmt: str, fn):
    """fn(), with a file Ray cannot read reported as one line naming it."""
    import pyarrow as pa
    import ray.exceptions

    try:
        return fn()
    except (ray.exceptions.RayTaskError, pa.ArrowInvalid):
        bad = _first_bad_file(path, fmt)
        if bad is None:
            raise
        raise DataError(f"corpus {bad}") from None


def _samples(batch: dict, i: int, tok, seq_len: int, mask_prompt: bool) -> list[Sample]:
    """The samples of row `i`; ValueError names what is wrong with a malformed row."""
    def field_(name):
        v = batch[name][i] if name in batch else None
        if not isinstance(v, str) or not v:
            shown = repr(v)
            raise ValueError(f"{name!r} is missing or not a non-empty string: "
                             f"{shown if len(shown) <= 120 else shown[:120] + '...'}")
        return v

    if mask_prompt:
        return [pair_sample(tok, field_("prompt"), field_("output"), seq_len)]
    text = batch["text"][i] if "text" in batch else None
    prompt = batch["prompt"][i] if "prompt" in batch else None
    if isinstance(text, str) and text or not isinstance(prompt, str):  # else a {prompt, output} row among text rows
        return text_samples(tok, field_("text"), seq_len)
    return text_samples(tok, field_("prompt") + field_("output"), seq_len)  # SFT pairs as plain text


def pack_batch(batch: dict, *, tokenizer: str, seq_len: int, packing: bool, mask_prompt: bool) -> dict:
    """Ray Data batch function: rows in, packed rows out, plus one row per rejected input with `reject`
    set to its reason (packed rows have reject == "")."""
    tok = load_tokenizer(tokenizer)
    n = len(next(iter(batch.values()))) if batch else 0
    samples: list[Sample] = []
    rejects: list[str] = []
    for i in range(n):
        try:
            samples += _samples(batch, i, tok, seq_len, mask_prompt)
        except ValueError as e:
            rejects.append(str(e))
    out = pack(samples, seq_len, tok.pad_token_id, packing)
    n = len(out["n_samples"])
    for key, column in out.items():  # a row of zeros per rejected input
        out[key] = np.concatenate([column, np.zeros((len(rejects), *column.shape[1:]), dtype=column.dtype)])
    out["reject"] = np.array([""] * n + rejects, dtype=object)
    return out


def prepare_dataset(spec: DataSpec, tokenizer: str, *, mask_prompt: bool, seed: int = 0):
    """(materialized Dataset of packed rows with DATA_COLUMNS, a summary of the data, rejected reasons)."""
    try:  # here, not first in a Ray task (a traceback of many lines)
        load_tokenizer(tokenizer)
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot load the tokenizer of model {tokenizer}: {str(e).splitlines()[0]}") from None
    ds = read_corpus(spec, mask_prompt).map_batches(
        pack_batch, batch_size=spec.pack_window, batch_format="numpy",
        fn_kwargs={"tokenizer": tokenizer, "seq_len": spec.seq_len, "packing": spec.packing,
                   "mask_prompt": mask_prompt})
    if spec.shuffle:
        ds = ds.random_shuffle(seed=seed)
    ds = _read_errors(corpus_root(spec.path), fmt_of(spec), ds.materialize)
    counts = dict.fromkeys(["n_samples", "n_tokens", "n_truncated"], 0)  # a rejected input's row holds zeros
    rows, rejects = 0, []
    for b in ds.select_columns([*counts, "reject"]).iter_batches(batch_size=4096, batch_format="numpy"):
        bad = b["reject"] != ""
        rejects += [str(r) for r in b["reject"][bad]]
        rows += int((~bad).sum())  # packed rows of seq_len tokens
        for k in counts:
            counts[k] += int(b[k].sum())
    reasons = Counter(r.split(":", 1)[0] for r in rejects)  # messages read "reason: details"
    if rows == 0:
        raise DataError(f"no trainable rows in {spec.path}: {len(rejects)} rejected ({dict(reasons)})")
    summary = {"samples": counts["n_samples"], "rejected": len(rejects), "truncated": counts["n_truncated"],
               "rows": rows, "tokens": counts["n_tokens"], "seq_len": spec.seq_len,  # tokens: real (non-pad) ones
               "fill": round(counts["n_tokens"] / (rows * spec.seq_len), 4),  # the share of real tokens
               "reasons": dict(reasons.most_common(20))}
    packed = ds.select_columns(DATA_COLUMNS) if not rejects else ds.map_batches(
        lambda b: {k: b[k][b["reject"] == ""] for k in DATA_COLUMNS}, batch_format="numpy").materialize()
    return packed, summary, rejects


class OrderedSplit(DataConfig):
    """Gives worker i the i-th of `world_size` fixed splits (the default streaming split hands blocks to whichever
    worker asks first), so a restarted worker skips the batches its checkpoint counted. `parts[name]` are cut on
    the driver while every CPU is free: reading them runs no Ray Data task that could wait forever for a CPU."""

    def __init__(self, parts: dict[str, list]) -> None:
        super().__init__()
        self.parts = parts

    def configure(self, datasets, world_size, worker_handles=None, worker_node_ids=None, **kwargs):
        return [{name: self.parts[name][i].iterator() for name in datasets} for i in range(world_size)]
