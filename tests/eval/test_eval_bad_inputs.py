"""Bad inputs at the evaluation front door: a `records:` file's bad rows set aside with a reason (and said on
stderr), `knowcoder score` rows whose records hold non-strings or whose dataset's sentences lack gold, and
`knowcoder report` on a summary.json or metrics.json that is cut short, hand-edited or empty: one line, exit 2."""
import importlib
import json
import shutil

import pytest

from knowcoder_ray.cli import main
from knowcoder_ray.data.benchmarks import get_benchmark, load_benchmark

GOOD = {"id": "a", "text": "Ann lives in Rome", "entities": [{"text": "Ann", "type": "Person", "start": 0, "end": 3}]}
BAD_ROWS = [  # (row, the reason it is set aside); before, every one was evaluated (or crashed the schema)
    ({"text": "no id"}, "'id' must be a non-empty string or an integer, got None"),
    ({"id": ["x"], "text": "list id"}, "'id' must be a non-empty string or an integer, got ['x']"),
    ({**GOOD, "text": "Ann again"}, "duplicate id 'a' (first on line 1)"),
    ({"id": "b", "text": "Short", "entities": [{"text": "Zed", "type": "Person", "start": 50, "end": 53}]},
     "entity 'Zed': offsets 50:53 do not select it in the text"),
    ({"id": "c", "text": "   "}, "'text' must be a non-empty string, got '   '"),
    ({"id": "d", "text": None}, "'text' must be a non-empty string, got None"),
    # before: TypeError: unhashable type: 'list' from the schema of the records (a traceback)
    ({"id": "e", "text": "y", "entities": [{"text": "y", "type": ["A"]}]},
     "entity: text and type must be non-empty strings, got 'y' (['A'])"),
    ({"id": "f", "text": "y", "entities": {"text": "y"}}, "'entities' must be a list of objects"),
    ({"id": "h", "text": "y", "source": ["s"]}, "'source' must be a string, got ['s']"),
    ({"id": "g", "text": "ev", "events": [{"type": "E", "trigger": "ev", "arguments": [{"role": 1, "text": "ev"}]}]},
     "event 'E': an argument role must be a non-empty string, got 1"),
]


def test_records_file_sets_aside_each_bad_row_with_its_reason(tmp_path):
    p = tmp_path / "recs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in [GOOD, *(row for row, _ in BAD_ROWS)]))
    bad = []
    records, schema = load_benchmark(f"records:{p}", tmp_path, bad=bad)
    assert [r.id for r in records] == ["a"] and schema.names() == ["Person"]
    assert [(b.line, b.reason) for b in bad] == [(n, f"ValueError: {why}") for n, (_, why) in enumerate(BAD_ROWS, 2)]
    assert get_benchmark(f"records:{p}").tasks == ("ner",)


def test_eval_says_on_stderr_that_lines_were_set_aside_and_names_a_file_without_the_tasks(tmp_path, capsys,
                                                                                          monkeypatch):
    monkeypatch.setattr(importlib.import_module("knowcoder_ray.connect"), "connect", lambda *a, **k: None)
    (tmp_path / "model").mkdir()
    (tmp_path / "model/config.json").write_text('{"max_position_embeddings": 4096}')
    p = tmp_path / "recs.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + json.dumps(BAD_ROWS[0][0]) + "\n")
    # before: a run over no task plans, every metric absent, exit 0
    argv = ["eval", "--checkpoint", f"{tmp_path}/model", "--dataset", f"records:{p}", "--output-dir",
            f"{tmp_path}/run", "--set", "tasks=[re]"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"dataset 'records:{p}': 1 malformed input line(s) set aside, not evaluated (first: line 2: "
                   "ValueError: 'id' must be a non-empty string or an integer, got None); all are listed in "
                   "metrics.json",
                   f"knowcoder eval: dataset 'records:{p}' annotates none of the tasks ['re'] (it has ner)"]


def _eval_row(dataset, gold_entities, pred_entities, text="Ann met Bob", id="1"):
    rec = {"id": id, "text": text}
    return {"dataset": dataset, "id": id, "gold": {**rec, "entities": gold_entities},
            "prediction": {**rec, "entities": pred_entities}}


def test_score_counts_the_false_positives_of_a_sentence_without_gold(tmp_path, capsys):
    """The tasks of a dataset that is not a known benchmark were taken from each row's own gold: a sentence
    with no gold was not scored at all, and its predictions' false positives vanished (precision 100)."""
    ann = [{"text": "Ann", "type": "Person"}]
    p = tmp_path / "preds.jsonl"
    p.write_text(json.dumps(_eval_row("records:x", ann, ann)) + "\n"
                 + json.dumps(_eval_row("records:x", [], [{"text": "Bob", "type": "Person"}], id="2")) + "\n")
    assert main(["score", str(p), "--json"]) == 0
    ei = json.loads(capsys.readouterr().out)["scores"]["all"]["EI"]["overall"]
    assert (ei["tp"], ei["pred"], ei["gold"]) == (1, 2, 1)
    # a dataset whose gold annotates nothing at all: its tasks are unknown (before: its rows were dropped)
    p.write_text(json.dumps(_eval_row("zzz", [], [{"text": "Bob", "type": "Person"}])) + "\n")
    assert main(["score", str(p)]) == 2
    assert capsys.readouterr().err == (f"knowcoder score: {p}: dataset 'zzz' is not a known benchmark and its "
                                       "gold annotates nothing, so its tasks are unknown\n")


