"""The Ray evaluation path with an oracle engine: each prompt is answered with the gold output of the
record and schema shard it was built from (both stages of two-stage events), so every prediction must
come back to its own record, dataset and checkpoint: F1 = 100 on several datasets and two oracle
checkpoints, while a third checkpoint that answers nothing scores 0 in the same run. A routing bug that
mixes rows (of records, shards, datasets or checkpoints) cannot pass."""
import json
import shutil
from pathlib import Path

import pytest

from knowcoder_ray.codec.render import render_output
from knowcoder_ray.infer.extraction import coarse_name, run_extraction
from engine_helpers import cached_engine_test_model
from knowcoder_ray.records import EventMention, Record

DATASETS = ["conll04", "crossner_ai", "wikievents", "phee"]
LIMIT = 12
ORACLE = "engine_helpers:OracleEngine"


def gold_output(row: dict, gold: Record, plan) -> str:
    """What a perfect model writes for this prompt row: the gold mentions of the classes it defines."""
    names = set(row["names"])
    if row["task"] == "ner":
        return render_output("ner", Record(gold.id, gold.text, entities=[e for e in gold.entities if e.type in names]))
    if row["task"] == "re":
        return render_output("re", Record(gold.id, gold.text, relations=[r for r in gold.relations if r.type in names]))
    events = gold.events
    if row["task"] == "ed" and plan.two_stage:  # stage 1 of two-stage events detects coarse types
        events = [EventMention(coarse_name(plan.library, e.type), e.trigger) for e in events]
    return render_output(row["task"], Record(gold.id, gold.text, events=[e for e in events if e.type in names]))


def oracle_answers(data, plans) -> dict[str, str]:
    """prompt -> gold output, for every prompt the evaluation will send (found by running the same plans
    in-process with an executor that knows each row's record)."""
    from knowcoder_ray.infer.extraction import parse_rows

    answers: dict[str, str] = {}
    for name, (records, _, _) in data.items():
        golds = {r.id: r for r in records}
        for plan in plans[name]:
            def execute(rows, plan=plan):
                outputs = []
                for row in rows:
                    out = gold_output(row, golds[row["record_id"]], plan)
                    assert answers.setdefault(row["prompt"], out) == out, "two records share a prompt, not their gold"
                    outputs.append(out)
                return parse_rows(rows, outputs, {plan.key: plan.library})
            run_extraction([("", plan, records)], execute)
    return answers


@pytest.fixture(scope="module")
def run_dir(ray_cluster, tmp_path_factory, data_dir):
    from knowcoder_ray.eval.evaluate import EvalConfig, evaluate, load_plans
    from knowcoder_ray.infer.engine import tokenizer_folder
    from knowcoder_ray.tokens import TokenCounter

    base = tmp_path_factory.getbasetemp()
    model = cached_engine_test_model(base, data_dir)
    cfg = EvalConfig(checkpoints=[], datasets=DATASETS, data_dir=str(data_dir), limit=LIMIT, shard_tokens=300,
                     engine=ORACLE, num_actors=2, rows_per_batch=5, report=False,
                     output_dir=str(tmp_path_factory.mktemp("oracle") / "run"))
    data, plans = load_plans(cfg, TokenCounter(tokenizer_folder(str(model))))
    answers = oracle_answers(data, plans)
    assert any(p.two_stage for ps in plans.values() for p in ps)
    assert sum(len(p.shards1) > 1 for ps in plans.values() for p in ps) >= 2, "want schemas over several shards"
    for label, default in (("oracle-a", None), ("oracle-b", None), ("silent", "results = []")):
        ckpt = base / "oracle-models" / label
        shutil.copytree(model, ckpt, dirs_exist_ok=True)
        (ckpt / "oracle.json").write_text(json.dumps({"answers": answers if default is None else {},
                                                      "default": default}))
        cfg.checkpoints.append(str(ckpt))
    evaluate(cfg)
    return Path(cfg.output_dir)


def _metrics(run_dir, label):
    return json.loads((run_dir / label / "metrics.json").read_text())


@pytest.mark.parametrize("label", ["oracle-a", "oracle-b"])
def test_oracle_checkpoints_score_100_on_every_dataset_and_metric(run_dir, label):
    metrics = _metrics(run_dir, label)
    for mode in ("official", "strict"):
        for name in DATASETS:
            scores = metrics["datasets"][name]["modes"][mode]["metrics"]
            assert scores, name
            for m, s in scores.items():
                o = s["overall"]
                assert o["gold"] > 0 and o["tp"] == o["pred"] == o["gold"], (label, mode, name, m, o)
    assert metrics["parse"]["errors"] == 0 and metrics["parse"]["hallucinated"] == 0


def test_silent_checkpoint_scores_0_in_the_same_run(run_dir):
    metrics = _metrics(run_dir, "silent")
    for name in DATASETS:
        for s in metrics["datasets"][name]["metrics"].values():
            assert s["overall"]["pred"] == 0 and s["overall"]["gold"] > 0


def test_predictions_file_is_in_record_order_with_gold_and_stage_two_outputs(run_dir, data_dir):
    from knowcoder_ray.data.benchmarks import load_benchmark

    lines = [json.loads(x) for x in (run_dir / "oracle-a" / "predictions.jsonl").read_text().splitlines()]
    expected = [(n, r.id) for n in DATASETS for r in load_benchmark(n, data_dir)[0][:LIMIT]]
    assert [(x["dataset"], x["id"]) for x in lines] == expected
    assert any(o["stage"] == 2 for x in lines for o in x["outputs"])  # EAE ran inside the pipeline
    assert all(x["prediction"]["text"] == x["gold"]["text"] for x in lines)
