"""The corpus a user gives to training, read through Ray Data (no Ray Train run): every row is packed or
rejected with its reason, and a corpus that cannot be read is one line naming the file (and line)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowcoder_ray.train.config import DataSpec
from knowcoder_ray.train.dataset import DataError, prepare_dataset


def _jsonl(path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _prepare(path, model, sft=False):
    return prepare_dataset(DataSpec(path=str(path), seq_len=64, shuffle=False), str(model), mask_prompt=sft)


def test_mixed_row_kinds_and_files_are_all_used_or_rejected(ray_cluster, corpus, tmp_path):
    _, model = corpus
    # before: a folder whose files differ in columns raised a 26-line pandas KeyError traceback
    _jsonl(tmp_path / "mixed" / "1.jsonl", [{"text": "some code"}])
    _jsonl(tmp_path / "mixed" / "2.jsonl", [{"prompt": "p", "output": "o"}])
    _, summary, rejects = _prepare(tmp_path / "mixed", model)
    assert (summary["samples"], summary["rejected"]) == (2, 0)
    # before: the {prompt, output} rows among text rows were rejected as "'text' is missing"
    path = _jsonl(tmp_path / "one.jsonl", [{"text": "a"}, {"prompt": "p", "output": "o"}, {"text": None}])
    _, summary, rejects = _prepare(path, model)
    assert (summary["samples"], summary["rejected"]) == (2, 1) and rejects[0].startswith("'text'")
    path = _jsonl(tmp_path / "sft.jsonl", [{"prompt": "p", "output": "o"}, {"text": "a"}])
    _, summary, rejects = _prepare(path, model, sft=True)  # SFT: the text row is rejected, with its reason
    assert (summary["samples"], summary["rejected"]) == (1, 1) and rejects[0].startswith("'prompt'")
    path = _jsonl(tmp_path / "types.jsonl", [{"text": "ok"}, {"text": 5}, {"text": ["a"]}, {"text": ""}])
    _, summary, rejects = _prepare(path, model)
    assert (summary["samples"], summary["rejected"]) == (1, 3)
    pq.write_table(pa.table({"prompt": ["p", None, "p"], "output": ["o", "o", None]}), tmp_path / "n.parquet")
    _, summary, rejects = _prepare(tmp_path / "n.parquet", model, sft=True)
    assert (summary["samples"], summary["rejected"]) == (1, 2)


@pytest.mark.parametrize("content, expected", [
    (b"", "holds no rows"),  # before: AttributeError 'NoneType' object has no attribute 'names'
    (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "line 2: not UTF-8"),  # before: 51-line Ray traceback
    (b'\xef\xbb\xbf{"text": "ok"}\n', "line 1: starts with a UTF-8 byte-order mark"),  # before: 65 lines
    (b'{"text": "ok"}\n{not json\n', "line 2: not JSON"),  # before: 61-line Ray traceback
])
def test_unreadable_jsonl_is_one_line_naming_file_and_line(ray_cluster, corpus, tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        _prepare(path, corpus[1])
    assert str(path) in str(e.value) and expected in str(e.value) and "\n" not in str(e.value)


def test_parquet_files_with_different_columns(ray_cluster, corpus, tmp_path):
    pq.write_table(pa.table({"text": ["some code", None]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"prompt": ["p"], "output": ["o"]}), tmp_path / "2.parquet")
    _, summary, rejects = _prepare(tmp_path, corpus[1])
    assert (summary["samples"], summary["rejected"]) == (2, 1) and rejects[0].startswith("'text'")


def test_corrupt_parquet_is_one_line_naming_the_file(ray_cluster, corpus, tmp_path):
    pq.write_table(pa.table({"text": ["good"]}), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_text("not parquet")
    with pytest.raises(DataError) as e:  # before: ArrowInvalid "Parquet magic bytes not found", no file named
        _prepare(tmp_path, corpus[1])
    assert f"{tmp_path}/b.parquet: not a readable Parquet file" in str(e.value) and "\n" not in str(e.value)


def test_crlf_and_blank_lines_are_read(ray_cluster, corpus, tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"text": "first"}\r\n\r\n{"text": "second"}\r\n')
    _, summary, rejects = _prepare(path, corpus[1])
    assert (summary["samples"], summary["rejected"]) == (2, 0)


def test_model_without_tokenizer_is_one_line_before_any_ray_task(corpus, tmp_path):
    import shutil

    model = tmp_path / "no_tokenizer"
    shutil.copytree(corpus[1], model)
    for f in model.glob("tokenizer*"):
        f.unlink()
    path = _jsonl(tmp_path / "c.jsonl", [{"text": "a"}])
    with pytest.raises(DataError) as e:  # before: a ValueError traceback from inside the pack_batch Ray task
        _prepare(path, model)
    assert str(model) in str(e.value) and "tokenizer" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("damage, expected", [("no_weights", "holds no weights"),
                                              ("corrupt", "not a readable safetensors file"),
                                              ("no_config", "no config.json")])
def test_model_folder_without_usable_weights_is_one_line_before_training(corpus, tmp_path, damage, expected):
    import shutil

    from knowcoder_ray.train.config import load_config
    from knowcoder_ray.train.run import train

    model = tmp_path / "model"
    shutil.copytree(corpus[1], model)
    weights = model / "model.safetensors"
    if damage == "no_weights":
        weights.unlink()
    elif damage == "corrupt":
        weights.write_bytes(b"garbage" * 10)
    else:
        (model / "config.json").unlink()
    cfg = load_config("tiny_pretrain", [f"model={model}", f"data.path={corpus[0] / 'understanding.parquet'}",
                                        f"output_dir={tmp_path / 'out'}", f"storage_path={tmp_path / 'ckpt'}"])
    with pytest.raises(DataError) as e:  # before: the Ray Train workers failed with a traceback, after packing
        train(cfg)
    assert str(model) in str(e.value) and expected in str(e.value) and "\n" not in str(e.value)
