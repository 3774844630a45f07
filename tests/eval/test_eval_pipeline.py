"""Distributed evaluation end to end on the real local Ray cluster: real test files of four datasets
(NER, NER+RE, two-stage events), two checkpoints of a tiny untrained Llama, `knowcoder eval` from a YAML
config. The untrained models write garbage, so the scores are ~0; what is checked is that the run
writes predictions, metrics and a report, that the metrics agree with an independent count over the
written predictions, and that the report renders in headless Chromium without console errors."""
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from knowcoder_ray.cli import main
from knowcoder_ray.data.benchmarks import load_benchmark
from engine_helpers import cached_engine_test_model

DATASETS = ["conll04", "crossner_ai", "phee", "wikievents"]
LIMIT = 24
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run_dir(ray_cluster, tmp_path_factory, data_dir):
    base = tmp_path_factory.getbasetemp()
    checkpoints = [cached_engine_test_model(base, data_dir), cached_engine_test_model(base, data_dir, "step-2", seed=2)]
    out = tmp_path_factory.mktemp("eval") / "run"
    config = {"checkpoints": [str(c) for c in checkpoints], "datasets": DATASETS, "data_dir": str(data_dir),
              "limit": LIMIT, "engine_config": {"max_new_tokens": 16, "batch_size": 8}, "num_actors": 2,
              "rows_per_batch": 16, "shard_tokens": 700, "labels": ["step-1", "step-2"]}
    path = out.parent / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(path), "--output-dir", str(out)]) == 0
    return out


def _filtered(pred: dict, text: str, schema: set) -> dict:
    """Strict mode's filter_outlier, written out again: spans must be non-empty substrings of the
    sentence, types must be in the schema, a relation's head must differ from its tail."""
    def ok(s):
        return bool(s.strip()) and s in text
    allowed = schema | {"Entity"}
    return {
        "entities": [e for e in pred["entities"] if ok(e["text"]) and e["type"] in allowed],
        "relations": [r for r in pred["relations"] if ok(r["head"]["text"]) and ok(r["tail"]["text"])
                      and r["type"] in allowed and r["head"]["text"] != r["tail"]["text"]],
        "events": [{**e, "arguments": [a for a in e["arguments"] if ok(a["text"])]}
                   for e in pred["events"] if ok(e["trigger"]) and e["type"] in allowed],
    }


def _tuples(d: dict, metric: str) -> list:
    ents, rels, evs = d["entities"], d["relations"], d["events"]
    return {
        "EI": lambda: [e["text"] for e in ents], "EC": lambda: [(e["type"], e["text"]) for e in ents],
        "RI": lambda: [(r["head"]["text"], r["tail"]["text"]) for r in rels],
        "RC": lambda: [(r["type"], r["head"]["text"], r["tail"]["text"]) for r in rels],
        "TI": lambda: [e["trigger"] for e in evs], "TC": lambda: [(e["type"], e["trigger"]) for e in evs],
        "AI": lambda: [(e["type"], a["text"]) for e in evs for a in e["arguments"]],
        "AC": lambda: [(e["type"], a["text"], a["role"]) for e in evs for a in e["arguments"]],
    }[metric]()


