"""Resuming from the bucket alone: a corpus build and a training run whose inputs, outputs and
checkpoints all live in an S3-compatible bucket (moto on 127.0.0.1) are interrupted, then rerun; the rerun
finishes from what the bucket holds (no local state: each node's model cache is emptied in between),
duplicates nothing, and a second rerun adds nothing."""
import json
import shutil
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowcoder_ray import storage
from knowcoder_ray.data import pipeline
from knowcoder_ray.data.following import FollowingTransform, Sampling, plan
from knowcoder_ray.data.sources import benchmark_library
from corpora_helpers import INSTRUCTIE, LSEE, UNIVERSALNER, read_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def bucket(s3_server):
    _, name, _ = s3_server
    return f"s3://{name}/resume-{uuid.uuid4().hex[:8]}"


def _objects(prefix: str) -> dict[str, tuple]:
    fs, inner = storage.filesystem(prefix)
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
    return {i.path: (i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File}


def test_corpus_build_reruns_from_the_bucket(ray_cluster, data_dir, bucket, tmp_path):
    inputs = {}
    for source, path in (("universalner", UNIVERSALNER), ("instructie", INSTRUCTIE), ("lsee", LSEE)):
        inputs[source] = [storage.join(bucket, "inputs", path.name)]
        storage.write_bytes(inputs[source][0], storage.read_bytes(str(path)))
    specs = plan(**inputs, block_bytes=600)  # the JSON array is planned from a stream of the bucket object
    assert {s.kind for s in specs} == {"json_array", "lines"} and all(s.path.startswith("s3://") for s in specs)
    transform = FollowingTransform(benchmark_library(data_dir), Sampling(seed=3, shard_size=6, distractors=2))
    out = storage.join(bucket, "following")

    m = pipeline.run(transform, specs, out, workers=2, max_shards=3)  # interrupted after 3 shards
    assert not m["complete"] and m["shards_complete"] == 3
    m = pipeline.run(transform, specs, out, workers=2)  # resumed from the bucket's completion records
    assert m["complete"] and m["shards_complete"] == len(specs)
    data = sorted(storage.name(p) for p in storage.list_files(storage.join(out, "data")))
    assert data == sorted(f"{s.shard}.parquet" for s in specs)  # one file per shard, none twice
    before, calls = _objects(out), []
    again = pipeline.run(transform, specs, out, workers=2, progress=lambda *a: calls.append(a))
    assert calls == [] and again["shards"] == m["shards"]
    assert {k: v for k, v in _objects(out).items() if not k.endswith("manifest.json")} == \
        {k: v for k, v in before.items() if not k.endswith("manifest.json")}
    ref = pipeline.run(transform, specs, str(tmp_path / "local"), executor="local")  # the same rows as a local build
    rows = sorted(json.dumps(r, sort_keys=True) for r in read_rows(out))
    assert rows == sorted(json.dumps(r, sort_keys=True) for r in read_rows(str(tmp_path / "local")))
    assert ref["rows"] == m["rows"]


def _steps(log_file) -> list[dict]:
    return [json.loads(line) for line in open(log_file)]


def test_training_resumes_from_the_bucket(ray_cluster, data_dir, bucket, tmp_path, fail_once_at):
    from knowcoder_ray.train.config import CONFIG_DIR, load_config
    from knowcoder_ray.train.run import train
    from knowcoder_ray.train.tiny import make_tiny_model
    from corpora_helpers import conll04_pairs

    pairs = conll04_pairs(data_dir)
    name = f"tiny-{uuid.uuid4().hex[:8]}"  # this test's entries in the node's model cache
    model = make_tiny_model(storage.join(bucket, name), [p + o for p, o in pairs], seed=0)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": [p + o for p, o in pairs]}), sink)
    storage.write_bytes(storage.join(bucket, "corpus/understanding.parquet"), sink.getvalue().to_pybytes())
    out, log_file = storage.join(bucket, "pretrained"), tmp_path / "steps.jsonl"
    settings = [f"model={model}", f"data.path={bucket}/corpus/understanding.parquet", "data.seq_len=1024",
                f"output_dir={out}", f"storage_path={bucket}/checkpoints", "run_name=resume-test", "max_steps=4",
                "save_every=2", f"log_file={log_file}"]

    with pytest.raises(Exception, match="step 3"):  # the first run dies after its step-2 checkpoint
        train(load_config(CONFIG_DIR / "tiny_pretrain.yaml", [*settings, "max_failures=0"]), [fail_once_at(3)])
    assert not storage.exists(out)
    for entry in storage.cache_dir().glob(f"{name}-*"):  # no local state survives: the model comes again
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    result = train(load_config(CONFIG_DIR / "tiny_pretrain.yaml", settings))
    steps = _steps(log_file)
    assert [(s["step"], s["resumed_at"]) for s in steps] == [(1, None), (2, None), (3, None), (3, 2), (4, 2)]
    assert result.metrics["step"] == 4
    # only the export was copied out of the checkpoint: a plain HF folder, no optimizer state or shards
    exported = {storage.name(p) for p in storage.list_files(out)}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_summary.json"} <= exported
    assert not any("optim" in n or n.endswith(".pt") for n in exported), exported
    ckpt = storage.list_files(f"{bucket}/checkpoints/resume-test")
    assert any("optim" in p for p in ckpt)  # the ZeRO state stayed in the bucket
