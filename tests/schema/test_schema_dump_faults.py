"""The schema build on broken dumps: a cut .bz2/.gz gives the library of what was read, malformed.jsonl
and a report naming the cut (exit status 3), never an EOFError; an empty or non-JSON dump exits non-zero
with one clear line; a P31 claim with a string value is reported as malformed."""
import bz2
import gzip
import json
from pathlib import Path

import pytest

from knowcoder_ray.cli import main
from knowcoder_ray.schema import pyfile
from knowcoder_ray.schema.build import BuildConfig, DumpError, build, build_schema

DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "wikidata_dump.json.bz2"
def _multistream_bz2(data: bytes) -> bytes:
    """bzip2 in independent streams of 50 lines, as the released dumps are (lbzip2)."""
    lines = data.split(b"\n")
    return b"".join(bz2.compress(b"\n".join(lines[i:i + 50]) + (b"\n" if i + 50 < len(lines) else b""))
                    for i in range(0, len(lines), 50))


COMPRESS = {"bz2": _multistream_bz2, "gz": gzip.compress}


@pytest.fixture(scope="module")
def text() -> bytes:
    return bz2.decompress(DUMP.read_bytes())


@pytest.mark.parametrize("ext", ["bz2", "gz"])
@pytest.mark.parametrize("use_ray", [False, True])
def test_cut_dump_builds_what_was_read_and_names_the_cut(request, ext, use_ray, text, tmp_path, capsys):
    if use_ray:
        request.getfixturevalue("ray_cluster")
    whole = COMPRESS[ext](text)
    cut = tmp_path / f"cut.json.{ext}"
    cut.write_bytes(whole[: len(whole) * 3 // 4])
    full = build(str(DUMP), BuildConfig(), use_ray=False)
    result = build(str(cut), BuildConfig(), use_ray=use_ray)
    assert result.report.truncated and "dump truncated" in result.report.truncated
    assert ext.replace("gz", "gzip") in result.report.truncated
    assert 0 < result.report.counts["items"] < full.report.counts["items"]
    assert result.report.counts["truncated"] == 1 and len(result.library) > 0
    last = max(m["line"] for m in result.report.malformed)
    assert [m for m in result.report.malformed if m["line"] == last][0]["reason"].startswith("dump truncated")
    if use_ray:
        return
    out = tmp_path / "lib"
    assert main(["schema", "build", str(cut), "--out", str(out), "--local"]) == 3
    err = capsys.readouterr().err
    assert "dump truncated" in err and str(cut) in err and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert "dump truncated" in report["truncated"] and report["summary"]["truncated"] == 1
    malformed = [json.loads(line) for line in (out / "malformed.jsonl").read_text().splitlines()]
    assert any(m["reason"].startswith("dump truncated") for m in malformed)
    assert (out / "schema.parquet").is_file() and (out / "Entities.py").is_file()


@pytest.mark.parametrize("name, data, words", [
    ("empty.json", b"", "empty"),
    ("empty.json.bz2", bz2.compress(b""), "empty"),
    ("brackets.json", b"[\n]\n", "no Wikidata entity"),
    ("notjson.json", b"hello\nworld\n", "invalid JSON"),
    ("csv.json", b"id,label\nQ5,human\n", "line 1: invalid JSON"),
    ("deep.json", b'[\n{"id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n]\n", "nested too deeply"),
    ("array.json", b"[1, 2, 3]\n", "not a JSON object"),
    ("hidden.json", gzip.compress(b"[\n]\n"), "looks compressed"),
    ("cut_early.json.gz", gzip.compress(b"[\n" + b'{"id": "Q1"' * 50)[:20], "dump truncated"),
])
def test_empty_or_non_json_dump_fails_clearly(name, data, words, tmp_path, capsys):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(DumpError, match=words):
        build(str(p), BuildConfig(), use_ray=False)
    assert main(["schema", "build", str(p), "--out", str(tmp_path / "lib"), "--local"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "lib").exists()


def test_p31_claim_with_a_string_value_is_reported(text, tmp_path):
    lines = text.split(b"\n")
    i = next(k for k, line in enumerate(lines) if b'"P31"' in line and b'"type":"item"' in line.replace(b" ", b""))
    entity = json.loads(lines[i].rstrip(b","))
    entity["claims"]["P31"].append({"mainsnak": {"snaktype": "value", "property": "P31",
                                                 "datavalue": {"value": "human", "type": "string"}},
                                    "type": "statement", "rank": "normal"})
    lines[i] = json.dumps(entity).encode() + (b"," if lines[i].endswith(b",") else b"")
    p = tmp_path / "bad_p31.json"
    p.write_bytes(b"\n".join(lines))
    report = build(str(p), BuildConfig(), use_ray=False).report
    bad = [m for m in report.malformed if "P31 claim with a string value 'human'" in m["reason"]]
    assert len(bad) == 1 and bad[0]["line"] == i + 1 and entity["id"] in bad[0]["reason"]
    assert report.counts["malformed_claims"] == 1


def _item(qid: str, label: str, description: str = "", p31: tuple = (), p279: tuple = ()) -> dict:
    """An item in the dump's shape, with "en" label and description and P31 / P279 item claims."""
    def claim(pid, q):
        value = {"entity-type": "item", "numeric-id": int(q[1:]), "id": q}
        return {"mainsnak": {"snaktype": "value", "property": pid, "datatype": "wikibase-item",
                             "datavalue": {"value": value, "type": "wikibase-entityid"}},
                "type": "statement", "rank": "normal"}
    text = {k: {"en": {"language": "en", "value": v}} if v else {} for k, v in
            (("labels", label), ("descriptions", description))}
    claims = {p: [claim(p, q) for q in qs] for p, qs in (("P31", p31), ("P279", p279)) if qs}
    return {"type": "item", "id": qid, **text, "aliases": {}, "claims": claims}


def _dump(path: Path, entities: list[dict]) -> str:
    path.write_text("[\n" + ",\n".join(json.dumps(e) for e in entities) + "\n]\n")
    return str(path)


def test_wikidata_text_that_is_not_python_as_is_still_writes_the_library(tmp_path):
    """Labels "none"/"true" (Python keywords once capitalised), descriptions with backslashes that are not
    Python escapes (`\\x`, `\\N`) and five quotes in a row: the build used to stop with SchemaError."""
    dump = _dump(tmp_path / "d.json", [
        _item("Q1", "none", "the value None", p279=["Q3"]), _item("Q2", "true", 'said """"" loudly', p279=["Q3"]),
        _item("Q3", "path", r"a Windows path like C:\xampp or \N{...}"),
        _item("Q10", r"C:\x", p31=["Q1"]), _item("Q11", "yes", p31=["Q2"])])
    result = build_schema(dump, str(tmp_path / "lib"), BuildConfig(event_root=None), use_ray=False)
    lib = result.library
    assert sorted(lib.names()) == ["NoneType", "Path", "TrueType"]
    assert lib["Path"].description == r"a Windows path like C:\xampp or \N{...}"
    assert lib["NoneType"].examples == (r"C:\x",) and '"""' not in lib["TrueType"].description
    assert pyfile.read_pyfiles(str(tmp_path / "lib"), problems := []) == lib and problems == []


def test_an_entity_value_whose_id_is_not_a_string_is_a_malformed_line(tmp_path):
    """`"value": {"id": 5}`: reported with its line, the other lines build (it used to end the build
    with a TypeError when sorting the unresolved ids)."""
    odd = _item("Q10", "odd", p31=["Q1"])
    odd["claims"]["P31"][0]["mainsnak"]["datavalue"]["value"] = {"entity-type": "item", "id": 5}
    dump = _dump(tmp_path / "d.json", [_item("Q1", "thing"), odd, _item("Q11", "fine", p31=["Q1"])])
    report = build(dump, BuildConfig(), use_ray=False).report
    assert [(m["line"], m["reason"]) for m in report.malformed] == [(3, "P31 value with an id that is not a string: 5")]
    assert report.counts["items"] == 2 and report.unresolved == []


def test_cli_build_input_errors_end_in_one_line_before_the_dump_is_read(tmp_path, capsys):
    """A folder as the dump used to end in an OSError traceback; a descriptions TSV or corpus that cannot
    be used was only found after the whole build (hours on a real dump), a bad TSV as a traceback."""
    dump = _dump(tmp_path / "d.json", [_item("Q1", "thing"), _item("Q10", "x", p31=["Q1"])])
    (tmp_path / "bad.tsv").write_text("qid\tdescription\nQ1\tx\n")
    cases = [
        ([str(tmp_path)], f"{tmp_path} is a folder"),
        ([dump, "--descriptions", str(tmp_path / "none.tsv")], "none.tsv"),
        ([dump, "--descriptions", str(tmp_path / "bad.tsv")], "descriptions TSV needs a header"),
        ([dump, "--corpus", str(tmp_path / "none.jsonl")], "none.jsonl"),
    ]
    for args, words in cases:
        assert main(["schema", "build", *args, "--out", str(tmp_path / "lib"), "--local"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("knowcoder schema") and words in err and "\n" not in err, err
        assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize("use_ray", [False, True])
def test_an_entity_twice_in_the_dump_keeps_its_first_version_on_ray_and_in_the_plain_loop(request, use_ray, tmp_path):
    """The plain loop kept the last version of a repeated entity, Ray tasks over byte ranges the first."""
    if use_ray:
        request.getfixturevalue("ray_cluster")
    filler = [_item(f"Q{100 + i}", f"filler {i}", "x" * 200) for i in range(40)]
    dump = _dump(tmp_path / "d.json", [_item("Q1", "river", p279=["Q2"]), *filler, _item("Q2", "water"),
                                       _item("Q3", "land"), _item("Q1", "stream", p279=["Q3"]),
                                       _item("Q10", "Drina", p31=["Q1"])])
    lib = build(dump, BuildConfig(), use_ray=use_ray, parallelism=4, min_range_bytes=1).library
    assert (lib.by_wikidata_id("Q1").name, lib.by_wikidata_id("Q1").parents) == ("River", ("Water",))


def test_an_event_root_that_is_not_in_the_library_is_named(tmp_path, capsys):
    """`--event-root occurrence` (a label, not the id) silently gave a library without event types."""
    dump = _dump(tmp_path / "d.json", [_item("Q1190554", "occurrence"), _item("Q1", "battle", p279=["Q1190554"]),
                                       _item("Q10", "Waterloo", p31=["Q1"])])
    assert main(["schema", "build", dump, "--out", str(tmp_path / "ok"), "--local"]) == 0
    assert '"event_types": 2' in capsys.readouterr().out
    assert main(["schema", "build", dump, "--out", str(tmp_path / "lib"), "--local", "--event-root", "occurrence"]) == 0
    out = capsys.readouterr().out
    assert '"event_types": 0' in out and "event root 'occurrence' is not a class of the library" in out
    assert "event root 'occurrence'" in json.loads((tmp_path / "lib" / "report.json").read_text())["notes"][0]


@pytest.mark.parametrize("array", [True, False])
def test_a_dump_saved_with_a_byte_order_mark_loses_no_line(tmp_path, array):
    """A BOM before the first line (`[` or, in JSON Lines, the first entity) made that line malformed."""
    entities = [_item("Q1", "thing"), _item("Q10", "x", p31=["Q1"])]
    text = ("[\n" + ",\n".join(map(json.dumps, entities)) + "\n]\n") if array else "".join(
        json.dumps(e) + "\n" for e in entities)
    (tmp_path / "d.json").write_text("\ufeff" + text, encoding="utf-8")
    report = build(str(tmp_path / "d.json"), BuildConfig(), use_ray=False).report
    assert report.malformed == [] and report.counts["items"] == 2
