"""Nothing lost: deliberately corrupted inputs of every source format (KELM, UniversalNER, InstructIE,
LSEE; plain, gzip, bz2 and zstd), built into both corpora. Per input file, the records counted here
independently equal the manifest's records, and records = written + quarantined; quarantine entries
carry the line number (and byte offset) of the bad line and a reason."""
import json
from pathlib import Path

import pyarrow as pa
import pytest

from knowcoder_ray.data import pipeline
from knowcoder_ray.data.following import FollowingTransform, Sampling
from knowcoder_ray.data.following import plan as following_plan
from knowcoder_ray.data.pipeline import PipelineError, plan_files, read_shard
from knowcoder_ray.data.understanding import UnderstandingTransform
from knowcoder_ray.data.understanding import plan as understanding_plan
from corpora_helpers import INSTRUCTIE, KELM, LSEE, UNIVERSALNER, wikidata_library

CODECS = ("gzip", "bz2", "zstd")
EXT = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}


def _compress(data: bytes, codec: str) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, codec) as f:
        f.write(data)
    return sink.getvalue().to_pybytes()


def _corrupt_json_lines(path: Path) -> tuple[bytes, dict[int, str]]:
    """The fixture's lines with corruptions added; returns the bytes and {line number: expected reason}."""
    good = path.read_bytes().splitlines()
    first = json.loads(good[0])
    escaped_cr = json.dumps({**first, "note": "a\rb"}).encode()  # valid JSON: the CR is escaped
    raw_cr = escaped_cr.replace(b"\\r", b"\r")                   # a raw CR inside a string: one bad record
    nan = json.dumps({**first, "cate": "x"}).replace('"x"', "NaN").encode()
    deep = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"      # valid JSON, too deep for Python's decoder
    lines = [good[0], raw_cr, b"\t\t\t", b"   ", b"", good[1] + b"\r", nan, b'{"truncated": ', b"\xff\xfe",
             *good[2:], escaped_cr, deep]
    return b"\n".join(lines) + b"\n", {2: "control character", 3: "whitespace", 4: "whitespace", 7: "non-finite",
                                       8: "JSON", 9: "UTF-8", len(lines): "RecursionError"}


def _corrupt_tsv(path: Path) -> tuple[bytes, dict[int, str]]:
    good = path.read_text().splitlines()
    cols = good[0].split("\t")
    cols[3] = cols[3] + "\r"  # a stray CR at the end of the sentence: spans stay valid, the line stays whole
    lines = [good[0], "\t".join(cols), "\t\t\t\t", "\t", *good[1:], "a\tb", good[1] + "\r"]
    return ("\n".join(lines) + "\n").encode(), {3: "whitespace", 4: "whitespace", 5 + len(good) - 1: ""}


def _corrupt_array(path: Path) -> tuple[bytes, int]:
    items = json.loads(path.read_text())
    items.insert(1, {"conversations": [{"from": "human", "value": "Text: a"}], "id": float("nan")})
    items.insert(2, "not an object")
    return json.dumps(items).encode(), len(items)


