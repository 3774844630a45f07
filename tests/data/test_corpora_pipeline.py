"""The shared pipeline: sharding covers every record once, quarantine, rerun without duplicates,
resume after an interruption (a bounded run, crash leftovers, and a killed driver process)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowcoder_ray.data import pipeline
from knowcoder_ray.data.following import FollowingTransform, Sampling, plan
from knowcoder_ray.data.pipeline import PipelineError, plan_files, read_shard
from knowcoder_ray.data.sources import benchmark_library
from corpora_helpers import INSTRUCTIE, KELM, LSEE, UNIVERSALNER, read_rows

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Sampling(seed=3, shard_size=6, distractors=2)


@pytest.fixture(scope="module")
def transform(data_dir):
    return FollowingTransform(benchmark_library(data_dir), CONFIG)


def all_items(specs):
    bad: list = []
    items = [it.payload for s in specs for it in read_shard(s, bad)]
    return items, bad


@pytest.mark.parametrize("block", [1, 7, 100, 333, 1 << 20])
def test_byte_range_shards_cover_every_line_once(block):
    items, bad = all_items(plan_files("kelm", [str(KELM)], block_bytes=block))
    assert items == KELM.read_text().splitlines() and not bad
    specs = plan_files("kelm", [str(KELM)], block_bytes=block)
    assert [s.shard for s in specs] == [s.shard for s in plan_files("kelm", [str(KELM)], block_bytes=block)]


@pytest.mark.parametrize("block", [1, 500, 1 << 20])
def test_json_array_and_parquet_shards(tmp_path, block):
    items, bad = all_items(plan_files("universalner", [str(UNIVERSALNER)], block_bytes=block))
    assert items == json.loads(UNIVERSALNER.read_text()) and not bad
    rows = [json.loads(line) for line in INSTRUCTIE.read_text().splitlines()]
    rows[3]["relation"] = []  # Parquet needs one type per column
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ie.parquet", row_group_size=3)
    items, _ = all_items(plan_files("instructie", [str(tmp_path / "ie.parquet")], block_rows=max(1, block // 300)))
    assert items == pa.Table.from_pylist(rows).to_pylist()


def test_broken_json_array_is_quarantined_from_the_break(tmp_path):
    text = UNIVERSALNER.read_text()
    cut = text.index('"id": "ner_3"')
    (tmp_path / "broken.json").write_text(text[:cut] + "}} oops [")
    items, bad = all_items(plan_files("universalner", [str(tmp_path / "broken.json")], block_bytes=400))
    assert len(items) == 3 and len(bad) == 1 and "unreadable from here on" in bad[0]["reason"]


def inputs(data_dir):
    return dict(universalner=[str(UNIVERSALNER)], instructie=[str(INSTRUCTIE)], lsee=[str(LSEE)],
                benchmarks=["conll04:dev"], data_dir=str(data_dir), block_bytes=600, records_per_shard=40)


def listing(out: Path) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def by_shard(out) -> list:
    return sorted(json.dumps(r, sort_keys=True) for r in read_rows(str(out)))


def test_rerun_adds_nothing_and_quarantine_counts(ray_cluster, transform, data_dir, tmp_path):
    specs = plan(**inputs(data_dir))
    out = tmp_path / "out"
    calls = []
    m1 = pipeline.run(transform, specs, str(out), workers=2, progress=lambda *a: calls.append(a))
    assert m1["complete"] and len(calls) == len(specs) > 8
    assert m1["quarantined"] == 5 and m1["by_source"].keys() == {"universalner", "instructie", "lsee", "conll04"}
    quarantined = [json.loads(line) for f in (out / "quarantine").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(quarantined) == 5 and all(q["reason"] and q["key"] for q in quarantined)
    before, calls = listing(out), []
    m2 = pipeline.run(transform, specs, str(out), workers=2, progress=lambda *a: calls.append(a))
    after = listing(out)
    assert calls == [] and m2["shards"] == m1["shards"]
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {k: v for k, v in before.items()
                                                                         if k != "manifest.json"}
    assert len(list((out / "data").iterdir())) == len(specs) == len(list((out / "_shards").iterdir()))
    # the same corpus, row for row, from the single-process executor
    m3 = pipeline.run(transform, specs, str(tmp_path / "local"), executor="local")
    assert by_shard(out) == by_shard(tmp_path / "local") and m3["n_tokens"] == m1["n_tokens"]


def test_other_configuration_is_refused_unless_overwritten(transform, data_dir, tmp_path):
    specs = plan(benchmarks=["conll04:dev"], data_dir=str(data_dir))
    out = str(tmp_path / "out")
    pipeline.run(transform, specs, out, executor="local")
    other = FollowingTransform(transform.library, Sampling(seed=4))
    with pytest.raises(PipelineError, match="another configuration"):
        pipeline.run(other, specs, out, executor="local")
    assert pipeline.run(other, specs, out, executor="local", overwrite=True)["config"]["seed"] == 4


def test_interrupted_run_resumes_without_loss_or_duplicates(ray_cluster, transform, data_dir, tmp_path):
    specs = plan(**inputs(data_dir))
    ref = tmp_path / "ref"
    pipeline.run(transform, specs, str(ref), executor="local")
    out = tmp_path / "out"
    m = pipeline.run(transform, specs, str(out), workers=2, max_shards=3)  # stopped after 3 shards
    assert not m["complete"] and m["shards_complete"] == 3
    pending = [s for s in specs if s.shard not in pipeline.completed(str(out))]
    # what a crash mid-shard leaves: a data file without its completion record, and a temporary file
    (out / "data" / f"{pending[0].shard}.parquet").write_bytes(b"half-written")
    (out / "data" / f".{pending[1].shard}.parquet.tmp-deadbeef").write_bytes(b"partial")
    m = pipeline.run(transform, specs, str(out), workers=2)
    assert m["complete"] and m["shards_complete"] == len(specs)
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(f"{s.shard}.parquet" for s in specs)
    assert by_shard(out) == by_shard(ref)


def test_killed_driver_resumes(ray_cluster, transform, data_dir, tmp_path):
    """A real interruption: the CLI driver (on the test's cluster) is killed mid-run, then resumed."""
    big = tmp_path / "lsee_big.tsv"
    lines = LSEE.read_text().splitlines()[:4]
    big.write_text("".join(f"{line}\n" for _ in range(800) for line in lines))
    out = tmp_path / "out"
    args = ["data", "following", "--lsee", str(big), "--out", str(out), "--block-mb", "0.01", "--seed", "3",
            "--shard-size", "6", "--distractors", "2", "--data-dir", str(data_dir), "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "knowcoder_ray.cli", *args, "--address",
                             ray_cluster.get_runtime_context().gcs_address, "--quiet"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and len(list((out / "_shards").glob("*.json"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    specs = plan(lsee=[str(big)], block_bytes=int(0.01 * (1 << 20)))
    done_at_kill = len(pipeline.completed(str(out)))
    assert 2 <= done_at_kill < len(specs), (done_at_kill, len(specs), proc.stderr.read().decode()[-2000:])
    m = pipeline.run(transform, specs, str(out), workers=2)
    assert m["complete"] and m["shards_complete"] == len(specs)
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(f"{s.shard}.parquet" for s in specs)
    ref = tmp_path / "ref"
    pipeline.run(transform, specs, str(ref), executor="local")
    assert by_shard(out) == by_shard(ref)
    assert m["rows"] == pipeline.run(transform, specs, str(ref), executor="local")["rows"]


def test_uri_paths_jsonl_output_and_hf_token_counts(transform, data_dir, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "results": 1, "=": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    specs = plan(lsee=[f"file://{LSEE}"])
    m = pipeline.run(transform, specs, f"file://{tmp_path}/out", fmt="jsonl", tokenizer=str(tmp_path / "tok"),
                     executor="local")
    rows = [json.loads(line) for line in (tmp_path / "out" / "data" / f"{specs[0].shard}.jsonl").read_text().splitlines()]
    assert m["token_counter"].startswith("hf:") and len(rows) == m["rows"] == 7
    pre = pre_tokenizers.Whitespace()
    assert [r["n_tokens"] for r in rows] == [len(pre.pre_tokenize_str(r["prompt"] + r["output"])) for r in rows]


def test_data_command_takes_a_config_file_and_set_overrides(data_dir, tmp_path, capsys):
    """`knowcoder data` reads the corpus settings as every command does: YAML, then --set, then flags."""
    from knowcoder_ray.cli import main

    cfg = tmp_path / "following.yaml"
    cfg.write_text(f"lsee: [{LSEE}]\ndata_dir: {data_dir}\nseed: 3\nshard_size: 6\ndistractors: 4\nexecutor: local\n")
    out = tmp_path / "out"
    assert main(["data", "following", "--config", str(cfg), "--set", "distractors=2", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["n_distractors"] == 2 and manifest["config"]["seed"] == 3 and manifest["rows"] > 0
    capsys.readouterr()
    assert main(["data", "following", "--config", str(cfg), "--set", "distractorz=2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("knowcoder data following: unknown setting 'distractorz' (known: out, library,"), err


@pytest.mark.parametrize("out", ["", "  "])
def test_a_blank_output_location_is_refused(out, transform, data_dir, tmp_path, monkeypatch, capsys):
    """`--out ""` wrote manifest.json, data/, quarantine/ and _shards/ at the file system root (with
    --overwrite it would have deleted /data): a blank output location is a usage error."""
    from knowcoder_ray.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["data", "following", "--lsee", str(LSEE), "--data-dir", str(data_dir), "--executor", "local", "--quiet",
            "--out", out]
    assert main(args) == 2
    assert capsys.readouterr().err == "knowcoder data following: out: is blank: name a path or URI\n"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PipelineError, match="output location is blank"):
        pipeline.run(transform, plan(lsee=[str(LSEE)]), out, executor="local")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_lone_surrogate_is_quarantined_not_fatal(fmt, transform, tmp_path):
    """JSON may escape half a UTF-16 pair ("\\ud83d"); Python reads it into a str that cannot be written as
    UTF-8. Before, one such record stopped the whole build ('utf-8' codec can't encode ...), nothing written."""
    items = json.loads(UNIVERSALNER.read_text())
    bad = json.loads(json.dumps(items[0]))
    bad["conversations"][0]["value"] += " \ud83d"
    (tmp_path / "un.json").write_text(json.dumps([bad, *items]))  # ensure_ascii: the escape as in the file
    lines = INSTRUCTIE.read_text().splitlines()
    ie = {**json.loads(lines[1]), "id": "\udc00"}
    ie["text"] += " \udc00"
    (tmp_path / "ie.json").write_text(json.dumps(ie) + "\n" + "\n".join(lines) + "\n")
    specs = plan(universalner=[str(tmp_path / "un.json")], instructie=[str(tmp_path / "ie.json")])
    m = pipeline.run(transform, specs, str(tmp_path / "out"), fmt=fmt, executor="local")
    assert m["complete"] and m["records"] == len(items) + 1 + len(lines) + 1
    assert all(f["balanced"] for f in m["files"].values())
    q = [json.loads(line) for p in sorted((tmp_path / "out" / "quarantine").iterdir())
         for line in p.read_text().splitlines()]
    assert [r["key"] for r in q if "surrogate" in r["reason"]] == ["ie.json:1", "un.json:0"]
    assert "\ud83d" in next(r["raw"] for r in q if r["key"] == "un.json:0")  # written escaped, read back
    assert m["rows"] == len(read_rows(str(tmp_path / "out"))) > 0


@pytest.mark.parametrize("codec", [None, "gzip"])
@pytest.mark.parametrize("fixture", [UNIVERSALNER, INSTRUCTIE, LSEE, KELM])
def test_a_byte_order_mark_opens_the_file_not_its_first_record(fixture, codec, tmp_path):
    """Files saved with a UTF-8 BOM read as without one. Before, a Pile-NER JSON array with a BOM was read
    as lines (its 139 lines quarantined instead of its 5 records read) and a JSON-lines file lost its
    first record ('Unexpected UTF-8 BOM')."""
    read = {}
    for name, data in (("plain", fixture.read_bytes()), ("bom", b"\xef\xbb\xbf" + fixture.read_bytes())):
        path = tmp_path / name / (fixture.name + (".gz" if codec else ""))
        path.parent.mkdir()
        if codec:
            with pa.CompressedOutputStream(str(path), codec) as f:
                f.write(data)
        else:
            path.write_bytes(data)
        items, bad = all_items(plan_files("x", [str(path)]))
        read[name] = items, [(b["key"], b["reason"]) for b in bad]
    assert read["bom"] == read["plain"]


def test_overwrite_deletes_nothing_it_did_not_build(transform, tmp_path):
    """--overwrite replaces a corpus; pointed at a folder that is not one (no manifest.json, no shard record),
    it deleted that folder's data/ (a user's raw files) before writing. Now it refuses and deletes nothing."""
    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "project" / "data" / "raw.txt").write_text("precious")
    specs = plan(lsee=[str(LSEE)])
    with pytest.raises(PipelineError, match="not a corpus folder"):
        pipeline.run(transform, specs, str(tmp_path / "project"), executor="local", overwrite=True)
    assert (tmp_path / "project" / "data" / "raw.txt").read_text() == "precious"
    out = str(tmp_path / "new")
    rows = pipeline.run(transform, specs, out, executor="local", overwrite=True)["rows"]  # nothing there yet: fine
    assert pipeline.run(transform, specs, out, executor="local", overwrite=True)["rows"] == rows > 0  # a corpus: fine


def test_one_file_named_twice_through_a_link_is_refused(tmp_path):
    """The same file listed twice is refused (its shards collide); named once directly and once through a
    symbolic link (or a linked folder), its records were read twice: every sample written twice."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "l.tsv").write_bytes(LSEE.read_bytes())
    (tmp_path / "link").symlink_to(tmp_path / "in")
    (tmp_path / "l2.tsv").symlink_to(tmp_path / "in" / "l.tsv")
    for second in (tmp_path / "link" / "l.tsv", tmp_path / "link", tmp_path / "l2.tsv"):
        with pytest.raises(PipelineError, match="is the same file as"):
            plan_files("lsee", [str(tmp_path / "in" / "l.tsv"), str(second)])
    assert len(plan_files("lsee", [str(tmp_path / "l2.tsv")])) == 1  # a link alone is read as usual


def test_a_very_long_line_is_read_once_not_once_per_shard(tmp_path):
    """Every shard whose byte range fell inside one long line read on to that line's end, growing its buffer
    64 KiB at a time (quadratic): an 8 MiB line in 16 KiB shards took 8 s, a 30 MiB line in 1 MiB shards
    13 s. A shard in which no line starts now reads only its range."""
    lines = INSTRUCTIE.read_text().splitlines()
    long = json.dumps({**json.loads(lines[0]), "text": "x " * (4 << 20)})
    path = tmp_path / "long.jsonl"
    path.write_text(f"{lines[1]}\n{long}\n{lines[2]}\n")
    specs = plan_files("instructie", [str(path)], block_bytes=16 << 10)
    t0 = time.perf_counter()
    items, bad = all_items(specs)
    assert time.perf_counter() - t0 < 5 and len(specs) > 500 and not bad
    assert items == [lines[1], long, lines[2]]


@pytest.mark.parametrize("damaged", ["manifest.json", "_shards/{shard}.json"])
def test_a_damaged_manifest_or_shard_record_is_named(damaged, transform, tmp_path):
    """Said only json's 'Expecting property name enclosed in double quotes: line 1 column 2 (char 1)'."""
    specs = plan(lsee=[str(LSEE)])
    pipeline.run(transform, specs, str(tmp_path / "out"), executor="local")
    path = tmp_path / "out" / damaged.format(shard=specs[0].shard)
    path.write_text("{broken")
    with pytest.raises(PipelineError, match=f"^{path} is not valid JSON \\(Expecting"):
        pipeline.run(transform, specs, str(tmp_path / "out"), executor="local")
    assert pipeline.run(transform, specs, str(tmp_path / "out"), executor="local", overwrite=True)["complete"]


def test_a_block_smaller_than_a_byte_is_one_byte(data_dir, tmp_path, capsys):
    """block_mb > 0 passed the config check, but one under a byte (1e-9) made 0-byte blocks: 'range() arg 3
    must not be zero'."""
    from knowcoder_ray.cli import main

    assert main(["data", "following", "--lsee", str(LSEE), "--data-dir", str(data_dir), "--out", str(tmp_path / "o"),
                 "--executor", "local", "--quiet", "--format", "jsonl", "--block-mb", "1e-9"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["shards_planned"] == LSEE.stat().st_size and manifest["rows"] == 7


def test_an_empty_input_path_is_refused(tmp_path, monkeypatch):
    """`--lsee ""` (or lsee: [""]) read every .json/.jsonl/.tsv/... file of the working directory as LSEE."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.json").write_text('{"a": 1}\n')
    with pytest.raises(PipelineError, match="an input path is empty"):
        plan_files("lsee", [""])
