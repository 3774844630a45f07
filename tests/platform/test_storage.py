"""knowcoder_ray.storage on the local disk and on a real S3-compatible server (moto on 127.0.0.1): files,
listing, globbing, folder copies both ways, uploads of locally written folders, and the per-node model
cache (one download per node under concurrent processes, a fresh copy when the folder changes)."""
import json
import logging
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from knowcoder_ray import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    _, bucket, _ = request.getfixturevalue("s3_server")
    return f"s3://{bucket}/{uuid.uuid4().hex[:8]}"


def test_files_list_glob_and_remove(root):
    storage.write_text(storage.join(root, "a/b.txt"), "héllo\nworld\n")
    storage.write_bytes(storage.join(root, "a/c.jsonl"), b'{"x": 1}\n')
    storage.write_text(storage.join(root, "d/e/f.jsonl"), "")
    assert storage.read_text(storage.join(root, "a/b.txt")) == "héllo\nworld\n"
    with storage.open_text(storage.join(root, "a/b.txt")) as f:
        assert list(f) == ["héllo\n", "world\n"]
    assert storage.isfile(storage.join(root, "a/b.txt")) and storage.isdir(storage.join(root, "a"))
    assert not storage.exists(storage.join(root, "nope")) and storage.list_files(storage.join(root, "nope")) == []
    every = [storage.join(root, p) for p in ("a/b.txt", "a/c.jsonl", "d/e/f.jsonl")]
    assert storage.list_files(root) == every  # the caller's kind of path, no temporaries left behind
    assert storage.list_files(storage.join(root, "a"), recursive=False) == every[:2]
    assert storage.glob(storage.join(root, "a/*.jsonl")) == [every[1]]
    assert storage.glob(storage.join(root, "*/*.txt")) == [every[0]]
    assert storage.glob(storage.join(root, "*/*.jsonl")) == [every[1]]  # not d/e/f.jsonl: one folder deep
    assert storage.glob(storage.join(root, "**/*.jsonl")) == every[1:]
    assert storage.glob(storage.join(root, "a/b.txt")) == [every[0]]
    assert storage.name(storage.join(root, "a") + "/") == "a"
    storage.remove(storage.join(root, "d"))
    assert storage.list_files(root) == every[:2]


def test_a_path_inside_a_file_system_is_given_back_in_the_callers_kind(root, tmp_path, monkeypatch):
    """What Ray Train reports as a checkpoint's path (inside its file system) named the way storage_path was:
    a bucket URI for a bucket, a plain path for a local folder or a file:// URI (not `file://tmp/...`)."""
    fs, inner = storage.filesystem(storage.join(root, "run/checkpoint_000001"))
    storage.write_text(storage.join(root, "run/checkpoint_000001/x.txt"), "x")
    named = storage.outer_path(root, inner)
    assert storage.read_text(storage.join(named, "x.txt")) == "x"
    if not storage.is_uri(root):
        assert storage.outer_path(f"file://{root}", inner) == named == os.path.abspath(named)
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("rel/dir") == str(tmp_path / "rel/dir") and storage.absolute(root).endswith(root)


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_copy_dir_up_and_down_and_output_folder(root, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(os.urandom(300_000))
    storage.copy_dir(str(src), storage.join(root, "model"))
    storage.copy_dir(storage.join(root, "model"), str(tmp_path / "back"))
    assert _tree(tmp_path / "back") == _tree(src)
    with pytest.raises(FileNotFoundError):
        storage.copy_dir(storage.join(root, "missing"), str(tmp_path / "x"))

    with storage.output_folder(storage.join(root, "saved")) as out:
        Path(out, "a.txt").write_text("done")
    assert storage.read_text(storage.join(root, "saved/a.txt")) == "done"
    with pytest.raises(RuntimeError), storage.output_folder(storage.join(root, "failed")) as out:
        Path(out, "a.txt").write_text("half")
        raise RuntimeError("the writer failed")
    if storage.is_uri(root):  # a failed write uploads nothing
        assert not storage.exists(storage.join(root, "failed"))


def _fetch(uri: str) -> tuple[str, int, dict]:
    """In a fresh process (another actor on the node): the cached path, downloads made, file sizes."""
    fetched = []
    handler = logging.Handler()
    handler.emit = lambda record: fetched.append(record.getMessage())
    logging.getLogger("knowcoder_ray.storage").addHandler(handler)
    logging.getLogger("knowcoder_ray.storage").setLevel(logging.INFO)
    local = storage.local_copy(uri)
    return local, len(fetched), {p.name: p.stat().st_size for p in Path(local).iterdir()}


def test_local_copy_downloads_once_per_node_and_again_after_a_change(s3_server, tmp_path, monkeypatch):
    _, bucket, _ = s3_server
    cache = tmp_path / "cache"
    monkeypatch.setenv(storage.CACHE_ENV, str(cache))
    uri = f"s3://{bucket}/cache-test/model"
    storage.write_bytes(f"{uri}/model.safetensors", os.urandom(8 << 20))
    storage.write_text(f"{uri}/config.json", json.dumps({"v": 1}))
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_fetch, [uri] * 4))
    paths = {r[0] for r in results}
    assert len(paths) == 1 and sum(r[1] for r in results) == 1  # four processes, one download
    assert all(r[2] == {"model.safetensors": 8 << 20, "config.json": 8} for r in results)
    entries = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
    assert entries == [Path(paths.pop()).name]  # no temporary folder left behind

    storage.write_text(f"{uri}/config.json", json.dumps({"v": 22}))  # the model was re-trained in place
    again = storage.local_copy(uri)
    assert json.loads(Path(again, "config.json").read_text()) == {"v": 22} and again not in entries
    assert storage.local_copy(str(tmp_path)) == str(tmp_path)  # a local folder is used where it is
    with pytest.raises(FileNotFoundError):
        storage.local_copy(str(tmp_path / "missing"))