def _records_in(data: bytes) -> int:
    """Independent count: non-empty lines after splitting on \\n and dropping a trailing \\r."""
    return sum(1 for line in data.split(b"\n") if line.rstrip(b"\r"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    files: dict[str, list[tuple[Path, int, dict]]] = {"kelm": [], "instructie": [], "lsee": [], "universalner": []}
    for source, fixture, make in (("kelm", KELM, _corrupt_json_lines), ("instructie", INSTRUCTIE, _corrupt_json_lines),
                                  ("lsee", LSEE, _corrupt_tsv)):
        data, reasons = make(fixture)
        for codec in (None, *CODECS):
            p = root / (fixture.name + (EXT[codec] if codec else ""))
            p.write_bytes(_compress(data, codec) if codec else data)
            files[source].append((p, _records_in(data), reasons))
    data, n = _corrupt_array(UNIVERSALNER)
    for codec in (None, *CODECS):
        p = root / (UNIVERSALNER.name + (EXT[codec] if codec else ""))
        p.write_bytes(_compress(data, codec) if codec else data)
        files["universalner"].append((p, n, {}))
    return files


def _check(manifest: dict, files: list[tuple[Path, int, dict]], out: Path) -> list[str]:
    quarantined = [json.loads(line) for f in (out / "quarantine").glob("*.jsonl") for line in f.read_text().splitlines()]
    table = []
    for path, n_in, reasons in files:
        acc = manifest["files"][str(path)]
        table.append(f"{path.name:55s} records {acc['records']:3d} = written {acc['written']:3d} + quarantined "
                     f"{acc['quarantined']:3d}  (rows {acc['rows']})")
        assert acc["records"] == n_in, (path.name, acc, n_in)
        assert acc["records"] == acc["written"] + acc["quarantined"] and acc["balanced"], (path.name, acc)
        mine = {q["key"] if q["line"] is None else q["line"]: q for q in quarantined if q["path"] == str(path)}
        assert len(mine) == acc["quarantined"] and all(q["reason"] for q in mine.values())
        for line, word in reasons.items():
            assert line in mine, (path.name, line, sorted(mine))
            assert word in mine[line]["reason"], (path.name, mine[line])
            assert mine[line]["key"].endswith(f":{line}") and mine[line]["offset"] is not None
    return table


def test_following_corpus_accounts_for_every_record(inputs, data_dir, tmp_path):
    files = inputs["instructie"] + inputs["lsee"] + inputs["universalner"]
    specs = following_plan(**{s: [str(p) for p, *_ in inputs[s]] for s in ("instructie", "lsee", "universalner")},
                           block_bytes=300)
    assert {s.kind for s in specs} >= {"lines", "json_array", "compressed"}
    transform = FollowingTransform(wikidata_library(), Sampling(seed=1, shard_size=4, distractors=1))
    m = pipeline.run(transform, specs, str(tmp_path / "out"), executor="local")
    table = _check(m, files, tmp_path / "out")
    print("\n".join(["following corpus, per input file:", *table]))
    # the same records from the plain and the compressed copies
    by_file = {Path(p).name: acc for p, acc in m["files"].items()}
    for plain in (INSTRUCTIE.name, LSEE.name, UNIVERSALNER.name):
        assert all(by_file[plain + EXT[c]] == by_file[plain] for c in CODECS)
    # a stray CR inside a TSV line keeps the line whole: one record, written, not a cut line plus a quarantine
    plain_tsv = inputs["lsee"][0][0]
    items = {it.line: it.payload for s in plan_files("lsee", [str(plain_tsv)]) for it in read_shard(s, [])}
    assert items[2].split("\t")[3].endswith("\r") and len(items[2].split("\t")) == len(items[1].split("\t"))
    lsee_bad = [json.loads(line) for f in (tmp_path / "out" / "quarantine").glob("*.jsonl")
                for line in f.read_text().splitlines()]
    assert not [q for q in lsee_bad if q["path"] == str(plain_tsv) and q["line"] in (1, 2)]


def test_understanding_corpus_accounts_for_every_record_and_counts_losses(inputs, tmp_path):
    files = inputs["kelm"]
    specs = understanding_plan(wikidata_library(), [str(p) for p, *_ in files], definitions=False, block_bytes=200)
    m = pipeline.run(UnderstandingTransform(wikidata_library()), specs, str(tmp_path / "out"), executor="local")
    table = _check(m, files, tmp_path / "out")
    print("\n".join(["understanding corpus, per input file:", *table, f"counters: {m['counters']}"]))
    assert set(m["counters"]) >= {"kelm_not_in_sentence", "kelm_untyped", "kelm_orphan_qualifiers"}


@pytest.mark.parametrize("codec", CODECS)
def test_cut_compressed_input_is_a_clear_error(codec, tmp_path):
    data = b"".join(KELM.read_bytes() for _ in range(50))
    whole = _compress(data, codec)
    p = tmp_path / f"kelm.jsonl{EXT[codec]}"
    p.write_bytes(whole[: len(whole) * 2 // 3])
    (spec,) = plan_files("kelm", [str(p)])
    assert spec.kind == "compressed" and spec.extra == (codec,)
    with pytest.raises(PipelineError, match=rf"kelm.jsonl{EXT[codec]}: the {codec} stream is cut .* complete lines"):
        list(read_shard(spec, []))


def test_cut_compressed_input_is_one_line_on_the_ray_executor_too(ray_cluster, tmp_path, capsys):
    """A shard's PipelineError raised in a Ray Data actor reaches the driver as a PipelineError (Ray Data's
    wrapping of the raise loses the type), so `knowcoder data` ends with its one-line error, exit code 2."""
    from knowcoder_ray.cli import main

    whole = _compress(b"".join(KELM.read_bytes() for _ in range(50)), "gzip")
    (tmp_path / "kelm.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    args = ["data", "understanding", "--kelm", str(tmp_path / "kelm.jsonl.gz"), "--no-definitions", "--quiet",
            "--executor", "ray", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("knowcoder data understanding: ") and "kelm.jsonl.gz: the gzip stream is cut" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_compressed_input_is_found_by_magic_bytes_not_name(tmp_path):
    p = tmp_path / "kelm.jsonl"  # gzip content under a plain name
    p.write_bytes(_compress(KELM.read_bytes(), "gzip"))
    bad: list = []
    items = [it.payload for s in plan_files("kelm", [str(tmp_path)]) for it in read_shard(s, bad)]
    assert items == KELM.read_text().splitlines() and not bad
    (tmp_path / "more.jsonl.bz2").write_bytes(_compress(KELM.read_bytes(), "bz2"))  # listed in a directory
    assert len(plan_files("kelm", [str(tmp_path)])) == 2


@pytest.mark.parametrize("block", [1, 50, 333, 1 << 20])
def test_line_numbers_are_right_in_every_shard(tmp_path, block):
    lines = [f'{{"n": {i}}}' if i % 3 else "\t \t" for i in range(1, 40)]
    p = tmp_path / "x.jsonl"
    p.write_bytes(("\n".join(lines) + "\n").encode())
    bad: list = []
    items = [it for s in plan_files("kelm", [str(p)], block_bytes=block) for it in read_shard(s, bad)]
    assert [it.line for it in items] == [json.loads(it.payload)["n"] for it in items]
    assert [q["line"] for q in bad] == [i for i in range(1, 40) if i % 3 == 0]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    assert [it.offset for it in items] == [offsets[it.line - 1] for it in items]


def test_a_json_array_element_too_deep_to_decode_is_quarantined_not_fatal(tmp_path):
    path = tmp_path / "pile.json"
    path.write_bytes(b'[{"id": "a"}, {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b'}, {"id": "c"}]')
    for block in (8, 1 << 20):
        bad: list[dict] = []
        items = [it.payload for s in plan_files("universalner", [str(path)], block_bytes=block) for it in read_shard(s, bad)]
        assert items == [{"id": "a"}] and len(bad) == 1 and "unreadable from here on" in bad[0]["reason"]
