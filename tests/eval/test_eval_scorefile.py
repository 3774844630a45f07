"""`knowcoder score`: a file with every item kind, both modes, both filter settings (hand-computed), an
evaluation predictions.jsonl read as is, and bad rows ending in a one-line error."""
import json

import pytest

from knowcoder_ray.cli import main
from knowcoder_ray.records import EntityMention as E, Record

ROWS = [
    {"task": "ner", "sentence": "Ann Lee met Bob .", "gold": [["Person", "Ann Lee"], ["Person", "Bob"]],
     "pred": [["Person", "Ann Lee"], ["Person", "Ann Lee"], ["Location", "Bob"]]},
    {"task": "re", "sentence": "Bob lives in Paris .", "gold": [["LiveIn", "Bob", "Paris"]],
     "pred": [["LiveIn", "Bob", "Paris"], ["LiveIn", "Bob", "Bob"]]},
    {"task": "ed", "sentence": "Bob met Ann .", "gold": [["Meet", "met"]], "pred": [["Meet", "met"], ["Travel", "Ann"]]},
    {"task": "eae", "sentence": "Bob met Ann .", "gold": [["Meet", "met", "entity", "Bob"], ["Meet", "met", "entity", "Ann"]],
     "pred": [["Meet", "met", "entity", "Bob"], ["Meet", "met", "place", "Rome"]]},
]
SCHEMA = "Person,LiveIn,Meet"

# (tp, pred, gold) per metric, worked out by hand from ROWS
EXPECTED = {
    ("official", False): {"EI": (3, 3, 2), "EC": (2, 3, 2), "RI": (1, 2, 1), "RC": (1, 2, 1), "TI": (1, 2, 1),
                          "TC": (1, 2, 1), "AI": (1, 2, 2), "AC": (1, 2, 2)},
    # Location is out of schema, Bob-Bob is head == tail; ED has no type check; EAE arguments stay
    ("official", True): {"EI": (2, 2, 2), "EC": (2, 2, 2), "RI": (1, 1, 1), "RC": (1, 1, 1), "TI": (1, 2, 1),
                         "TC": (1, 2, 1), "AI": (1, 2, 2), "AC": (1, 2, 2)},
    ("strict", False): {"EI": (2, 3, 2), "EC": (1, 3, 2), "RI": (1, 2, 1), "RC": (1, 2, 1), "TI": (1, 2, 1),
                        "TC": (1, 2, 1), "AI": (1, 2, 2), "AC": (1, 2, 2)},
    ("strict", True): {"EI": (1, 2, 2), "EC": (1, 2, 2), "RI": (1, 1, 1), "RC": (1, 1, 1), "TI": (1, 1, 1),
                       "TC": (1, 1, 1), "AI": (1, 1, 2), "AC": (1, 1, 2)},
}


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.mark.parametrize("mode,filtered", sorted(EXPECTED))
def test_every_item_kind_both_modes_both_filters(rows_file, capsys, mode, filtered):
    args = ["score", str(rows_file), "--mode", mode, "--json"]
    if filtered:
        args += ["--filter-outlier", "--schema-types", SCHEMA]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == mode and out["filter_outlier"] is filtered
    got = {m: tuple(s["overall"][k] for k in ("tp", "pred", "gold"))
           for source in ("ner", "re", "ed", "eae") for m, s in out["scores"][source].items()}
    assert got == EXPECTED[(mode, filtered)]


def test_table_and_per_type(rows_file, capsys):
    assert main(["score", str(rows_file), "--per-type"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mode: official, filter_outlier: False\n")
    ner_ei = next(line for line in out.splitlines() if line.startswith("ner") and " EI " in line).split()
    assert ner_ei[-6:] == ["100.00", "150.00", "120.00", "3", "3", "2"]   # membership: recall over 100
    assert any(line.split()[:3] == ["ner", "EC", "person"] for line in out.splitlines())


def test_reads_an_evaluation_predictions_file(tmp_path, capsys):
    gold = Record("7", "Ann Lee met Bob .", [E("Ann Lee", "Person"), E("Bob", "Person")], source="conll2003")
    pred = Record("7", "Ann Lee met Bob .", [E("Ann Lee", "Person"), E("Ann Lee", "Person")], source="conll2003")
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps({"dataset": "conll2003", "id": "7", "text": gold.text, "prediction": pred.to_dict(),
                                "gold": gold.to_dict(), "outputs": []}) + "\n")
    assert main(["score", str(path), "--json"]) == 0
    ec = json.loads(capsys.readouterr().out)["scores"]["all"]["EC"]["overall"]
    assert (ec["tp"], ec["pred"], ec["gold"]) == (2, 2, 2)
    assert main(["score", str(path), "--json", "--mode", "strict"]) == 0
    ec = json.loads(capsys.readouterr().out)["scores"]["all"]["EC"]["overall"]
    assert (ec["tp"], ec["pred"], ec["gold"]) == (1, 2, 2)


@pytest.mark.parametrize("line,message", [
    ('{"task": "ner", "sentence": "x", "gold": [["Person"]], "pred": []}', "a ner item is a list of 2 strings"),
    ('{"task": "xx", "sentence": "x", "gold": [], "pred": []}', "task must be one of"),
    ('{"task": {"ner": 1}, "sentence": "x", "gold": [], "pred": []}', "task must be one of"),
    ("not json", "not JSON"),
    ('{"task": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
    ('{"sentence": "x"}', "expected 'task'"),
])
def test_bad_rows_end_in_one_line_naming_the_line(tmp_path, capsys, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + line + "\n")
    assert main(["score", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "bad.jsonl:2" in err