@pytest.mark.parametrize("gold, pred, message", [
    ([{"text": 5, "type": "Person"}], [], "gold: every type, role and mention text must be a string, got 5"),
    ([], [{"text": None, "type": "Person"}], "prediction: every type, role and mention text must be a string, "
                                             "got None"),
    ([{"text": "Ann", "type": "Person"}], [{"text": "Ann", "type": ["Person"]}],
     "prediction: every type, role and mention text must be a string, got ['Person']"),
])
def test_score_names_a_record_with_non_string_fields(tmp_path, capsys, gold, pred, message):
    """Before: TypeError: unhashable type: 'list' from the metrics, a traceback."""
    p = tmp_path / "preds.jsonl"
    p.write_text(json.dumps(_eval_row("conll04", gold, pred)) + "\n")
    assert main(["score", str(p)]) == 2
    assert capsys.readouterr().err == f"knowcoder score: {p}:1: {message}\n"


METRICS = {"mode": "official", "summary": {"EI": 50.0},
           "modes": {"official": {"summary": {"EI": 50.0}, "overall": {"EI": {"overall": {"f1": 0.5}}}}},
           "datasets": {"d": {"records": 2, "metrics": {}, "modes": {
               "official": {"metrics": {"EI": {"overall": {"p": 0.5, "r": 0.5, "f1": 0.5}}}}}}},
           "parse": {k: 0 for k in ("prompts", "outputs_with_errors", "errors", "hallucinated", "truncated")}}
SUMMARY = {"split": "test", "datasets": ["d"], "checkpoints": [{"checkpoint": "ck", "metrics": "ck/metrics.json"}]}


@pytest.mark.parametrize("summary, metrics, message", [
    (SUMMARY, METRICS, None),
    ({**SUMMARY, "checkpoints": []}, METRICS, "{t}/summary.json: lists no checkpoints: nothing to report"),
    ("{", METRICS, "{t}/summary.json: not JSON (Expecting property name enclosed in double quotes: line 1 "
                   "column 2 (char 1))"),
    ({"split": "test"}, METRICS, "{t}/summary.json: not a summary of `knowcoder eval` (a 'checkpoints' list of "
                                 "objects with 'checkpoint' and 'metrics')"),
    ([], METRICS, "{t}/summary.json: not a summary of `knowcoder eval` (a 'checkpoints' list of objects with "
                  "'checkpoint' and 'metrics')"),
    (SUMMARY, {"mode": "official"}, "{t}: the metrics of its checkpoints are incomplete or disagree (KeyError: "
                                    "'modes'); rerun `knowcoder eval`"),
    (SUMMARY, "", "{t}/ck/metrics.json: not JSON (Expecting value: line 1 column 1 (char 0))"),
])
def test_report_names_a_summary_or_metrics_file_it_cannot_use(tmp_path, capsys, summary, metrics, message):
    """Before: a JSONDecodeError, KeyError, IndexError or TypeError traceback for each bad file."""
    (tmp_path / "ck").mkdir()
    (tmp_path / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    (tmp_path / "ck/metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if message is None:
        assert main(["report", str(tmp_path)]) == 0 and (tmp_path / "report.html").is_file()
        return
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"knowcoder report: {message.format(t=tmp_path)}\n"


def test_score_names_an_evaluation_row_whose_id_repeats(tmp_path, capsys):
    """Before: a predictions.jsonl joined twice (`cat run/a/predictions.jsonl run/a/predictions.jsonl`) was
    scored with every sentence counted twice, without a word."""
    ann = [{"text": "Ann", "type": "Human"}]
    line = json.dumps(_eval_row("conll04", ann, ann)) + "\n"
    p = tmp_path / "preds.jsonl"
    p.write_text(line + json.dumps(_eval_row("conll04", ann, [], id="2")) + "\n" + line)
    assert main(["score", str(p)]) == 2
    assert capsys.readouterr().err == f"knowcoder score: {p}:3: dataset 'conll04' id '1' repeats line 1\n"
    p.write_text(line + json.dumps(_eval_row("crossner_ai", ann, ann)) + "\n")  # the same id in another dataset
    assert main(["score", str(p)]) == 0


def test_score_filters_a_records_dataset_by_the_schema_of_its_file(tmp_path, capsys):
    """evaluate's filter_outlier checks a records: dataset's predictions against the file's schema; `knowcoder
    score` on the same predictions.jsonl had no schema for it and kept the out-of-schema types (pred 2, not 1)."""
    recs = tmp_path / "recs.jsonl"
    recs.write_text(json.dumps(GOOD) + "\n")
    p = tmp_path / "preds.jsonl"
    p.write_text(json.dumps(_eval_row(f"records:{recs}", [{"text": "Ann", "type": "Person"}],
                                      [{"text": "Ann", "type": "Person"}, {"text": "Bob", "type": "Location"}])) + "\n")
    assert main(["score", str(p), "--filter-outlier", "--json"]) == 0
    ec = json.loads(capsys.readouterr().out)["scores"]["all"]["EC"]["overall"]
    assert (ec["tp"], ec["pred"], ec["gold"]) == (1, 1, 1)


def test_report_names_an_out_path_that_is_a_folder(tmp_path, capsys):
    """Before: "Is a directory: <folder>/../.<name>.tmp-1a2b3c4d", a temporary file the user never named."""
    (tmp_path / "ck").mkdir()
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "ck/metrics.json").write_text(json.dumps(METRICS))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "ck")]) == 2
    assert capsys.readouterr().err == f"knowcoder report: {tmp_path}/ck is a folder: give the report's file path\n"