def test_engine_and_serve_config_load_an_adapter_whose_base_is_a_bucket_uri(s3_server, tmp_path, monkeypatch,
                                                                           one_torch_thread):
    """The adapter folder records a bucket URI as its base: the engine fetches both through the cache and
    generates what the same adapter gives from local folders."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from knowcoder_ray.infer.engine import EngineConfig, TransformersEngine
    from knowcoder_ray.serve.config import ServeConfig
    from knowcoder_ray.train.tiny import make_tiny_model

    _, bucket, _ = s3_server
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    texts = [f"Person(\"Ada {i}\") lived in London and wrote code number {i}." for i in range(50)]
    base = make_tiny_model(tmp_path / "base", texts, seed=0)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    base_uri, adapter_uri = f"s3://{bucket}/engine/base", f"s3://{bucket}/engine/adapter"
    for folder, recorded in ((tmp_path / "adapter", str(base)), (tmp_path / "adapter-up", base_uri)):
        model.save_pretrained(folder)
        conf = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**conf, "base_model_name_or_path": recorded}))
    storage.copy_dir(str(base), base_uri)
    storage.copy_dir(str(tmp_path / "adapter-up"), adapter_uri)

    config = EngineConfig(max_new_tokens=12, batch_size=2)
    prompts = ["Person(\"Ada", "lived in", "code number"]
    assert TransformersEngine(adapter_uri, config).generate(prompts) == \
        TransformersEngine(tmp_path / "adapter", config).generate(prompts)
    cfg = ServeConfig.model_validate({"model_dir": base_uri + "/", "adapter_dir": adapter_uri, "library": "x.parquet"})
    assert cfg.engine_path() == adapter_uri
    with pytest.raises(ValueError, match="trained on"):
        ServeConfig.model_validate({"model_dir": f"s3://{bucket}/other", "adapter_dir": adapter_uri,
                               "library": "x.parquet"}).engine_path()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_json_array_planning_streams_in_chunks(chunk):
    """A JSON array input is planned from a stream a chunk at a time (never read whole on the driver):
    any chunk size, multi-byte characters cut by a chunk, numbers at a chunk's end give the same ranges."""
    import io

    from knowcoder_ray.data.pipeline import _plan_json_array
    from corpora_helpers import UNIVERSALNER

    items = json.loads(UNIVERSALNER.read_text())[:6] + [12345, "Zürich — 東京", {"k": [1, 2.5, None]}]
    data = json.dumps(items, ensure_ascii=False, indent=1).encode("utf-8")
    ranges = _plan_json_array(io.BytesIO(data), len(data), 300, chunk=chunk)
    assert ranges == _plan_json_array(io.BytesIO(data), len(data), 300)
    back = [json.loads(b"[" + data[s:e].rstrip().rstrip(b",]") + b"]") for s, e, _ in ranges]
    assert [x for part in back for x in part] == items
    assert [first for _, _, first in ranges] == [0, *[sum(map(len, back[:i])) for i in range(1, len(back))]]
    broken = data[: data.index(b"Z\xc3\xbcrich") - 1] + b"oops, ]"
    tail = _plan_json_array(io.BytesIO(broken), len(broken), 300, chunk=chunk)[-1]
    assert tail[1] == len(broken) and tail[2] == items.index("Zürich — 東京")  # from the element that breaks