def test_run_writes_predictions_and_metrics_per_checkpoint(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [c["checkpoint"] for c in summary["checkpoints"]] == ["step-1", "step-2"]
    for label in ("step-1", "step-2"):
        lines = [json.loads(x) for x in (run_dir / label / "predictions.jsonl").read_text().splitlines()]
        assert Counter(x["dataset"] for x in lines) == {d: LIMIT for d in DATASETS}
        metrics = json.loads((run_dir / label / "metrics.json").read_text())
        assert set(metrics["summary"]) == {"EI", "EC", "RI", "RC", "TI", "TC", "AI", "AC"}
        assert metrics["mode"] == "official" and set(metrics["modes"]) == {"official", "strict"}
        assert metrics["datasets"]["wikievents"]["malformed_inputs"]  # set aside with a reason, and reported
        outputs = [o for x in lines for o in x["outputs"]]
        assert metrics["parse"]["prompts"] == len(outputs)
        assert all(isinstance(o["output"], str) for o in outputs)
        assert sum(bool(o["output"]) for o in outputs) > len(outputs) / 2  # (an immediate EOS is empty)
        # every record ran every shard of its stage-1 plans: sharded datasets have several per task
        per_record = Counter((x["dataset"], o["task"]) for x in lines for o in x["outputs"] if o["stage"] == 1)
        assert per_record[("wikievents", "ed")] > LIMIT and per_record[("conll04", "ner")] == LIMIT
    # the two checkpoints are different models
    a, b = ((run_dir / c / "predictions.jsonl").read_text() for c in ("step-1", "step-2"))
    assert a != b


def test_metrics_equal_an_independent_count_over_the_predictions(run_dir, data_dir):
    for label in ("step-1", "step-2"):
        metrics = json.loads((run_dir / label / "metrics.json").read_text())
        preds = {}
        for line in (run_dir / label / "predictions.jsonl").read_text().splitlines():
            x = json.loads(line)
            preds[(x["dataset"], x["id"])] = x["prediction"]
        overall = Counter()
        for name in DATASETS:
            records, library = load_benchmark(name, data_dir, class_names="official")  # the eval's default
            schema = set(library.names())
            assert metrics["datasets"][name]["metrics"] == metrics["datasets"][name]["modes"]["official"]["metrics"]
            for metric, expected in metrics["datasets"][name]["modes"]["strict"]["metrics"].items():
                tp = pred = gold = 0
                for r in records[:LIMIT]:
                    g = _tuples(r.to_dict(), metric)
                    p = _tuples(_filtered(preds[(name, r.id)], r.text, schema), metric)
                    tp += sum((Counter(g) & Counter(p)).values())
                    pred, gold = pred + len(p), gold + len(g)
                assert (expected["overall"]["tp"], expected["overall"]["pred"], expected["overall"]["gold"]) == \
                       (tp, pred, gold), (label, name, metric)
                assert gold > 0
                overall.update({(metric, "tp"): tp, (metric, "pred"): pred, (metric, "gold"): gold})
        for metric, c in metrics["modes"]["strict"]["overall"].items():
            assert [c["overall"][k] for k in ("tp", "pred", "gold")] == [overall[(metric, k)] for k in ("tp", "pred", "gold")]


def _chromium(args: list[str], user_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={user_dir}", "--enable-logging=stderr", "--v=0", "--window-size=1280,2400",
         "--virtual-time-budget=5000", *args],
        capture_output=True, text=True, timeout=180)


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not found: `make chromium` (apt-get install -y chromium) installs it")
    # the CLI rewrites the report from the run folder alone
    assert main(["report", str(run_dir)]) == 0
    report = run_dir / "report.html"
    page = report.read_text()
    assert "step-1" in page and "step-2" in page and "wikievents" in page
    shot = tmp_path / "report.png"
    done = _chromium([f"--screenshot={shot}", report.as_uri()], tmp_path / "profile")
    assert shot.is_file() and shot.stat().st_size > 20_000, done.stderr[-2000:]
    assert _console_messages(done.stderr) == []
    dom = _chromium(["--dump-dom", report.as_uri()], tmp_path / "profile")
    # plotly ran: every figure was drawn as SVG (5 = lines, table, 4 datasets' type bars... at least 6)
    assert dom.stdout.count('class="main-svg"') >= 2 * 7
    assert _console_messages(dom.stderr) == []
    shutil.copy(shot, Path(run_dir) / "report.png")  # kept beside the report for a person to look at


def test_console_error_detection_is_not_vacuous(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not found: `make chromium` (apt-get install -y chromium) installs it")
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notDefinedAnywhere();</script></body></html>")
    done = _chromium(["--dump-dom", page.as_uri()], tmp_path / "profile")
    assert any("notDefinedAnywhere" in m for m in _console_messages(done.stderr))


def test_config_errors_name_the_problem(tmp_path):
    from knowcoder_ray.eval.evaluate import EvalConfig
    from knowcoder_ray.settings import load

    path = tmp_path / "bad.yaml"
    path.write_text("checkpoints: [a]\ndatasets: [conll04]\nnum_actor: 2\n")
    with pytest.raises(ValueError, match="unknown setting 'num_actor'"):
        load(EvalConfig, str(path))
    with pytest.raises(ValueError, match="datasets: Field required"):
        load(EvalConfig, None, ["checkpoints=[a]"])
    with pytest.raises(ValueError, match="layout: unknown layout options \\['escap'\\]"):
        load(EvalConfig, None, {"checkpoints": ["a"], "datasets": ["nyt"], "layout.escap": True})
    assert EvalConfig(checkpoints=["x/final", "y/final"], datasets=["nyt"]).checkpoint_labels() == ["final", "final-2"]