def test_records_file_end_to_end_bad_rows_accounted_and_score_equals_metrics(ray_cluster, tmp_path, data_dir,
                                                                             capsys):
    """A records file with bad rows through the whole Ray pipeline (an oracle engine that answers every prompt
    alike, one type out of the schema): the bad rows are listed in metrics.json, every good row has its
    predictions line, and `knowcoder score --filter-outlier` of predictions.jsonl equals metrics.json."""
    from knowcoder_ray.codec.render import render_output
    from knowcoder_ray.eval.evaluate import EvalConfig, evaluate
    from knowcoder_ray.records import EntityMention, Record

    from engine_helpers import cached_engine_test_model

    rows = [{"id": str(i), "text": f"Ann {i} met Bob", "entities": [{"text": "Ann", "type": "Musician", "start": 0,
                                                                       "end": 3}, {"text": "Bob", "type": "City"}]}
            for i in range(5)]
    rows.insert(2, {"id": "1", "text": "again"})
    rows.insert(4, {"id": "9", "text": "Ann", "entities": [{"text": "Ann", "type": "Musician", "start": 5, "end": 8}]})
    recs = tmp_path / "recs.jsonl"
    recs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "oracle"
    shutil.copytree(cached_engine_test_model(tmp_path.parent, data_dir), model)
    out = render_output("ner", Record("x", "x", [EntityMention("Ann", "Musician"), EntityMention("Bob", "Robot")]))
    (model / "oracle.json").write_text(json.dumps({"answers": {}, "default": out}))
    cfg = EvalConfig(checkpoints=[str(model)], datasets=[f"records:{recs}"], limit=100,
                     engine="engine_helpers:OracleEngine", report=False, output_dir=str(tmp_path / "run"))
    evaluate(cfg)
    metrics = json.loads((tmp_path / "run/oracle/metrics.json").read_text())
    d = metrics["datasets"][f"records:{recs}"]
    assert d["records"] == 5 and [b["line"] for b in d["malformed_inputs"]] == [3, 5]
    lines = (tmp_path / "run/oracle/predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["0", "1", "2", "3", "4"]
    capsys.readouterr()
    assert main(["score", str(tmp_path / "run/oracle/predictions.jsonl"), "--filter-outlier", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)["scores"]["all"]
    ec = d["modes"]["official"]["metrics"]["EC"]["overall"]
    assert (ec["tp"], ec["pred"], ec["gold"]) == (5, 5, 10)  # Robot("Bob") is out of the schema: filtered
    assert {m: s["overall"] for m, s in scored.items()} == {
        m: s["overall"] for m, s in d["modes"]["official"]["metrics"].items()}


@pytest.mark.parametrize("flags, message", [
    # before: ValueError tracebacks, after the model had been checked (few_shot from load_plans, labels at the run)
    (["--dataset", "records:{t}/recs.jsonl", "--few-shot", "2"],
     "few_shot: a records file has no train or dev split to take examples from: records:{t}/recs.jsonl"),
    (["--dataset", "phee", "--split", "dev", "--few-shot", "1"],
     "few_shot: benchmark 'phee' has no train or dev split (other than the evaluated one) to take examples from "
     "(it has dev, test)"),
    (["--dataset", "conll04", "--set", "labels=[a,b]"], "labels must name each of the 1 checkpoint(s) once"),
])
def test_eval_config_names_few_shot_without_a_split_and_labels_that_do_not_fit(tmp_path, capsys, flags, message):
    (tmp_path / "recs.jsonl").write_text(json.dumps(GOOD) + "\n")
    argv = ["eval", "--checkpoint", f"{tmp_path}/model", "--output-dir", f"{tmp_path}/run", *flags]
    assert main([a.format(t=tmp_path) for a in argv]) == 2
    assert capsys.readouterr().err == f"knowcoder eval: {message.format(t=tmp_path)}\n"
